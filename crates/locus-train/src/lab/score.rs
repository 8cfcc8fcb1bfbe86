//! How well a model did on one test bucket: exact match and per-token accuracy.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The scores of one test bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketScore {
    /// Number of test examples.
    pub examples: usize,
    /// Share of outputs equal to their reference, token for token.
    pub exact_match: f64,
    /// Share of positions right: per example, the positions where output and reference agree,
    /// over the longer of the two (so missing and extra tokens both cost), averaged.
    pub token_accuracy: f64,
}

/// Scores `outputs` against `references`, line by line; tokens are separated by whitespace.
///
/// # Errors
/// [`TrainError::Mismatch`] if the two lists differ in length.
pub fn score(outputs: &[String], references: &[String]) -> Result<BucketScore> {
    TrainError::check_same_len(
        "scoring a lab bucket",
        ("references", references.len()),
        ("outputs", outputs.len()),
    )?;
    let (mut exact, mut token_sum) = (0usize, 0.0);
    for (output, reference) in outputs.iter().zip(references) {
        let (output, reference): (Vec<&str>, Vec<&str>) =
            (output.split_whitespace().collect(), reference.split_whitespace().collect());
        exact += usize::from(output == reference);
        let right = output.iter().zip(&reference).filter(|(o, r)| o == r).count();
        let longer = output.len().max(reference.len());
        token_sum += if longer == 0 { 1.0 } else { right as f64 / longer as f64 };
    }
    let n = references.len();
    let share = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
    Ok(BucketScore { examples: n, exact_match: share(exact as f64), token_accuracy: share(token_sum) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Four examples: one exact (1), one with the last token wrong (2/3), one a token short
    /// (2/3: the missing token costs), one with an extra token (3/4).
    #[test]
    fn hand_computed_scores() {
        let references = lines(&["a b c", "a b c", "a b c", "a b c"]);
        let outputs = lines(&["a b c", "a b d", "a b", "a b c c"]);
        let got = score(&outputs, &references).unwrap();
        assert_eq!(got.examples, 4);
        assert!((got.exact_match - 0.25).abs() < 1e-12);
        let want = (1.0 + 2.0 / 3.0 + 2.0 / 3.0 + 3.0 / 4.0) / 4.0;
        assert!((got.token_accuracy - want).abs() < 1e-12, "{} vs {want}", got.token_accuracy);
    }

    #[test]
    fn a_shifted_output_gets_no_positions_right() {
        let got = score(&lines(&["x a b c"]), &lines(&["a b c"])).unwrap();
        assert_eq!((got.exact_match, got.token_accuracy), (0.0, 0.0));
    }

    #[test]
    fn lists_of_different_lengths_are_an_error() {
        let err = score(&lines(&["a"]), &lines(&["a", "b"])).unwrap_err().to_string();
        assert_eq!(err, "scoring a lab bucket: 2 references but 1 outputs");
    }
}
