//! Corpus-level BLEU (Papineni et al., 2002, <https://aclanthology.org/P02-1040>)
//! with sacreBLEU's default smoothing and any of its tokenizers.
//!
//! Mirrors sacreBLEU 2.6.0's `metrics/bleu.py`
//! (<https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/metrics/bleu.py>):
//! segments are lowercased if asked (Python's `str.lower`), right-stripped and
//! tokenized (`13a` by default, see [`BleuTokenizer`]); n-grams up to order 4 are
//! clipped by the maximum count over all references of the segment; the reference
//! length of a segment is the "closest" one (ties go to the shorter reference);
//! counts are summed over the corpus; zero-match orders get the `exp` smoothing of
//! `mteval-v13a.pl` (Chen & Cherry, 2014, method 3, <https://aclanthology.org/W14-3346>);
//! the brevity penalty is `exp(1 - ref_len / sys_len)` when the system is shorter.

use std::cmp::min;
use std::collections::HashMap;
use std::fmt;

use crate::error::MetricError;
use crate::lowercase::py_lower;
use crate::pystr::{py_rstrip, py_split};
use crate::streams::{check_streams, segment_refs};
use crate::tokenizers::BleuTokenizer;
use crate::SACREBLEU_VERSION;

/// The maximum n-gram order of BLEU (sacreBLEU's `MAX_NGRAM_ORDER`).
pub const BLEU_MAX_NGRAM_ORDER: usize = 4;

const N: usize = BLEU_MAX_NGRAM_ORDER;

/// The settings of BLEU that may differ from sacreBLEU's defaults (`--tokenize` and
/// `--lowercase` of the `sacrebleu` command). Smoothing is always `exp` and the effective
/// order off, as in sacreBLEU's corpus BLEU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BleuParams {
    /// How segments are split into words (sacreBLEU default `13a`).
    pub tokenizer: BleuTokenizer,
    /// Lowercase hypotheses and references first (sacreBLEU default off).
    pub lowercase: bool,
}

impl BleuParams {
    /// sacreBLEU's signature for these settings with `nrefs` reference streams, e.g.
    /// `nrefs:2|case:lc|eff:no|tok:intl|smooth:exp|version:2.6.0`.
    #[must_use]
    pub fn signature(&self, nrefs: usize) -> String {
        let case = if self.lowercase { "lc" } else { "mixed" };
        format!(
            "nrefs:{nrefs}|case:{case}|eff:no|tok:{}|smooth:exp|version:{SACREBLEU_VERSION}",
            self.tokenizer
        )
    }

    /// sacreBLEU's `BLEU._preprocess_segment`: lowercase (if asked), right-strip, tokenize.
    pub(crate) fn preprocess(&self, segment: &str) -> String {
        if self.lowercase {
            self.tokenizer.tokenize(py_rstrip(&py_lower(segment)))
        } else {
            self.tokenizer.tokenize(py_rstrip(segment))
        }
    }
}

/// A corpus BLEU score with its sufficient statistics, as sacreBLEU's `BLEUScore`.
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// BLEU on the 0..=100 scale.
    pub score: f64,
    /// Smoothed n-gram precisions (percent) for n = 1..=4.
    pub precisions: [f64; 4],
    /// Brevity penalty.
    pub bp: f64,
    /// Number of hypothesis tokens in the corpus.
    pub sys_len: usize,
    /// Effective ("closest") reference length of the corpus, in tokens.
    pub ref_len: usize,
    /// Clipped n-gram matches for n = 1..=4.
    pub counts: [usize; 4],
    /// Hypothesis n-grams for n = 1..=4.
    pub totals: [usize; 4],
}

impl BleuScore {
    /// The part of sacreBLEU's report after the score, e.g.
    /// `85.7/66.7/40.0/25.0 (BP = 1.000 ratio = 1.000 hyp_len = 7 ref_len = 7)`.
    #[must_use]
    pub fn verbose(&self) -> String {
        let [p1, p2, p3, p4] = self.precisions;
        format!(
            "{p1:.1}/{p2:.1}/{p3:.1}/{p4:.1} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.bp,
            self.ratio(),
            self.sys_len,
            self.ref_len
        )
    }

    /// `sys_len / ref_len`, or 0 when the reference length is 0 (as sacreBLEU).
    #[must_use]
    pub fn ratio(&self) -> f64 {
        if self.ref_len == 0 {
            0.0
        } else {
            self.sys_len as f64 / self.ref_len as f64
        }
    }
}

impl fmt::Display for BleuScore {
    /// sacreBLEU's `str(score)`, e.g.
    /// `BLEU = 48.89 85.7/66.7/40.0/25.0 (BP = 1.000 ratio = 1.000 hyp_len = 7 ref_len = 7)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BLEU = {:.2} {}", self.score, self.verbose())
    }
}

/// Corpus BLEU of `hypotheses` against one or more reference streams, equal to
/// sacreBLEU's `sacrebleu.corpus_bleu(hypotheses, references)` with its defaults.
///
/// `references[k][i]` is the `k`-th reference of hypothesis `i`, so every stream
/// must be as long as `hypotheses`. Accepts e.g. `&[Vec<String>]` or `&[&[&str]]`.
///
/// # Errors
///
/// [`MetricError::LengthMismatch`] when a stream's length differs from the number of
/// hypotheses, [`MetricError::NoReferences`] without streams and
/// [`MetricError::EmptyCorpus`] without hypotheses.
pub fn corpus_bleu<H, R, S>(hypotheses: &[H], references: &[R]) -> Result<BleuScore, MetricError>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    corpus_bleu_with(hypotheses, references, BleuParams::default())
}

/// Corpus BLEU with explicit settings, equal to
/// `sacrebleu.corpus_bleu(hypotheses, references, tokenize=..., lowercase=...)`.
///
/// ```
/// use locus_metrics::{corpus_bleu_with, BleuParams, BleuTokenizer, MetricError};
///
/// let params = BleuParams { tokenizer: BleuTokenizer::Zh, lowercase: false };
/// let score = corpus_bleu_with(&["我们今天去北京。"], &[["我们明天去北京。"]], params)?;
/// assert_eq!((score.counts, score.totals), ([7, 5, 3, 2], [8, 7, 6, 5]));
/// assert_eq!(params.signature(1), "nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|version:2.6.0");
/// # Ok::<(), MetricError>(())
/// ```
///
/// # Errors
///
/// As [`corpus_bleu`].
pub fn corpus_bleu_with<H, R, S>(
    hypotheses: &[H],
    references: &[R],
    params: BleuParams,
) -> Result<BleuScore, MetricError>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    check_streams(hypotheses.len(), references)?;
    let mut stats = Stats::default();
    for (i, hyp) in hypotheses.iter().enumerate() {
        stats.add(&segment_stats(hyp.as_ref(), segment_refs(references, i), &params));
    }
    Ok(compute_bleu(&stats))
}

/// sacreBLEU's signature for the settings of [`corpus_bleu`] with `nrefs` reference
/// streams, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`.
#[must_use]
pub fn bleu_signature(nrefs: usize) -> String {
    BleuParams::default().signature(nrefs)
}

/// Sufficient statistics of one segment or of a whole corpus.
#[derive(Debug, Default)]
struct Stats {
    sys_len: usize,
    ref_len: usize,
    correct: [usize; N],
    total: [usize; N],
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.sys_len += other.sys_len;
        self.ref_len += other.ref_len;
        for n in 0..N {
            self.correct[n] += other.correct[n];
            self.total[n] += other.total[n];
        }
    }
}

/// Counts of all n-grams of orders 1..=4 (sacreBLEU's `extract_all_word_ngrams`).
fn ngram_counts<'a, 's>(tokens: &'a [&'s str]) -> HashMap<&'a [&'s str], usize> {
    let mut counts = HashMap::new();
    for n in 1..=N {
        for ngram in tokens.windows(n) {
            *counts.entry(ngram).or_insert(0) += 1;
        }
    }
    counts
}

/// The reference length closest to `hyp_len`; the shorter one on ties.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    ref_lens.iter().copied().min_by_key(|&len| (len.abs_diff(hyp_len), len)).unwrap_or(0)
}

/// sacreBLEU's `_extract_reference_info` + `_compute_segment_statistics`.
fn segment_stats<'r>(
    hypothesis: &str,
    references: impl Iterator<Item = &'r str>,
    params: &BleuParams,
) -> Stats {
    let refs: Vec<String> = references.map(|r| params.preprocess(r)).collect();
    let ref_tokens: Vec<Vec<&str>> = refs.iter().map(|r| py_split(r).collect()).collect();

    // Maximum count of every n-gram over the references.
    let mut ref_ngrams: HashMap<&[&str], usize> = HashMap::new();
    for tokens in &ref_tokens {
        for (ngram, count) in ngram_counts(tokens) {
            let best = ref_ngrams.entry(ngram).or_insert(0);
            *best = (*best).max(count);
        }
    }
    let ref_lens: Vec<usize> = ref_tokens.iter().map(Vec::len).collect();

    let hyp = params.preprocess(hypothesis);
    let hyp_tokens: Vec<&str> = py_split(&hyp).collect();
    let mut stats = Stats {
        sys_len: hyp_tokens.len(),
        ref_len: closest_ref_len(hyp_tokens.len(), &ref_lens),
        ..Stats::default()
    };
    for (ngram, count) in ngram_counts(&hyp_tokens) {
        let n = ngram.len() - 1;
        stats.total[n] += count;
        if let Some(&ref_count) = ref_ngrams.get(ngram) {
            stats.correct[n] += min(count, ref_count);
        }
    }
    stats
}

/// sacreBLEU's `my_log`: `ln`, with `ln(0)` floored to -9999999999.
fn floored_ln(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// sacreBLEU's `BLEU.compute_bleu` with `smooth_method="exp"`, `effective_order=False`.
fn compute_bleu(stats: &Stats) -> BleuScore {
    let (sys_len, ref_len) = (stats.sys_len, stats.ref_len);
    let bp = if sys_len >= ref_len {
        1.0
    } else if sys_len > 0 {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        0.0
    };

    let mut score = BleuScore {
        score: 0.0,
        precisions: [0.0; N],
        bp,
        sys_len,
        ref_len,
        counts: stats.correct,
        totals: stats.total,
    };
    // Early stop when nothing matches (sacreBLEU issue #141).
    if stats.correct.iter().all(|&c| c == 0) {
        return score;
    }

    let mut smooth_mteval = 1.0;
    for n in 0..N {
        let (correct, total) = (stats.correct[n], stats.total[n]);
        if total == 0 {
            // Higher orders keep precision 0, which zeroes the score below.
            break;
        }
        score.precisions[n] = if correct == 0 {
            smooth_mteval *= 2.0;
            100.0 / (smooth_mteval * total as f64)
        } else {
            100.0 * correct as f64 / total as f64
        };
    }

    let log_sum = score.precisions.iter().fold(0.0, |acc, &p| acc + floored_ln(p));
    score.score = bp * (log_sum / N as f64).exp();
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_ref_len_prefers_shorter_on_ties() {
        assert_eq!(closest_ref_len(5, &[4, 6]), 4);
        assert_eq!(closest_ref_len(5, &[6, 4]), 4);
        assert_eq!(closest_ref_len(5, &[9, 6, 2]), 6);
        assert_eq!(closest_ref_len(0, &[3, 0]), 0);
    }

    #[test]
    fn simple_sentence_matches_sacrebleu() -> Result<(), MetricError> {
        let score = corpus_bleu(&["The cat sat on the mat."], &[vec!["The cat sat on a mat."]])?;
        assert_eq!(score.counts, [6, 4, 2, 1]);
        assert_eq!(score.totals, [7, 6, 5, 4]);
        assert_eq!(
            score.to_string(),
            "BLEU = 48.89 85.7/66.7/40.0/25.0 (BP = 1.000 ratio = 1.000 hyp_len = 7 ref_len = 7)"
        );
        Ok(())
    }

    #[test]
    fn accepts_borrowed_streams() -> Result<(), MetricError> {
        let hyps = vec!["a b c d".to_string()];
        let stream: &[&str] = &["a b c d"];
        let score = corpus_bleu(&hyps, &[stream])?;
        assert!((score.score - 100.0).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn empty_hypotheses_score_zero() -> Result<(), MetricError> {
        let score = corpus_bleu(&["", ""], &[["a b", "c"]])?;
        assert_eq!(score.score, 0.0);
        assert_eq!(score.bp, 0.0);
        assert_eq!((score.sys_len, score.ref_len), (0, 3));
        Ok(())
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let err = corpus_bleu(&["a", "b"], &[vec!["a", "b"], vec!["a"]]);
        assert_eq!(err, Err(MetricError::LengthMismatch { stream: 1, hypotheses: 2, references: 1 }));
    }

    #[test]
    fn lowercasing_happens_before_tokenizing() -> Result<(), MetricError> {
        // sacreBLEU: BLEU(lowercase=True) gives 100 here, BLEU() 0 unigram matches
        let params = BleuParams { lowercase: true, ..BleuParams::default() };
        let (hyps, refs) = (["\u{130}STANBUL KI\u{15e}"], [["i\u{307}stanbul ki\u{15f}"]]);
        assert_eq!(corpus_bleu_with(&hyps, &refs, params)?.counts[0], 2);
        assert_eq!(corpus_bleu(&hyps, &refs)?.counts[0], 0);
        Ok(())
    }

    #[test]
    fn signature_has_sacrebleu_format() {
        assert_eq!(
            bleu_signature(2),
            format!("nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:{SACREBLEU_VERSION}")
        );
        let params = BleuParams { tokenizer: BleuTokenizer::Intl, lowercase: true };
        assert_eq!(
            params.signature(2),
            format!("nrefs:2|case:lc|eff:no|tok:intl|smooth:exp|version:{SACREBLEU_VERSION}")
        );
    }
}
