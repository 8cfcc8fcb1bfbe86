//! Corpus-level chrF (Popović, 2015, <https://aclanthology.org/W15-3049>) and chrF++
//! (Popović, 2017, <https://aclanthology.org/W17-4770>) with sacreBLEU's defaults.
//!
//! Mirrors sacreBLEU 2.6.0's `metrics/chrf.py` and `metrics/helpers.py`
//! (<https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/metrics/chrf.py>):
//! no tokenization; lowercasing (Python's `str.lower`) only when asked; whitespace
//! (Python's definition) is removed
//! before extracting character n-grams of orders 1..=6; chrF++ adds word n-grams
//! after splitting one ASCII punctuation mark off each word's end (or start).
//! For every segment the reference with the best segment-level F-score supplies
//! the `[hyp, ref, match]` counts, which are summed over the corpus.
//!
//! The default `eps_smoothing=False` is used: precision and recall are averaged
//! over the *effective* orders only, i.e. those where both the hypothesis and the
//! reference side have n-grams, and F-β is computed from the two averages
//! (0 when no order is effective or both averages are 0).

use std::borrow::Cow;
use std::cmp::min;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use crate::error::MetricError;
use crate::lowercase::py_lower;
use crate::pystr::{py_split, remove_py_space};
use crate::streams::{check_streams, segment_refs};
use crate::SACREBLEU_VERSION;

/// The settings of chrF that may differ from sacreBLEU's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChrfParams {
    /// Maximum character n-gram order (sacreBLEU default 6).
    pub char_order: usize,
    /// Maximum word n-gram order: 0 for chrF (default), 2 for chrF++.
    pub word_order: usize,
    /// Weight of recall relative to precision (sacreBLEU default 2).
    pub beta: usize,
    /// Lowercase hypotheses and references first (sacreBLEU default off; the
    /// `sacrebleu` command's `--chrf-lowercase`).
    pub lowercase: bool,
}

impl Default for ChrfParams {
    fn default() -> Self {
        Self { char_order: 6, word_order: 0, beta: 2, lowercase: false }
    }
}

impl ChrfParams {
    /// chrF++: the defaults with word bigrams (`word_order = 2`).
    #[must_use]
    pub fn chrf_plus_plus() -> Self {
        Self { word_order: 2, ..Self::default() }
    }

    /// sacreBLEU's signature for these settings with `nrefs` reference streams,
    /// e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0`.
    #[must_use]
    pub fn signature(&self, nrefs: usize) -> String {
        let case = if self.lowercase { "lc" } else { "mixed" };
        format!(
            "nrefs:{nrefs}|case:{case}|eff:yes|nc:{}|nw:{}|space:no|version:{SACREBLEU_VERSION}",
            self.char_order, self.word_order
        )
    }
}

/// A corpus chrF score, as sacreBLEU's `CHRFScore`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChrfScore {
    /// chrF on the 0..=100 scale.
    pub score: f64,
    /// Maximum character n-gram order used.
    pub char_order: usize,
    /// Maximum word n-gram order used (0 for chrF, 2 for chrF++).
    pub word_order: usize,
    /// β of the F-score.
    pub beta: usize,
}

impl ChrfScore {
    /// sacreBLEU's name of the metric: `chrF2`, with one `+` per word order (`chrF2++`).
    #[must_use]
    pub fn name(&self) -> String {
        let mut name = format!("chrF{}", self.beta);
        name.extend(std::iter::repeat_n('+', self.word_order));
        name
    }
}

impl fmt::Display for ChrfScore {
    /// sacreBLEU's `str(score)`, e.g. `chrF2 = 71.42` or `chrF2++ = 70.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:.2}", self.name(), self.score)
    }
}

/// Corpus chrF of `hypotheses` against one or more reference streams, equal to
/// sacreBLEU's `sacrebleu.corpus_chrf(hypotheses, references)` with its defaults.
///
/// `references[k][i]` is the `k`-th reference of hypothesis `i`.
///
/// # Errors
///
/// As [`corpus_bleu`](crate::corpus_bleu): mismatched stream lengths, no streams or
/// no hypotheses.
pub fn corpus_chrf<H, R, S>(hypotheses: &[H], references: &[R]) -> Result<ChrfScore, MetricError>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    corpus_chrf_with(hypotheses, references, ChrfParams::default())
}

/// Corpus chrF with explicit settings, equal to
/// `sacrebleu.corpus_chrf(hypotheses, references, char_order, word_order, beta)`.
///
/// # Errors
///
/// As [`corpus_chrf`].
pub fn corpus_chrf_with<H, R, S>(
    hypotheses: &[H],
    references: &[R],
    params: ChrfParams,
) -> Result<ChrfScore, MetricError>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    check_streams(hypotheses.len(), references)?;
    let counted = counted_orders(hypotheses, references, &params);
    let mut totals = vec![0usize; 3 * (counted.char_order + counted.word_order)];
    for (i, hyp) in hypotheses.iter().enumerate() {
        let stats = segment_stats(hyp.as_ref(), segment_refs(references, i), &counted);
        for (total, stat) in totals.iter_mut().zip(stats) {
            *total += stat;
        }
    }
    Ok(ChrfScore {
        score: f_score(&totals, params.beta),
        char_order: params.char_order,
        word_order: params.word_order,
        beta: params.beta,
    })
}

/// `params` with the orders capped at the longest segment, in bytes.
///
/// No segment has n-grams of a higher order (a segment has at most as many characters,
/// and as many words, as bytes; lowercased too, as lowercasing adds no whitespace and its
/// one expansion, `İ` to `i̇`, makes two characters of two bytes), so those orders would
/// only add `[0, 0, 0]` triples,
/// which [`f_score`] skips: the scores are the same, and the statistics grow with the
/// input instead of with the orders asked for.
fn counted_orders<H, R, S>(hypotheses: &[H], references: &[R], params: &ChrfParams) -> ChrfParams
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    let hyp_lens = hypotheses.iter().map(|hyp| hyp.as_ref().len());
    let ref_lens = references.iter().flat_map(|stream| stream.as_ref().iter().map(|r| r.as_ref().len()));
    let longest = hyp_lens.chain(ref_lens).max().unwrap_or(0);
    ChrfParams {
        char_order: params.char_order.min(longest),
        word_order: params.word_order.min(longest),
        ..*params
    }
}

/// sacreBLEU's signature for [`corpus_chrf`] with `nrefs` reference streams.
#[must_use]
pub fn chrf_signature(nrefs: usize) -> String {
    ChrfParams::default().signature(nrefs)
}

/// ASCII punctuation (Python's `string.punctuation`), split off words for chrF++.
fn is_ascii_punct(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// sacreBLEU's `CHRF._remove_punctuation`: whitespace-split words, each with one
/// trailing (else leading) punctuation mark split off.
fn split_words(sentence: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for word in py_split(sentence) {
        let mut chars = word.chars();
        let (first, last) = (chars.next(), chars.next_back());
        match (first, last) {
            (Some(_), Some(l)) if is_ascii_punct(l) => {
                let cut = word.len() - l.len_utf8();
                words.extend([&word[..cut], &word[cut..]]);
            }
            (Some(f), Some(_)) if is_ascii_punct(f) => {
                let cut = f.len_utf8();
                words.extend([&word[..cut], &word[cut..]]);
            }
            _ => words.push(word),
        }
    }
    words
}

/// Counts of the n-grams of order `n` in `items`.
fn count_ngrams<T: Hash + Eq>(items: &[T], n: usize) -> HashMap<&[T], usize> {
    let mut counts = HashMap::new();
    for ngram in items.windows(n) {
        *counts.entry(ngram).or_insert(0) += 1;
    }
    counts
}

/// sacreBLEU's `_get_match_statistics`: `[hyp n-grams (0 when the reference has
/// none), ref n-grams, clipped matches]`.
fn match_stats<K: Hash + Eq>(hyp: &HashMap<K, usize>, reference: &HashMap<K, usize>) -> [usize; 3] {
    let mut hyp_count = 0;
    let mut matches = 0;
    for (ngram, &count) in hyp {
        hyp_count += count;
        if let Some(&ref_count) = reference.get(ngram) {
            matches += min(count, ref_count);
        }
    }
    let ref_count = reference.values().sum();
    let hyp_count = if reference.is_empty() { 0 } else { hyp_count };
    [hyp_count, ref_count, matches]
}

/// The character and word n-gram counts of one sentence, per order.
struct SentenceNgrams<'a> {
    chars: Vec<HashMap<&'a [char], usize>>,
    words: Vec<HashMap<&'a [&'a str], usize>>,
}

impl<'a> SentenceNgrams<'a> {
    fn new(chars: &'a [char], words: &'a [&'a str], params: &ChrfParams) -> Self {
        Self {
            chars: (1..=params.char_order).map(|n| count_ngrams(chars, n)).collect(),
            words: (1..=params.word_order).map(|n| count_ngrams(words, n)).collect(),
        }
    }

    /// The flattened `[hyp, ref, match]` triples of all orders against `reference`.
    fn stats_against(&self, reference: &SentenceNgrams<'_>) -> Vec<usize> {
        let chars = self.chars.iter().zip(&reference.chars);
        let words = self.words.iter().zip(&reference.words);
        chars.map(|(h, r)| match_stats(h, r)).chain(words.map(|(h, r)| match_stats(h, r))).flatten().collect()
    }
}

/// sacreBLEU's `CHRF._preprocess_segment`: the segment, lowercased if asked.
fn preprocess<'s>(segment: &'s str, params: &ChrfParams) -> Cow<'s, str> {
    if params.lowercase {
        Cow::Owned(py_lower(segment))
    } else {
        Cow::Borrowed(segment)
    }
}

/// The statistics of one segment against its best-scoring reference.
fn segment_stats<'r>(
    hypothesis: &str,
    references: impl Iterator<Item = &'r str>,
    params: &ChrfParams,
) -> Vec<usize> {
    let words_needed = params.word_order > 0;
    let hypothesis = preprocess(hypothesis, params);
    let hyp_chars: Vec<char> = remove_py_space(&hypothesis).chars().collect();
    let hyp_words = if words_needed { split_words(&hypothesis) } else { Vec::new() };
    let hyp = SentenceNgrams::new(&hyp_chars, &hyp_words, params);

    let mut best_stats = Vec::new();
    let mut best_f = -1.0;
    for reference in references {
        let reference = preprocess(reference, params);
        let ref_chars: Vec<char> = remove_py_space(&reference).chars().collect();
        let ref_words = if words_needed { split_words(&reference) } else { Vec::new() };
        let stats = hyp.stats_against(&SentenceNgrams::new(&ref_chars, &ref_words, params));
        let f = f_score(&stats, params.beta);
        if f > best_f {
            best_f = f;
            best_stats = stats;
        }
    }
    best_stats
}

/// sacreBLEU's `CHRF._compute_f_score` with `eps_smoothing=False`, on a 0..=100 scale.
fn f_score(stats: &[usize], beta: usize) -> f64 {
    // In floating point, so that no β overflows; exact (as `beta * beta` was) up to 2^26.
    let factor = beta as f64 * beta as f64;
    let mut avg_prec = 0.0;
    let mut avg_rec = 0.0;
    let mut effective_order = 0usize;
    for triple in stats.chunks_exact(3) {
        let (n_hyp, n_ref, n_match) = (triple[0], triple[1], triple[2]);
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        return 0.0;
    }
    avg_prec /= effective_order as f64;
    avg_rec /= effective_order as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    let score = (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
    100.0 * score
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_sentence_matches_sacrebleu() -> Result<(), MetricError> {
        let score = corpus_chrf(&["The cat sat on the mat."], &[["The cat sat on a mat."]])?;
        assert_eq!(score.to_string(), "chrF2 = 71.42");
        Ok(())
    }

    #[test]
    fn lowercase_matches_any_case() -> Result<(), MetricError> {
        // sacreBLEU: CHRF(lowercase=True) gives 100 here
        let params = ChrfParams { lowercase: true, ..ChrfParams::default() };
        let score = corpus_chrf_with(
            &["\u{39f}\u{394}\u{39f}\u{3a3} Cat"],
            &[["\u{3bf}\u{3b4}\u{3bf}\u{3c2} cAT"]],
            params,
        )?;
        assert_eq!(score.score, 100.0);
        Ok(())
    }

    #[test]
    fn word_splitting_follows_sacrebleu() {
        assert_eq!(
            split_words("(hi) \"quoted\" a. ,b x ..."),
            ["(hi", ")", "\"quoted", "\"", "a", ".", ",", "b", "x", "..", "."]
        );
    }

    #[test]
    fn f_score_uses_effective_orders_only() {
        // Order 1: P = 1/2, R = 1/4; order 2 has no hypothesis n-grams: skipped.
        let stats = [2, 4, 1, 0, 3, 0];
        let (p, r) = (0.5, 0.25);
        let expected = 100.0 * (5.0 * p * r / (4.0 * p + r));
        assert_eq!(f_score(&stats, 2), expected);
        assert_eq!(f_score(&[0, 3, 0], 2), 0.0);
        assert_eq!(f_score(&[2, 3, 0], 2), 0.0);
    }

    #[test]
    fn orders_beyond_every_segment_change_nothing() -> Result<(), MetricError> {
        let (hyps, refs) = (["a cat.", "dogs"], [["the cat.", "a dog"]]);
        let capped = corpus_chrf_with(
            &hyps,
            &refs,
            ChrfParams { char_order: 9, word_order: 9, ..ChrfParams::default() },
        )?;
        let huge = ChrfParams { char_order: usize::MAX, word_order: usize::MAX, ..ChrfParams::default() };
        assert_eq!(corpus_chrf_with(&hyps, &refs, huge)?.score, capped.score);
        let wide_beta = ChrfParams { beta: usize::MAX, ..ChrfParams::default() };
        assert!(corpus_chrf_with(&hyps, &refs, wide_beta)?.score.is_finite());
        Ok(())
    }

    #[test]
    fn signatures_and_display() {
        assert_eq!(
            chrf_signature(1),
            format!("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:{SACREBLEU_VERSION}")
        );
        let lowercased = ChrfParams { lowercase: true, ..ChrfParams::chrf_plus_plus() };
        assert_eq!(
            lowercased.signature(2),
            format!("nrefs:2|case:lc|eff:yes|nc:6|nw:2|space:no|version:{SACREBLEU_VERSION}")
        );
        let score = ChrfScore { score: 70.049, char_order: 6, word_order: 2, beta: 2 };
        assert_eq!(score.to_string(), "chrF2++ = 70.05");
        assert_eq!(score.name(), "chrF2++");
    }
}
