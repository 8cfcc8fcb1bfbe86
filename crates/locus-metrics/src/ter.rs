//! Corpus-level TER, translation edit rate (Snover et al., 2006,
//! <https://aclanthology.org/2006.amta-papers.25>), with sacreBLEU's default settings
//! or case-sensitive.
//!
//! Mirrors sacreBLEU 2.6.0's `metrics/ter.py`, `metrics/lib_ter.py` and
//! `tokenizers/tokenizer_ter.py`
//! (<https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/metrics/ter.py>), i.e.
//! `TER()` with `normalized=False`, `no_punct=False`, `asian_support=False` and
//! `case_sensitive` either way (sacreBLEU's default is `False`):
//!
//! * segments are right-stripped, lowercased (Python's `str.lower`) unless TER is
//!   case-sensitive, and split on whitespace; punctuation stays attached to its word;
//! * a segment costs the fewest edits over its references, where an edit is an
//!   insertion, deletion or substitution of a word or a shift of a phrase, found by
//!   tercom's greedy, beam-limited search (see `ter/shift_edit.rs`); its length is
//!   the *average* length of its references, empty ones counting as 0;
//! * an empty reference costs one edit per hypothesis word;
//! * TER is `100 * total edits / total length`; when the total length is 0 it is 100
//!   if there are edits and 0 otherwise. TER can exceed 100.

mod shift_edit;

use std::collections::HashMap;
use std::fmt;

use self::shift_edit::translation_edit_rate;
use crate::error::MetricError;
use crate::lowercase::py_lower;
use crate::pystr::{py_rstrip, py_split};
use crate::streams::{check_streams, segment_refs};
use crate::SACREBLEU_VERSION;

/// The settings of TER that may differ from sacreBLEU's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TerParams {
    /// Compare words as they are instead of lowercased (sacreBLEU default off; the
    /// `sacrebleu` command's `--ter-case-sensitive`).
    pub case_sensitive: bool,
}

impl TerParams {
    /// sacreBLEU's signature for these settings with `nrefs` reference streams, e.g.
    /// `nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0`.
    #[must_use]
    pub fn signature(&self, nrefs: usize) -> String {
        let case = if self.case_sensitive { "mixed" } else { "lc" };
        format!("nrefs:{nrefs}|case:{case}|tok:tercom|norm:no|punct:yes|asian:no|version:{SACREBLEU_VERSION}")
    }
}

/// A corpus TER score with its statistics, as sacreBLEU's `TERScore`.
#[derive(Debug, Clone, PartialEq)]
pub struct TerScore {
    /// TER in percent: 0 for a perfect match, possibly above 100.
    pub score: f64,
    /// Edits summed over the segments, each with its cheapest reference.
    pub num_edits: usize,
    /// Average reference length (in words) summed over the segments.
    pub ref_length: f64,
}

impl fmt::Display for TerScore {
    /// sacreBLEU's `str(score)`, e.g. `TER = 25.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TER = {:.2}", self.score)
    }
}

/// Corpus TER of `hypotheses` against one or more reference streams, equal to
/// sacreBLEU's `sacrebleu.corpus_ter(hypotheses, references)` with its defaults.
///
/// `references[k][i]` is the `k`-th reference of hypothesis `i`.
///
/// ```
/// use locus_metrics::{corpus_ter, MetricError};
///
/// // one shifted phrase ("on the mat") and one substitution (dog/cat): 2 edits, 6 words
/// let score = corpus_ter(&["On the mat the dog sat"], &[["The cat sat on the mat"]])?;
/// assert_eq!((score.num_edits, score.ref_length), (2, 6.0));
/// assert_eq!(score.to_string(), "TER = 33.33");
/// # Ok::<(), MetricError>(())
/// ```
///
/// # Errors
///
/// As [`corpus_bleu`](crate::corpus_bleu): mismatched stream lengths, no streams or
/// no hypotheses.
pub fn corpus_ter<H, R, S>(hypotheses: &[H], references: &[R]) -> Result<TerScore, MetricError>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    corpus_ter_with(hypotheses, references, TerParams::default())
}

/// Corpus TER with explicit settings, equal to
/// `sacrebleu.corpus_ter(hypotheses, references, case_sensitive=...)`.
///
/// # Errors
///
/// As [`corpus_ter`].
pub fn corpus_ter_with<H, R, S>(
    hypotheses: &[H],
    references: &[R],
    params: TerParams,
) -> Result<TerScore, MetricError>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    check_streams(hypotheses.len(), references)?;
    let mut num_edits = 0;
    let mut ref_length = 0.0;
    for (i, hyp) in hypotheses.iter().enumerate() {
        let (edits, length) = segment_stats(hyp.as_ref(), segment_refs(references, i), params);
        num_edits += edits;
        ref_length += length;
    }
    let rate = if ref_length > 0.0 {
        num_edits as f64 / ref_length
    } else if num_edits > 0 {
        1.0 // empty references, non-empty hypotheses
    } else {
        0.0
    };
    Ok(TerScore { score: 100.0 * rate, num_edits, ref_length })
}

/// sacreBLEU's signature for [`corpus_ter`] with `nrefs` reference streams, e.g.
/// `nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0`.
#[must_use]
pub fn ter_signature(nrefs: usize) -> String {
    TerParams::default().signature(nrefs)
}

/// The words of `segment` after sacreBLEU's TER preprocessing (`rstrip`, then the
/// `tercom` tokenizer: lowercase unless case-sensitive, split on whitespace), as ids
/// from `vocab`.
///
/// sacreBLEU preprocesses references twice; lowercasing and splitting are idempotent,
/// so once is enough.
fn word_ids(segment: &str, vocab: &mut HashMap<String, usize>, params: TerParams) -> Vec<usize> {
    let segment = py_rstrip(segment);
    let lowered;
    let words = if params.case_sensitive {
        segment
    } else {
        lowered = py_lower(segment);
        &lowered
    };
    py_split(words)
        .map(|word| {
            let next = vocab.len();
            *vocab.entry(word.to_owned()).or_insert(next)
        })
        .collect()
}

/// sacreBLEU's `TER._compute_segment_statistics`: the fewest edits over the
/// references and their average length.
fn segment_stats<'r>(
    hypothesis: &str,
    references: impl Iterator<Item = &'r str>,
    params: TerParams,
) -> (usize, f64) {
    let mut vocab = HashMap::new();
    let hyp = word_ids(hypothesis, &mut vocab, params);
    let mut best_edits = usize::MAX;
    let (mut total_length, mut nrefs) = (0usize, 0usize);
    for reference in references {
        let words = word_ids(reference, &mut vocab, params);
        best_edits = best_edits.min(translation_edit_rate(&hyp, &words));
        total_length += words.len();
        nrefs += 1;
    }
    (best_edits, total_length as f64 / nrefs as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ter(hyp: &str, reference: &str) -> TerScore {
        corpus_ter(&[hyp], &[[reference]]).expect("one segment, one reference")
    }

    #[test]
    fn one_substitution_in_four_words_is_25() {
        let score = ter("a b x d", "a b c d");
        assert_eq!(score, TerScore { score: 25.0, num_edits: 1, ref_length: 4.0 });
        assert_eq!(score.to_string(), "TER = 25.00");
    }

    #[test]
    fn a_shifted_phrase_is_one_edit() {
        // Values from sacreBLEU: TER().corpus_score(hyps, refs).num_edits
        assert_eq!(ter("c d a b", "a b c d").num_edits, 1);
        assert_eq!(ter("the cat sat on the mat today", "today the cat sat on the mat").num_edits, 1);
        assert_eq!(ter("d e f a b c g h", "a b c d e f g h").num_edits, 1);
        // a shift and a substitution (sacreBLEU: TER = 28.57)
        assert_eq!(ter("the dog sat on the mat today", "today the cat sat on the mat").num_edits, 2);
        // greedy search: tercom finds no improving shift for the first of two swaps
        assert_eq!(ter("e f c d a b", "a b c d e f").num_edits, 4);
    }

    #[test]
    fn case_is_ignored_and_punctuation_is_kept() {
        assert_eq!(ter("THE Cat sat.", "the cat sat.").num_edits, 0);
        assert_eq!(ter("the cat sat .", "the cat sat.").num_edits, 2);
    }

    #[test]
    fn case_sensitive_counts_case_changes() -> Result<(), MetricError> {
        // sacreBLEU: TER(case_sensitive=True) gives 2 edits, TER() none
        let params = TerParams { case_sensitive: true };
        let score = corpus_ter_with(&["THE Cat sat."], &[["the cat sat."]], params)?;
        assert_eq!(score.num_edits, 2);
        assert_eq!(
            params.signature(1),
            format!("nrefs:1|case:mixed|tok:tercom|norm:no|punct:yes|asian:no|version:{SACREBLEU_VERSION}")
        );
        Ok(())
    }

    #[test]
    fn empty_segments_follow_sacrebleu() {
        // empty hypothesis: one insertion per reference word
        assert_eq!(ter("", "a b c"), TerScore { score: 100.0, num_edits: 3, ref_length: 3.0 });
        // empty reference: one edit per hypothesis word, TER capped to 100
        assert_eq!(ter("a b", ""), TerScore { score: 100.0, num_edits: 2, ref_length: 0.0 });
        assert_eq!(ter("  ", ""), TerScore { score: 0.0, num_edits: 0, ref_length: 0.0 });
        // the corpus length still counts segments with empty references as 0
        let score = corpus_ter(&["a b", "c"], &[["", "c d"]]).expect("scores");
        assert_eq!(score, TerScore { score: 150.0, num_edits: 3, ref_length: 2.0 });
    }

    #[test]
    fn multiple_references_take_fewest_edits_and_mean_length() -> Result<(), MetricError> {
        // sacreBLEU: TER = 0.00, num_edits 0, ref_length 4.0
        let refs = [vec!["a b c d", "x y"], vec!["a b", ""]];
        let score = corpus_ter(&["a b c d", ""], &refs)?;
        assert_eq!(score, TerScore { score: 0.0, num_edits: 0, ref_length: 4.0 });
        // the closer reference wins; its length does not
        let score = corpus_ter(&["a b c"], &[["a b c d e f"], ["a b"]])?;
        assert_eq!((score.num_edits, score.ref_length), (1, 4.0));
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors() {
        let err = corpus_ter(&["a", "b"], &[vec!["a", "b"], vec!["a"]]);
        assert_eq!(err, Err(MetricError::LengthMismatch { stream: 1, hypotheses: 2, references: 1 }));
        let none: [Vec<&str>; 0] = [];
        assert_eq!(corpus_ter(&["a"], &none), Err(MetricError::NoReferences));
        let empty: [&str; 0] = [];
        assert_eq!(corpus_ter(&empty, &[empty]), Err(MetricError::EmptyCorpus));
    }

    #[test]
    fn signature_has_sacrebleu_format() {
        assert_eq!(
            ter_signature(2),
            format!("nrefs:2|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:{SACREBLEU_VERSION}")
        );
    }
}
