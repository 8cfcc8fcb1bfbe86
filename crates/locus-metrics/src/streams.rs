//! Checks the shape of a hypothesis list and its reference streams before scoring.
//!
//! Like sacreBLEU's `corpus_score(hypotheses, references)`
//! (<https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/metrics/base.py>),
//! the references arrive as streams: stream `k` holds the `k`-th reference of
//! every segment.

use crate::error::MetricError;

/// Returns `Ok(())` when there is at least one hypothesis and one reference
/// stream, and every stream has one reference per hypothesis.
pub(crate) fn check_streams<R, S>(hypotheses: usize, references: &[R]) -> Result<(), MetricError>
where
    R: AsRef<[S]>,
{
    if hypotheses == 0 {
        return Err(MetricError::EmptyCorpus);
    }
    if references.is_empty() {
        return Err(MetricError::NoReferences);
    }
    for (stream, refs) in references.iter().enumerate() {
        let len = refs.as_ref().len();
        if len != hypotheses {
            return Err(MetricError::LengthMismatch { stream, hypotheses, references: len });
        }
    }
    Ok(())
}

/// The references of segment `segment`, one per stream, in stream order.
///
/// Callers pass streams that [`check_streams`] accepted and a `segment` below its
/// hypothesis count, so the indexing below stays in bounds.
pub(crate) fn segment_refs<'a, R, S>(
    references: &'a [R],
    segment: usize,
) -> impl Iterator<Item = &'a str> + 'a
where
    R: AsRef<[S]>,
    S: AsRef<str> + 'a,
{
    references.iter().map(move |stream| stream.as_ref()[segment].as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        let one = [vec!["a"]];
        let none: [Vec<&str>; 0] = [];
        assert_eq!(check_streams(0, &one), Err(MetricError::EmptyCorpus));
        assert_eq!(check_streams(1, &none), Err(MetricError::NoReferences));
        assert_eq!(
            check_streams(1, &[vec!["a"], vec!["a", "b"]]),
            Err(MetricError::LengthMismatch { stream: 1, hypotheses: 1, references: 2 })
        );
        assert_eq!(check_streams(1, &one), Ok(()));
    }

    #[test]
    fn transposes_streams() {
        let refs = [vec!["a0", "a1"], vec!["b0", "b1"]];
        assert_eq!(segment_refs(&refs, 1).collect::<Vec<_>>(), ["a1", "b1"]);
    }
}
