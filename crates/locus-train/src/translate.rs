//! Batched translation of plain-text lines: greedy search, beam search (with n-best lists) or
//! sampling, as [`Search`] says.
//!
//! Any line translates, whatever it holds; none makes the model allocate without bound:
//!
//! - a blank (empty or whitespace-only) line gives one empty translation without running the
//!   model;
//! - a source longer than [`Translator::source_limit`] tokens (by default
//!   [`DEFAULT_MAX_SOURCE_LEN`], as CTranslate2's `max_input_length`, and never more than a
//!   `learned` position table holds) is cropped to its first tokens, as Marian's
//!   `--max-length-crop`; [`LineTranslation::cropped`] says so, for the caller to report;
//! - an output stops after [`Translator::output_limit`] tokens: `max_len_a × source length +
//!   max_len_b` (fairseq's `--max-len-a/b`), at most [`Translator::max_len`] when it is set, and
//!   never past the decoder's `learned` position table;
//! - a batch holds at most [`Translator::batch_size`] sentences and
//!   [`Translator::max_tokens`] padded source tokens (fairseq-generate's `--max-tokens`), so
//!   the encoder's attention over a batch of long lines stays small.
//!
//! Characters the tokenizer does not know (control characters, other scripts, emoji) become
//! its unknown token; they never fail.

use std::ops::Range;

use candle_core::Tensor;
use locus_data::SubwordTokenizer;
use locus_model::{
    beam_search, greedy_decode_to, sample, Admission, BeamOptions, Finished, Hypothesis, LengthLimits,
    RunningBatch, SamplingOptions, Seq2Seq, Seq2SeqScorer,
};

use crate::batch::pad_rows;
use crate::error::Result;
use crate::workers::map_on_workers;

/// Default of [`Translator::max_source_len`]: source tokens kept of a longer line (CTranslate2's
/// default `max_input_length`; far beyond the sentences models are trained on).
pub const DEFAULT_MAX_SOURCE_LEN: usize = 1024;

/// Default of [`Translator::max_tokens`]: padded source tokens in one batch. 64 sentences of up
/// to 127 tokens fit; of [`DEFAULT_MAX_SOURCE_LEN`] tokens, 7.
pub const DEFAULT_MAX_TOKENS: usize = 8192;

/// How translations are searched for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Search {
    /// The most probable token at each step.
    Greedy,
    /// Beam search.
    Beam(BeamOptions),
    /// Sampling.
    Sample(SamplingOptions),
}

/// One translation of a line, with its scores under the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The detokenized text.
    pub text: String,
    /// What the search ranks by (natural log; length-normalised in beam search).
    pub score: f64,
    /// Natural-log probability of the output and its EOS.
    pub log_prob: f64,
    /// Output subword tokens (EOS excluded).
    pub length: usize,
}

/// The translations of one input line, and what became of its source.
#[derive(Debug, Clone, PartialEq)]
pub struct LineTranslation {
    /// Best first: one for greedy search, up to `nbest` for beam search, `samples` for
    /// sampling; one empty translation for a blank line.
    pub translations: Vec<Translation>,
    /// Source tokens (EOS excluded) before cropping to [`Translator::source_limit`]; 0 for a
    /// blank line. Of a line so long that only its start was tokenized (twice the characters
    /// that `source_limit + 1` of the vocabulary's longest pieces cover), the tokens of that
    /// start: a lower bound.
    pub source_len: usize,
    /// Whether the source was longer than [`Translator::source_limit`] and only its first
    /// tokens were translated.
    pub cropped: bool,
}

/// Translates lines with a model and its tokenizer.
pub struct Translator<'a> {
    model: &'a Seq2Seq,
    tokenizer: &'a SubwordTokenizer,
    /// Characters of the vocabulary's longest piece: the most one token covers.
    max_piece_chars: usize,
    /// The search.
    pub search: Search,
    /// Output length limits relative to the source length.
    pub limits: LengthLimits,
    /// A fixed cap on every output's tokens (EOS excluded), below the relative limit of
    /// `limits`; `None`: the relative limit alone.
    pub max_len: Option<usize>,
    /// Sources longer than this many tokens (EOS excluded) are cropped to their first
    /// `max_source_len` tokens.
    pub max_source_len: usize,
    /// Most sentences decoded together.
    pub batch_size: usize,
    /// Most source tokens in a batch, counted as sentences × (longest source + EOS); a batch
    /// always takes at least one sentence.
    pub max_tokens: usize,
    /// Batches decoded at once, each on a thread of its own with a pool as large as the calling
    /// thread's (see [`crate::workers`]); 1 decodes them one after the other on the calling
    /// thread.
    pub workers: usize,
}

impl<'a> Translator<'a> {
    /// A greedy translator with default limits and batches of 64 sentences (at most
    /// [`DEFAULT_MAX_TOKENS`] tokens), cropping sources at [`DEFAULT_MAX_SOURCE_LEN`] tokens.
    pub fn new(model: &'a Seq2Seq, tokenizer: &'a SubwordTokenizer) -> Self {
        let vocab = tokenizer.inner().get_vocab(true);
        let max_piece_chars = vocab.keys().map(|piece| piece.chars().count()).max().unwrap_or(1).max(1);
        Self {
            model,
            tokenizer,
            max_piece_chars,
            search: Search::Greedy,
            limits: LengthLimits::default(),
            max_len: None,
            max_source_len: DEFAULT_MAX_SOURCE_LEN,
            batch_size: 64,
            max_tokens: DEFAULT_MAX_TOKENS,
            workers: 1,
        }
    }

    /// Source tokens (EOS excluded) translated of a line: [`max_source_len`](Self::max_source_len),
    /// or fewer if the encoder's `learned` position table holds fewer positions (the source and
    /// its EOS must fit).
    pub fn source_limit(&self) -> usize {
        let positions = self.model.config().encoder_positional().max_positions();
        positions
            .map_or(self.max_source_len, |positions| self.max_source_len.min(positions.saturating_sub(1)))
    }

    /// Most output tokens (EOS excluded) for a source of `source_len` tokens: `limits`' relative
    /// limit, at most [`max_len`](Self::max_len), and short enough for the decoder's `learned`
    /// position table, if it has one, to hold every step (BOS, the tokens and a forced EOS).
    pub fn output_limit(&self, source_len: usize) -> usize {
        let positions = self.model.config().decoder_positional().max_positions();
        let relative = self.limits.max_len(source_len);
        let capped = self.max_len.map_or(relative, |cap| relative.min(cap));
        positions.map_or(capped, |positions| capped.min(positions.saturating_sub(1)))
    }

    /// Translates `lines`, returning the best translation of each, in input order. Blank lines
    /// translate to empty lines.
    pub fn translate<S: AsRef<str>>(&self, lines: &[S]) -> Result<Vec<String>> {
        let nbest = self.translate_nbest(lines, 0)?;
        Ok(nbest.into_iter().map(|mut list| list.swap_remove(0).text).collect())
    }

    /// Translates `lines` into lists of translations, best first (one for greedy search, up to
    /// `nbest` for beam search, `samples` for sampling), in input order; `first_line` is the
    /// index of `lines[0]` in the whole input (it seeds sampling, so that samples do not depend
    /// on batching). A blank line gives one empty translation. Sentences are decoded in
    /// batches of similar length.
    pub fn translate_nbest<S: AsRef<str>>(
        &self,
        lines: &[S],
        first_line: usize,
    ) -> Result<Vec<Vec<Translation>>> {
        Ok(self.translate_lines(lines, first_line)?.into_iter().map(|line| line.translations).collect())
    }

    /// [`translate_nbest`](Self::translate_nbest), saying also of each line how long its source
    /// was and whether it was cropped. The lines are sorted by length and decoded in batches
    /// of at most [`batch_size`](Self::batch_size) sentences and
    /// [`max_tokens`](Self::max_tokens) tokens; memory grows with the batch, not with `lines`'
    /// longest line (a line is cropped to [`source_limit`](Self::source_limit) tokens).
    pub fn translate_lines<S: AsRef<str>>(
        &self,
        lines: &[S],
        first_line: usize,
    ) -> Result<Vec<LineTranslation>> {
        let eos = self.model.tokens().eos;
        let mut outputs = Vec::with_capacity(lines.len());
        let mut encoded: Vec<Vec<u32>> = Vec::with_capacity(lines.len());
        for line in lines {
            let (tokens, untranslated) = self.source(line.as_ref())?;
            encoded.push(tokens);
            outputs.push(untranslated);
        }
        let mut order: Vec<usize> = (0..lines.len()).filter(|&i| !encoded[i].is_empty()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let sorted_lens: Vec<usize> = order.iter().map(|&i| encoded[i].len()).collect();
        let ranges = batch_ranges(&sorted_lens, self.batch_size, self.max_tokens);
        let translated = map_on_workers(ranges.len(), self.workers, |batch| {
            let chunk = &order[ranges[batch].clone()];
            let rows: Vec<Vec<u32>> =
                chunk.iter().map(|&i| encoded[i].iter().copied().chain([eos]).collect()).collect();
            let src: Tensor = pad_rows(&rows, self.model.tokens().pad, self.model.device())?;
            let lens: Vec<usize> = chunk.iter().map(|&i| encoded[i].len()).collect();
            let ids: Vec<usize> = chunk.iter().map(|&i| first_line + i).collect();
            self.search_batch(&src, &lens, &ids)?
                .into_iter()
                .map(|hyps| hyps.into_iter().map(|hyp| self.to_translation(hyp)).collect::<Result<Vec<_>>>())
                .collect::<Result<Vec<_>>>()
        })?;
        for (range, batch) in ranges.into_iter().zip(translated) {
            for (&i, translations) in order[range].iter().zip(batch) {
                outputs[i].translations = translations;
            }
        }
        Ok(outputs)
    }

    /// The source tokens of `line` (EOS excluded; none for a blank line), cropped to
    /// [`source_limit`](Self::source_limit), and its [`LineTranslation`] before the search:
    /// one empty translation, what became of its source.
    pub fn source(&self, line: &str) -> Result<(Vec<u32>, LineTranslation)> {
        let source_limit = self.source_limit();
        // Each source is cropped as it is encoded, so that a chunk of long lines holds only what
        // it translates. A very long line is cut first, to twice the characters its first
        // `source_limit + 1` tokens can cover: the tokenizer never sees megabytes at once.
        let max_chars = (source_limit.saturating_add(1)).saturating_mul(2 * self.max_piece_chars);
        let (line, cut) = prefix(line.trim(), max_chars);
        let mut tokens = if line.is_empty() { Vec::new() } else { self.tokenizer.encode(line)? };
        let (source_len, cropped) = (tokens.len(), cut || tokens.len() > source_limit);
        if tokens.len() > source_limit {
            tokens.truncate(source_limit);
            tokens.shrink_to_fit();
        }
        let empty = Translation { text: String::new(), score: 0.0, log_prob: 0.0, length: 0 };
        Ok((tokens, LineTranslation { translations: vec![empty], source_len, cropped }))
    }

    /// The tokens (EOS excluded) of the best translation of the source `tokens` (from
    /// [`source`](Self::source), EOS excluded) under this translator's search and limits: the
    /// output [`translate`](Self::translate) detokenizes, as tokens.
    pub fn best_tokens(&self, tokens: &[u32]) -> Result<Vec<u32>> {
        let row: Vec<u32> = tokens.iter().copied().chain([self.model.tokens().eos]).collect();
        let src = pad_rows(&[row], self.model.tokens().pad, self.model.device())?;
        let best = self
            .search_batch(&src, &[tokens.len()], &[0])?
            .into_iter()
            .next()
            .and_then(|hyps| hyps.into_iter().next());
        Ok(best.map(|hyp| hyp.tokens).unwrap_or_default())
    }

    /// An empty batch for continuous greedy decoding with this translator's model: sentences
    /// join it by [`admit`](Self::admit) and leave it as they end.
    pub fn running_batch<Id: Copy>(&self) -> RunningBatch<'a, Id> {
        RunningBatch::new(self.model)
    }

    /// How the source `tokens` (from [`source`](Self::source)) is decoded in a
    /// [`RunningBatch`] under `id`: with this translator's [`output_limit`](Self::output_limit)
    /// and minimum length, as [`Search::Greedy`] decodes it here.
    pub fn admission<Id>(&self, id: Id, tokens: &[u32]) -> Admission<Id> {
        Admission { id, max_len: self.output_limit(tokens.len()), min_len: self.limits.min_len }
    }

    /// Adds sources (from [`source`](Self::source), not blank) to `batch`, each with its
    /// [`admission`](Self::admission). Returns those that end at once (an output limit of 0).
    pub fn admit<Id: Copy>(
        &self,
        batch: &mut RunningBatch<'a, Id>,
        sources: &[(Admission<Id>, Vec<u32>)],
    ) -> Result<Vec<Finished<Id>>> {
        let eos = self.model.tokens().eos;
        let rows: Vec<Vec<u32>> =
            sources.iter().map(|(_, tokens)| tokens.iter().copied().chain([eos]).collect()).collect();
        let src = pad_rows(&rows, self.model.tokens().pad, self.model.device())?;
        let admissions: Vec<Admission<Id>> = sources.iter().map(|(admission, _)| *admission).collect();
        Ok(batch.admit(&src, &admissions)?)
    }

    /// `hyp` detokenized.
    pub fn to_translation(&self, hyp: Hypothesis) -> Result<Translation> {
        let text = self.tokenizer.decode(&hyp.tokens)?;
        Ok(Translation { text, score: hyp.score, log_prob: hyp.log_prob, length: hyp.tokens.len() })
    }

    /// Runs the search on one padded batch of the input lines `ids`.
    fn search_batch(&self, src: &Tensor, lens: &[usize], ids: &[usize]) -> Result<Vec<Vec<Hypothesis>>> {
        let tokens = self.model.tokens();
        let max_lens: Vec<usize> = lens.iter().map(|&len| self.output_limit(len)).collect();
        Ok(match &self.search {
            Search::Greedy => greedy_decode_to(self.model, src, &max_lens, self.limits.min_len)?
                .into_iter()
                .map(|hyp| vec![hyp])
                .collect(),
            Search::Beam(options) => {
                let mut scorer = Seq2SeqScorer::new(self.model, src)?;
                beam_search(&mut scorer, &max_lens, tokens.eos, tokens.bos, &self.limits, options)?
            }
            Search::Sample(options) => {
                let mut scorer = Seq2SeqScorer::new(self.model, src)?;
                sample(&mut scorer, &max_lens, ids, (tokens.bos, tokens.eos), &self.limits, options)?
            }
        })
    }
}

/// The first `max_chars` characters of `text`, and whether that is less than all of it.
fn prefix(text: &str, max_chars: usize) -> (&str, bool) {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// Splits sentences sorted by length (`sorted_lens`, EOS excluded) into consecutive batches of
/// at most `batch_size` sentences whose padded size, sentences × (longest + 1), stays within
/// `max_tokens`; a sentence alone over the budget is a batch of its own.
fn batch_ranges(sorted_lens: &[usize], batch_size: usize, max_tokens: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for (i, &len) in sorted_lens.iter().enumerate() {
        let rows = i + 1 - start;
        if rows > 1 && (rows > batch_size.max(1) || rows * (len + 1) > max_tokens) {
            ranges.push(start..i);
            start = i;
        }
    }
    if start < sorted_lens.len() {
        ranges.push(start..sorted_lens.len());
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use locus_data::SubwordModel;
    use locus_model::{ModelConfig, PositionalConfig};

    #[test]
    fn prefixes_count_characters_not_bytes() {
        assert_eq!(prefix("äöü", 2), ("äö", true));
        assert_eq!(prefix("äöü", 3), ("äöü", false));
        assert_eq!(prefix("", 0), ("", false));
    }

    #[test]
    fn batches_hold_at_most_batch_size_sentences_and_max_tokens_tokens() {
        assert_eq!(batch_ranges(&[], 4, 100), Vec::<Range<usize>>::new());
        assert_eq!(batch_ranges(&[1, 1, 2, 2, 3], 2, 100), vec![0..2, 2..4, 4..5]);
        // 3 sentences of 9 tokens (+ EOS) fill 30 tokens; a 4th of 19 needs a batch of its own,
        // and one of 99 is over the budget alone.
        assert_eq!(batch_ranges(&[9, 9, 9, 19, 99], 64, 30), vec![0..3, 3..4, 4..5]);
        assert_eq!(batch_ranges(&[5; 7], 0, 1000), (0..7).map(|i| i..i + 1).collect::<Vec<_>>());
    }

    /// Batches decoded by several workers at once give exactly what one worker gives, in input
    /// order, for greedy search and beam search.
    #[test]
    fn workers_translate_as_one_does() {
        let texts = ["ein hund läuft über die wiese", "zwei kinder spielen ball", "ein mann", "die wiese"];
        let tokenizer = SubwordTokenizer::train(SubwordModel::Bpe, 60, texts).unwrap();
        let cfg = ModelConfig::tiny_with(PositionalConfig::default());
        let (model, _) = crate::modeling::build_model(&cfg, tokenizer.vocab_size(), 3, &Device::Cpu).unwrap();
        let lines: Vec<String> =
            (0..23).map(|i| texts[i % 4].split(' ').take(1 + i % 5).collect::<Vec<_>>().join(" ")).collect();
        let mut translator = Translator::new(&model, &tokenizer);
        translator.batch_size = 2;
        for search in [
            Search::Greedy,
            Search::Beam(BeamOptions { beam: 3, nbest: 2, length_penalty: 1.0, early_stop: false }),
        ] {
            translator.search = search;
            translator.workers = 1;
            let alone = translator.translate_lines(&lines, 0).unwrap();
            let distinct: std::collections::HashSet<&str> =
                alone.iter().map(|line| line.translations[0].text.as_str()).collect();
            // Different lines translate differently, so a line given another's output shows.
            assert!(distinct.len() > 3, "{distinct:?}");
            translator.workers = 3;
            assert_eq!(translator.translate_lines(&lines, 0).unwrap(), alone, "{search:?}");
        }
    }

    /// A model whose stacks have a `learned` table of 12 positions takes a line of hundreds of
    /// tokens: the source is cropped to 11 tokens (+ EOS) and the output stops at 11 tokens
    /// (+ EOS), where the table ends, instead of failing the whole batch. `max_len` caps
    /// outputs lower still.
    #[test]
    fn long_sources_are_cropped_to_what_the_model_takes() {
        let texts = ["ein hund läuft über die wiese", "zwei kinder spielen ball"];
        let tokenizer = SubwordTokenizer::train(SubwordModel::Bpe, 60, texts).unwrap();
        let positional = PositionalConfig::default_for(locus_model::positional::PositionalKind::Learned, 12);
        let cfg = ModelConfig::tiny_with(positional);
        let (model, _) = crate::modeling::build_model(&cfg, tokenizer.vocab_size(), 3, &Device::Cpu).unwrap();
        let long = "ein hund läuft über die wiese ".repeat(40);
        let lines = ["zwei kinder", "", long.as_str(), "\u{1}\u{7f} 🐕 中文"];
        let mut translator = Translator::new(&model, &tokenizer);
        translator.limits = LengthLimits { max_len_a: 4.0, max_len_b: 10, min_len: 0 };
        assert_eq!(translator.source_limit(), 11);
        assert_eq!(translator.output_limit(200), 11);
        let translated = translator.translate_lines(&lines, 0).unwrap();
        assert_eq!(translated.len(), 4);
        assert!(translated[2].cropped && translated[2].source_len > 11, "{:?}", translated[2]);
        assert!(!translated[0].cropped && translated[1].source_len == 0);
        assert!(translated.iter().all(|line| line.translations[0].length <= 11));
        translator.max_len = Some(2);
        for search in [
            Search::Greedy,
            Search::Beam(BeamOptions { beam: 2, nbest: 2, length_penalty: 1.0, early_stop: false }),
        ] {
            translator.search = search;
            let translated = translator.translate_lines(&lines, 0).unwrap();
            assert!(translated.iter().flat_map(|line| &line.translations).all(|t| t.length <= 2));
        }
    }
}
