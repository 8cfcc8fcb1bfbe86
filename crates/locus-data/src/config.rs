//! The `[data]` section of a Locus configuration file.
//!
//! The training data comes from one of two places: corpora to prepare (`train_src`/`train_tgt`
//! and any `[[data.corpora]]`, plus `valid_src`/`valid_tgt`), or a dataset already prepared by
//! `locus prepare` (`prepared`), which then takes precedence. Every other field has a default.
//! Unknown fields are rejected so that typos do not go unnoticed. Call
//! [`DataConfig::validate`] after reading; its errors name the field, its value and the rule it
//! breaks.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batching::{BatchPlanner, TokenBudget};
use crate::error::{DataError, Result};
use crate::filter::{thousands, LengthFilter, LengthVerdict};
use crate::prepared::manifest::DropCounts;
use crate::tokenizer::{SubwordModel, SPECIAL_TOKENS};

/// The two sides of one parallel corpus (plain text, or gzip when a name ends in `.gz`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusPaths {
    /// The source side, one sentence per line.
    pub src: PathBuf,
    /// The target side, line-aligned with `src`.
    pub tgt: PathBuf,
}

/// Data settings: corpora, subword vocabulary, length filter and batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A directory written by `locus prepare`: when set, training reads it and the corpora
    /// below are not read. Its tokenizer and filter settings are the run's (a config whose
    /// filter settings differ is refused).
    #[serde(default)]
    pub prepared: Option<PathBuf>,
    /// Source side of the (first) training corpus, one sentence per line (plain text, or gzip
    /// when the name ends in `.gz`).
    #[serde(default)]
    pub train_src: Option<PathBuf>,
    /// Target side of that corpus, line-aligned with `train_src`.
    #[serde(default)]
    pub train_tgt: Option<PathBuf>,
    /// Source side of the validation corpus.
    #[serde(default)]
    pub valid_src: Option<PathBuf>,
    /// Target side of the validation corpus, line-aligned with `valid_src`.
    #[serde(default)]
    pub valid_tgt: Option<PathBuf>,
    /// Further training corpora (`[[data.corpora]]` tables of `src` and `tgt`), read after
    /// `train_src`/`train_tgt`: WMT data comes as several corpora.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corpora: Vec<CorpusPaths>,
    /// An existing `tokenizer.json` to use as it is instead of training one. Default: none.
    #[serde(default)]
    pub tokenizer_file: Option<PathBuf>,
    /// Lines (source and target counted separately) of the seeded sample of training pairs the
    /// tokenizer is trained on; every pair when the corpora hold fewer. Default 2,000,000.
    #[serde(default = "default_tokenizer_sample")]
    pub tokenizer_sample: usize,
    /// Seed of that sample. Default 1.
    #[serde(default = "default_tokenizer_sample_seed")]
    pub tokenizer_sample_seed: u64,
    /// Pairs per shard file of a prepared dataset. Default 1,000,000.
    #[serde(default = "default_shard_pairs")]
    pub shard_pairs: usize,
    /// Subword model of the joint source/target tokenizer: `"bpe"` or
    /// `"unigram"`. Default `"bpe"`.
    #[serde(default)]
    pub tokenizer: SubwordModel,
    /// Maximum size of the joint subword vocabulary, the 4 special tokens
    /// included. Default 8000.
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// Training pairs with a side shorter than this many subword tokens are
    /// dropped. Default 1.
    #[serde(default = "default_min_len")]
    pub min_len: usize,
    /// Training pairs with a side longer than this many subword tokens are
    /// dropped. Default 128.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Optional stricter cap for training only: training pairs with a side
    /// longer than this many subword tokens are dropped, validation pairs are
    /// kept (to test on longer sentences than the model was trained on).
    /// Default: none.
    #[serde(default)]
    pub max_train_len: Option<usize>,
    /// Training pairs whose longer side has more than this many times the
    /// tokens of the shorter side are dropped. Default 3.0.
    #[serde(default = "default_max_len_ratio")]
    pub max_len_ratio: f64,
    /// Token budget of a batch: batch size times the longest sequence plus
    /// one (for EOS/BOS), so padding counts. Default 4096.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Which sequences `max_tokens` counts: `"longer"` (the longer of source
    /// and target, as fairseq) or `"target"`. Default `"longer"`.
    #[serde(default)]
    pub token_budget: TokenBudget,
    /// Optional cap on the number of sentence pairs in a batch. Default: no
    /// cap.
    #[serde(default)]
    pub max_sentences: Option<usize>,
}

fn default_tokenizer_sample() -> usize {
    2_000_000
}

fn default_tokenizer_sample_seed() -> u64 {
    1
}

fn default_shard_pairs() -> usize {
    1_000_000
}

fn default_vocab_size() -> usize {
    8000
}

fn default_min_len() -> usize {
    1
}

fn default_max_len() -> usize {
    128
}

fn default_max_len_ratio() -> f64 {
    3.0
}

fn default_max_tokens() -> usize {
    4096
}

impl DataConfig {
    /// A configuration with the given corpora and every other field at its
    /// default.
    pub fn with_paths(
        train_src: PathBuf,
        train_tgt: PathBuf,
        valid_src: PathBuf,
        valid_tgt: PathBuf,
    ) -> Self {
        DataConfig {
            prepared: None,
            train_src: Some(train_src),
            train_tgt: Some(train_tgt),
            valid_src: Some(valid_src),
            valid_tgt: Some(valid_tgt),
            corpora: Vec::new(),
            tokenizer_file: None,
            tokenizer_sample: default_tokenizer_sample(),
            tokenizer_sample_seed: default_tokenizer_sample_seed(),
            shard_pairs: default_shard_pairs(),
            tokenizer: SubwordModel::default(),
            vocab_size: default_vocab_size(),
            min_len: default_min_len(),
            max_len: default_max_len(),
            max_train_len: None,
            max_len_ratio: default_max_len_ratio(),
            max_tokens: default_max_tokens(),
            token_budget: TokenBudget::default(),
            max_sentences: None,
        }
    }

    /// Checks every rule; the first broken one is reported.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] naming the field, its value and the rule.
    pub fn validate(&self) -> Result<()> {
        let min_vocab = SPECIAL_TOKENS.len() + 1;
        if self.vocab_size < min_vocab {
            return Err(DataError::config(
                "data.vocab_size",
                format!("({}) must be at least {min_vocab} (4 special tokens + 1)", self.vocab_size),
            ));
        }
        if self.max_len == 0 {
            return Err(DataError::config("data.max_len", "(0) must be at least 1"));
        }
        if self.max_len > usize::from(u16::MAX) {
            return Err(DataError::config(
                "data.max_len",
                format!("({}) must be at most 65535 (lengths are stored in two bytes)", self.max_len),
            ));
        }
        if self.shard_pairs == 0 {
            return Err(DataError::config("data.shard_pairs", "(0) must be positive"));
        }
        if self.prepared.is_none() {
            self.check_inputs()?;
        }
        if self.min_len > self.max_len {
            return Err(DataError::config(
                "data.min_len",
                format!("({}) must not exceed data.max_len ({})", self.min_len, self.max_len),
            ));
        }
        if let Some(cap) = self.max_train_len {
            if cap == 0 || cap > self.max_len {
                return Err(DataError::config(
                    "data.max_train_len",
                    format!("({cap}) must be between 1 and data.max_len ({})", self.max_len),
                ));
            }
        }
        // Written so that NaN fails too.
        if !(self.max_len_ratio >= 1.0 && self.max_len_ratio.is_finite()) {
            return Err(DataError::config(
                "data.max_len_ratio",
                format!("({}) must be a finite number >= 1", self.max_len_ratio),
            ));
        }
        if self.max_tokens == 0 {
            return Err(DataError::config("data.max_tokens", "(0) must be positive"));
        }
        if self.max_tokens <= self.max_len {
            return Err(DataError::config(
                "data.max_tokens",
                format!(
                    "({}) must be at least data.max_len + 1 ({}) so that the longest kept \
                     sentence, plus EOS/BOS, fits in a batch",
                    self.max_tokens,
                    self.max_len.saturating_add(1)
                ),
            ));
        }
        if self.max_sentences == Some(0) {
            return Err(DataError::config(
                "data.max_sentences",
                "(0) must be positive (leave it out for no limit)",
            ));
        }
        Ok(())
    }

    /// Checks that the corpora to prepare are named: both sides of each, at least one training
    /// corpus, and the validation pair.
    ///
    /// # Errors
    ///
    /// [`DataError::Config`] naming the missing field.
    pub fn check_inputs(&self) -> Result<()> {
        for (field, src, tgt) in [
            ("data.train_src", &self.train_src, &self.train_tgt),
            ("data.valid_src", &self.valid_src, &self.valid_tgt),
        ] {
            if src.is_some() != tgt.is_some() {
                let other = field.replace("_src", "_tgt");
                return Err(DataError::config(field, format!("and {other} must be given together")));
            }
        }
        if self.train_corpora().is_empty() {
            return Err(DataError::config(
                "data",
                "names no training data: give train_src and train_tgt, [[data.corpora]], or a prepared \
                 dataset (prepared = DIR)",
            ));
        }
        if self.valid_corpus().is_none() {
            return Err(DataError::config(
                "data.valid_src",
                "and data.valid_tgt must name the validation corpus (or give prepared = DIR)",
            ));
        }
        Ok(())
    }

    /// The training corpora in order: `train_src`/`train_tgt`, then `corpora`.
    pub fn train_corpora(&self) -> Vec<CorpusPaths> {
        let first = match (&self.train_src, &self.train_tgt) {
            (Some(src), Some(tgt)) => Some(CorpusPaths { src: src.clone(), tgt: tgt.clone() }),
            _ => None,
        };
        first.into_iter().chain(self.corpora.iter().cloned()).collect()
    }

    /// The validation corpus, if both sides are named.
    pub fn valid_corpus(&self) -> Option<CorpusPaths> {
        match (&self.valid_src, &self.valid_tgt) {
            (Some(src), Some(tgt)) => Some(CorpusPaths { src: src.clone(), tgt: tgt.clone() }),
            _ => None,
        }
    }

    /// Every input file, training corpora first, then the validation pair and the tokenizer file.
    pub fn input_files(&self) -> Vec<&Path> {
        let mut files: Vec<&Path> = Vec::new();
        files.extend(self.train_src.as_deref());
        files.extend(self.train_tgt.as_deref());
        for corpus in &self.corpora {
            files.extend([corpus.src.as_path(), corpus.tgt.as_path()]);
        }
        files.extend(self.valid_src.as_deref());
        files.extend(self.valid_tgt.as_deref());
        files.extend(self.tokenizer_file.as_deref());
        files
    }

    /// The length filter these settings describe.
    pub fn length_filter(&self) -> LengthFilter {
        LengthFilter { min_len: self.min_len, max_len: self.max_len, max_ratio: self.max_len_ratio }
    }

    /// Why a training pair of these lengths is dropped: the first rule of the
    /// [`length_filter`](Self::length_filter) it breaks (shared with validation), then
    /// `max_train_len` on both sides; `None` keeps it.
    pub fn train_drop(&self, src_len: usize, tgt_len: usize) -> Option<DropReason> {
        match self.length_filter().judge(src_len, tgt_len) {
            LengthVerdict::TooShort => Some(DropReason::TooShort),
            LengthVerdict::TooLong => Some(DropReason::TooLong),
            LengthVerdict::BadRatio => Some(DropReason::BadRatio),
            LengthVerdict::Keep => match self.max_train_len {
                Some(cap) if src_len > cap || tgt_len > cap => Some(DropReason::OverMaxTrainLen),
                _ => None,
            },
        }
    }

    /// The batch planner these settings describe.
    pub fn batch_planner(&self) -> BatchPlanner {
        BatchPlanner {
            max_tokens: self.max_tokens,
            max_sentences: self.max_sentences,
            budget: self.token_budget,
        }
    }
}

/// Why a training pair was dropped: the first rule it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A side is empty or whitespace only.
    Empty,
    /// A side has fewer than `data.min_len` tokens.
    TooShort,
    /// A side has more than `data.max_len` tokens.
    TooLong,
    /// The longer side has more than `data.max_len_ratio` times the tokens of the shorter.
    BadRatio,
    /// A side has more than `data.max_train_len` tokens.
    OverMaxTrainLen,
}

/// What the training filters kept and dropped, over every corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainFilterReport {
    /// Pairs kept.
    pub kept: usize,
    /// Pairs dropped, by reason.
    pub dropped: DropCounts,
    /// `data.max_len_ratio`, for the wording.
    pub max_ratio: f64,
    /// `data.max_train_len`, if set.
    pub max_train_len: Option<usize>,
}

impl TrainFilterReport {
    /// Training pairs dropped by any filter.
    pub fn dropped(&self) -> usize {
        self.dropped.total()
    }
}

impl fmt::Display for TrainFilterReport {
    /// E.g. `kept 28,950 of 29,000 pairs (dropped 50: 0 empty, 0 too short, 48 too long, 2
    /// length ratio > 3)`, then, with `max_train_len` set, e.g. `; then 40 longer than
    /// max_train_len 10, leaving 150`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.dropped;
        let before_cap = self.kept + d.over_max_train_len;
        write!(
            f,
            "kept {} of {} pairs (dropped {}: {} empty, {} too short, {} too long, {} length ratio > {})",
            thousands(before_cap),
            thousands(self.kept + d.total()),
            thousands(d.total() - d.over_max_train_len),
            thousands(d.empty),
            thousands(d.too_short),
            thousands(d.too_long),
            thousands(d.bad_ratio),
            self.max_ratio
        )?;
        if let Some(cap) = self.max_train_len {
            write!(
                f,
                "; then {} longer than max_train_len {cap}, leaving {}",
                thousands(d.over_max_train_len),
                thousands(self.kept)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: &str = r#"
        train_src = "data/train.de.gz"
        train_tgt = "data/train.en.gz"
        valid_src = "data/val.de.gz"
        valid_tgt = "data/val.en.gz"
    "#;

    fn parse(extra: &str) -> std::result::Result<DataConfig, toml::de::Error> {
        toml::from_str(&format!("{PATHS}\n{extra}"))
    }

    fn valid() -> DataConfig {
        parse("").unwrap()
    }

    fn message(config: &DataConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_apply_when_only_paths_are_given() {
        let c = valid();
        assert_eq!(c.train_src, Some(PathBuf::from("data/train.de.gz")));
        assert_eq!((c.prepared.as_ref(), c.corpora.len(), c.tokenizer_file.as_ref()), (None, 0, None));
        assert_eq!((c.tokenizer_sample, c.tokenizer_sample_seed, c.shard_pairs), (2_000_000, 1, 1_000_000));
        assert_eq!(c.tokenizer, SubwordModel::Bpe);
        assert_eq!(c.vocab_size, 8000);
        assert_eq!((c.min_len, c.max_len), (1, 128));
        assert_eq!(c.max_len_ratio, 3.0);
        assert_eq!(c.max_tokens, 4096);
        assert_eq!(c.max_sentences, None);
        assert!(c.validate().is_ok());
        let path = |p: &Option<PathBuf>| p.clone().unwrap();
        let same = DataConfig::with_paths(
            path(&c.train_src),
            path(&c.train_tgt),
            path(&c.valid_src),
            path(&c.valid_tgt),
        );
        assert_eq!(same, c);
    }

    #[test]
    fn explicit_values_and_model_names() {
        let c = parse("tokenizer = \"unigram\"\nvocab_size = 16000\nmax_sentences = 64").unwrap();
        assert_eq!(c.tokenizer, SubwordModel::Unigram);
        assert_eq!(c.vocab_size, 16000);
        assert_eq!(c.max_sentences, Some(64));
        assert!(parse("tokenizer = \"bpe\"").is_ok());
        assert!(parse("tokenizer = \"wordpiece\"").is_err());
    }

    #[test]
    fn unknown_and_missing_fields_are_rejected() {
        let err = parse("vocab_sise = 8000").unwrap_err();
        assert!(err.to_string().contains("vocab_sise"), "{err}");
        // A missing side parses (every path is optional) but does not validate.
        let half = toml::from_str::<DataConfig>("train_src = \"a\"").unwrap();
        assert!(half.validate().unwrap_err().to_string().contains("train_tgt"));
    }

    #[test]
    fn corpora_lists_and_prepared_datasets() {
        let c: DataConfig = toml::from_str(
            r#"
            valid_src = "v.de"
            valid_tgt = "v.en"
            [[corpora]]
            src = "europarl.de.gz"
            tgt = "europarl.en.gz"
            [[corpora]]
            src = "news.de"
            tgt = "news.en"
            "#,
        )
        .unwrap();
        assert!(c.validate().is_ok());
        let names: Vec<_> = c.train_corpora().into_iter().map(|p| p.src).collect();
        assert_eq!(names, [PathBuf::from("europarl.de.gz"), PathBuf::from("news.de")]);
        assert_eq!(c.input_files().len(), 6);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<DataConfig>(&text).unwrap(), c);
        // train_src/train_tgt come first, then the list.
        let both = DataConfig { corpora: c.corpora.clone(), ..valid() };
        assert_eq!(both.train_corpora().len(), 3);
        assert_eq!(both.train_corpora()[0].src, PathBuf::from("data/train.de.gz"));

        // Nothing to train on, half a pair, no validation set: each named.
        let none = DataConfig { train_src: None, train_tgt: None, ..valid() };
        assert!(message(&none).starts_with("data names no training data"), "{}", message(&none));
        let half = DataConfig { train_tgt: None, ..valid() };
        assert_eq!(message(&half), "data.train_src and data.train_tgt must be given together");
        let no_valid = DataConfig { valid_src: None, valid_tgt: None, ..valid() };
        assert!(message(&no_valid).starts_with("data.valid_src and data.valid_tgt must name"));
        // A prepared dataset needs none of them.
        let prepared: DataConfig = toml::from_str("prepared = \"data/wmt14\"").unwrap();
        assert!(prepared.validate().is_ok());
        let c = DataConfig { max_len: 70_000, max_tokens: 80_000, ..valid() };
        assert!(message(&c).starts_with("data.max_len (70000) must be at most 65535"));
    }

    #[test]
    fn serialization_round_trips() {
        let c = parse("max_sentences = 10\nmax_len_ratio = 2.5").unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<DataConfig>(&text).unwrap(), c);
    }

    #[test]
    fn validate_names_field_value_and_rule() {
        let c = DataConfig { vocab_size: 3, ..valid() };
        assert_eq!(message(&c), "data.vocab_size (3) must be at least 5 (4 special tokens + 1)");
        let c = DataConfig { min_len: 10, max_len: 5, ..valid() };
        assert_eq!(message(&c), "data.min_len (10) must not exceed data.max_len (5)");
        let c = DataConfig { max_len_ratio: 0.5, ..valid() };
        assert_eq!(message(&c), "data.max_len_ratio (0.5) must be a finite number >= 1");
        let c = DataConfig { max_len_ratio: f64::NAN, ..valid() };
        assert!(message(&c).starts_with("data.max_len_ratio (NaN)"));
        let c = DataConfig { max_tokens: 0, ..valid() };
        assert_eq!(message(&c), "data.max_tokens (0) must be positive");
        let c = DataConfig { max_tokens: 100, ..valid() };
        assert!(message(&c).starts_with("data.max_tokens (100) must be at least data.max_len + 1 (129)"));
        let c = DataConfig { max_sentences: Some(0), ..valid() };
        assert!(message(&c).starts_with("data.max_sentences (0)"));
        let c = DataConfig { max_len: 0, min_len: 0, ..valid() };
        assert_eq!(message(&c), "data.max_len (0) must be at least 1");
    }

    #[test]
    fn max_train_len_is_optional_and_bounded_by_max_len() {
        assert_eq!(valid().max_train_len, None);
        let c = parse("max_len = 50\nmax_train_len = 20").unwrap();
        assert_eq!(c.max_train_len, Some(20));
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<DataConfig>(&text).unwrap(), c);
        for ok in [1, 128] {
            assert!(DataConfig { max_train_len: Some(ok), ..valid() }.validate().is_ok(), "{ok}");
        }
        let c = DataConfig { max_train_len: Some(0), ..valid() };
        assert_eq!(message(&c), "data.max_train_len (0) must be between 1 and data.max_len (128)");
        let c = DataConfig { max_train_len: Some(129), ..valid() };
        assert_eq!(message(&c), "data.max_train_len (129) must be between 1 and data.max_len (128)");
    }

    #[test]
    fn max_train_len_drops_long_pairs_from_training_only() {
        let c = DataConfig { max_len: 10, max_train_len: Some(4), ..valid() };
        let pairs = [
            (3, 4),   // kept by both
            (5, 3),   // source over max_train_len
            (2, 5),   // target over max_train_len
            (11, 11), // over max_len: the shared filter's "too long"
            (4, 4),   // kept by both: max_train_len is inclusive
            (0, 2),   // too short
        ];
        let verdicts: Vec<_> = pairs.iter().map(|&(s, t)| c.train_drop(s, t)).collect();
        use DropReason::*;
        assert_eq!(
            verdicts,
            [None, Some(OverMaxTrainLen), Some(OverMaxTrainLen), Some(TooLong), None, Some(TooShort)]
        );
        let mut dropped = DropCounts::default();
        verdicts.iter().flatten().for_each(|&reason| dropped.count(reason));
        let report = TrainFilterReport { kept: 2, dropped, max_ratio: 3.0, max_train_len: Some(4) };
        assert_eq!(
            report.to_string(),
            "kept 4 of 6 pairs (dropped 2: 0 empty, 1 too short, 1 too long, 0 length ratio > 3); \
             then 2 longer than max_train_len 4, leaving 2"
        );
        // Validation pairs only meet the shared filter.
        let kept: Vec<_> =
            pairs.iter().filter(|&&(s, t)| c.length_filter().judge(s, t) == LengthVerdict::Keep).collect();
        assert_eq!(kept, [&(3, 4), &(5, 3), &(2, 5), &(4, 4)]);
        // Without the cap, training is filtered as validation is.
        let uncapped = DataConfig { max_train_len: None, ..c };
        let kept_uncapped: Vec<_> =
            pairs.iter().filter(|&&(s, t)| uncapped.train_drop(s, t).is_none()).collect();
        assert_eq!(kept_uncapped, kept);
        let report = TrainFilterReport { max_train_len: None, ..report };
        assert!(!report.to_string().contains("max_train_len"));
    }

    #[test]
    fn filter_and_planner_carry_the_settings() {
        let c = parse("min_len = 2\nmax_len = 50\nmax_len_ratio = 2.0\nmax_tokens = 1000").unwrap();
        assert_eq!(c.length_filter(), LengthFilter { min_len: 2, max_len: 50, max_ratio: 2.0 });
        assert_eq!(
            c.batch_planner(),
            BatchPlanner { max_tokens: 1000, max_sentences: None, budget: TokenBudget::Longer }
        );
    }
}
