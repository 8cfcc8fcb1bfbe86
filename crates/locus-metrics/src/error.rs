//! The error type of the corpus metrics: malformed hypothesis / reference input, or an
//! unknown setting.
//!
//! sacreBLEU (<https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/metrics/base.py>)
//! silently truncates to the shortest stream when the lengths disagree; here a
//! mismatch is an error instead.

/// Why a corpus metric could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// A reference stream does not hold exactly one reference per hypothesis.
    #[error("reference stream {stream} has {references} lines but there are {hypotheses} hypotheses")]
    LengthMismatch {
        /// Zero-based index of the offending reference stream.
        stream: usize,
        /// Number of hypotheses.
        hypotheses: usize,
        /// Number of references in that stream.
        references: usize,
    },
    /// No reference stream was given.
    #[error("no reference stream was given")]
    NoReferences,
    /// There are no hypotheses (sacreBLEU rejects an empty corpus as well).
    #[error("the corpus has no hypotheses")]
    EmptyCorpus,
    /// A BLEU tokenizer name that is not one of [`BleuTokenizer::ALL`](crate::BleuTokenizer::ALL).
    #[error("unknown BLEU tokenizer {name:?} (expected one of: none, zh, 13a, intl, char)")]
    UnknownTokenizer {
        /// The name given.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_both_counts() {
        let err = MetricError::LengthMismatch { stream: 1, hypotheses: 10, references: 9 };
        assert_eq!(err.to_string(), "reference stream 1 has 9 lines but there are 10 hypotheses");
    }

    #[test]
    fn is_a_std_error() {
        let err: Box<dyn std::error::Error> = Box::new(MetricError::NoReferences);
        assert_eq!(err.to_string(), "no reference stream was given");
    }
}
