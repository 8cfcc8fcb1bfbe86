//! The `[data]` section of a Locus configuration file.
//!
//! Only the four corpus paths are required; every other field has a default.
//! Unknown fields are rejected so that typos do not go unnoticed. Call
//! [`DataConfig::validate`] after reading; its errors name the field, its
//! value and the rule it breaks.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::batching::{BatchPlanner, TokenBudget, TokenizedPair};
use crate::error::{DataError, Result};
use crate::filter::{filter_pairs, thousands, FilterReport, LengthFilter};
use crate::tokenizer::{SubwordModel, SPECIAL_TOKENS};

/// Data settings: corpora, subword vocabulary, length filter and batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Source side of the training corpus, one sentence per line (plain
    /// text, or gzip when the name ends in `.gz`).
    pub train_src: PathBuf,
    /// Target side of the training corpus, line-aligned with `train_src`.
    pub train_tgt: PathBuf,
    /// Source side of the validation corpus.
    pub valid_src: PathBuf,
    /// Target side of the validation corpus, line-aligned with `valid_src`.
    pub valid_tgt: PathBuf,
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
            train_src,
            train_tgt,
            valid_src,
            valid_tgt,
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

    /// The length filter these settings describe.
    pub fn length_filter(&self) -> LengthFilter {
        LengthFilter { min_len: self.min_len, max_len: self.max_len, max_ratio: self.max_len_ratio }
    }

    /// Keeps the training pairs that pass [`length_filter`](Self::length_filter) and, when
    /// set, `max_train_len` on both sides; validation pairs go through
    /// [`length_filter`](Self::length_filter) alone.
    pub fn filter_train(&self, pairs: Vec<TokenizedPair>) -> (Vec<TokenizedPair>, TrainFilterReport) {
        let (mut kept, length) = filter_pairs(pairs, &self.length_filter());
        if let Some(cap) = self.max_train_len {
            kept.retain(|pair| pair.src.len() <= cap && pair.tgt.len() <= cap);
        }
        let over_max_train_len = length.kept - kept.len();
        (kept, TrainFilterReport { length, max_train_len: self.max_train_len, over_max_train_len })
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

/// What [`DataConfig::filter_train`] kept and dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainFilterReport {
    /// The verdicts of the length filter shared with validation.
    pub length: FilterReport,
    /// `data.max_train_len`, if set.
    pub max_train_len: Option<usize>,
    /// Pairs the length filter kept but `max_train_len` dropped.
    pub over_max_train_len: usize,
}

impl TrainFilterReport {
    /// Training pairs kept by every filter.
    pub fn kept(&self) -> usize {
        self.length.kept - self.over_max_train_len
    }

    /// Training pairs dropped by any filter.
    pub fn dropped(&self) -> usize {
        self.length.dropped() + self.over_max_train_len
    }
}

impl fmt::Display for TrainFilterReport {
    /// The length filter's report, then, with `max_train_len` set, e.g. `; then 40 longer
    /// than max_train_len 10, leaving 150`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.length)?;
        if let Some(cap) = self.max_train_len {
            write!(
                f,
                "; then {} longer than max_train_len {cap}, leaving {}",
                thousands(self.over_max_train_len),
                thousands(self.kept())
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
        assert_eq!(c.train_src, PathBuf::from("data/train.de.gz"));
        assert_eq!(c.tokenizer, SubwordModel::Bpe);
        assert_eq!(c.vocab_size, 8000);
        assert_eq!((c.min_len, c.max_len), (1, 128));
        assert_eq!(c.max_len_ratio, 3.0);
        assert_eq!(c.max_tokens, 4096);
        assert_eq!(c.max_sentences, None);
        assert!(c.validate().is_ok());
        let same = DataConfig::with_paths(
            c.train_src.clone(),
            c.train_tgt.clone(),
            c.valid_src.clone(),
            c.valid_tgt.clone(),
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
        let err = toml::from_str::<DataConfig>("train_src = \"a\"").unwrap_err();
        assert!(err.to_string().contains("train_tgt"), "{err}");
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

    fn pair(src_len: usize, tgt_len: usize) -> TokenizedPair {
        TokenizedPair { src: vec![7; src_len], tgt: vec![9; tgt_len] }
    }

    #[test]
    fn max_train_len_drops_long_pairs_from_training_only() {
        let c = DataConfig { max_len: 10, max_train_len: Some(4), ..valid() };
        let pairs = || {
            vec![
                pair(3, 4),   // kept by both
                pair(5, 3),   // source over max_train_len
                pair(2, 5),   // target over max_train_len
                pair(11, 11), // over max_len: the shared filter's "too long"
                pair(4, 4),   // kept by both: max_train_len is inclusive
                pair(0, 2),   // too short
            ]
        };
        let (train, report) = c.filter_train(pairs());
        assert_eq!(train, vec![pair(3, 4), pair(4, 4)]);
        assert_eq!((report.length.kept, report.length.dropped()), (4, 2));
        assert_eq!((report.over_max_train_len, report.kept(), report.dropped()), (2, 2, 4));
        assert_eq!(
            report.to_string(),
            "kept 4 of 6 pairs (dropped 2: 1 too short, 1 too long, 0 length ratio > 3); \
             then 2 longer than max_train_len 4, leaving 2"
        );
        // Validation pairs only meet the shared filter.
        let (valid_pairs, _) = filter_pairs(pairs(), &c.length_filter());
        assert_eq!(valid_pairs, vec![pair(3, 4), pair(5, 3), pair(2, 5), pair(4, 4)]);
        // Without the cap, training is filtered as validation is, and reported the same way.
        let uncapped = DataConfig { max_train_len: None, ..c };
        let (train, report) = uncapped.filter_train(pairs());
        assert_eq!(train, valid_pairs);
        assert_eq!((report.over_max_train_len, report.kept()), (0, 4));
        assert_eq!(report.to_string(), report.length.to_string());
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
