//! Length filtering of tokenized training pairs.
//!
//! Lengths are counted in subword tokens without specials. A pair is kept
//! when both sides have between `min_len` and `max_len` tokens and the longer
//! side is at most `max_ratio` times the shorter one. Dropped pairs are
//! counted once each, under the first rule they break in the order
//! too short, too long, bad length ratio.

use std::fmt;

use crate::batching::TokenizedPair;

/// Which pairs to keep; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LengthFilter {
    /// Minimum length of each side, inclusive.
    pub min_len: usize,
    /// Maximum length of each side, inclusive.
    pub max_len: usize,
    /// Maximum `max(src, tgt) / max(min(src, tgt), 1)`, inclusive.
    pub max_ratio: f64,
}

/// What a [`LengthFilter`] decides for one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthVerdict {
    /// Both sides pass every rule.
    Keep,
    /// A side has fewer than `min_len` tokens.
    TooShort,
    /// A side has more than `max_len` tokens (and neither is too short).
    TooLong,
    /// The length ratio exceeds `max_ratio` (and the lengths are in range).
    BadRatio,
}

impl LengthFilter {
    /// Judges a pair by its source and target lengths.
    pub fn judge(&self, src_len: usize, tgt_len: usize) -> LengthVerdict {
        let (short, long) = (src_len.min(tgt_len), src_len.max(tgt_len));
        if short < self.min_len {
            LengthVerdict::TooShort
        } else if long > self.max_len {
            LengthVerdict::TooLong
        } else if long as f64 / short.max(1) as f64 > self.max_ratio {
            LengthVerdict::BadRatio
        } else {
            LengthVerdict::Keep
        }
    }
}

/// How many pairs a [`LengthFilter`] kept, and why it dropped the others.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FilterReport {
    /// Pairs kept.
    pub kept: usize,
    /// Pairs dropped because a side was shorter than `min_len`.
    pub too_short: usize,
    /// Pairs dropped because a side was longer than `max_len`.
    pub too_long: usize,
    /// Pairs dropped because the length ratio exceeded `max_ratio`.
    pub bad_ratio: usize,
    /// The filter's `max_ratio`, for the report's wording.
    pub max_ratio: f64,
}

impl FilterReport {
    /// Pairs dropped for any reason.
    pub fn dropped(&self) -> usize {
        self.too_short + self.too_long + self.bad_ratio
    }

    /// Pairs examined: kept plus dropped.
    pub fn total(&self) -> usize {
        self.kept + self.dropped()
    }

    /// Counts one verdict.
    fn record(&mut self, verdict: LengthVerdict) {
        match verdict {
            LengthVerdict::Keep => self.kept += 1,
            LengthVerdict::TooShort => self.too_short += 1,
            LengthVerdict::TooLong => self.too_long += 1,
            LengthVerdict::BadRatio => self.bad_ratio += 1,
        }
    }
}

impl fmt::Display for FilterReport {
    /// E.g. `kept 28,950 of 29,000 pairs (dropped 50: 0 too short, 48 too
    /// long, 2 length ratio > 3)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kept {} of {} pairs (dropped {}: {} too short, {} too long, {} length ratio > {})",
            thousands(self.kept),
            thousands(self.total()),
            thousands(self.dropped()),
            thousands(self.too_short),
            thousands(self.too_long),
            thousands(self.bad_ratio),
            self.max_ratio
        )
    }
}

/// Formats `n` with commas between groups of three digits.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keeps the pairs `filter` accepts, in their original order, and reports
/// what it dropped.
pub fn filter_pairs(pairs: Vec<TokenizedPair>, filter: &LengthFilter) -> (Vec<TokenizedPair>, FilterReport) {
    let mut report = FilterReport { max_ratio: filter.max_ratio, ..FilterReport::default() };
    let kept = pairs
        .into_iter()
        .filter(|pair| {
            let verdict = filter.judge(pair.src.len(), pair.tgt.len());
            report.record(verdict);
            verdict == LengthVerdict::Keep
        })
        .collect();
    (kept, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILTER: LengthFilter = LengthFilter { min_len: 2, max_len: 10, max_ratio: 3.0 };

    fn pair(src_len: usize, tgt_len: usize) -> TokenizedPair {
        TokenizedPair { src: vec![7; src_len], tgt: vec![9; tgt_len] }
    }

    #[test]
    fn verdicts_at_the_boundaries() {
        assert_eq!(FILTER.judge(2, 2), LengthVerdict::Keep);
        assert_eq!(FILTER.judge(10, 10), LengthVerdict::Keep);
        assert_eq!(FILTER.judge(1, 2), LengthVerdict::TooShort);
        assert_eq!(FILTER.judge(11, 10), LengthVerdict::TooLong);
        assert_eq!(FILTER.judge(3, 9), LengthVerdict::Keep); // ratio exactly 3
        assert_eq!(FILTER.judge(3, 10), LengthVerdict::BadRatio); // 3.33
        assert_eq!(FILTER.judge(10, 3), LengthVerdict::BadRatio);
    }

    #[test]
    fn precedence_counts_each_pair_once() {
        // Too short and too long at once counts as too short.
        assert_eq!(FILTER.judge(1, 50), LengthVerdict::TooShort);
        // Too long with a bad ratio counts as too long.
        assert_eq!(FILTER.judge(2, 50), LengthVerdict::TooLong);
    }

    #[test]
    fn ratio_treats_zero_length_as_one() {
        let lenient = LengthFilter { min_len: 0, max_len: 10, max_ratio: 3.0 };
        assert_eq!(lenient.judge(0, 3), LengthVerdict::Keep);
        assert_eq!(lenient.judge(0, 4), LengthVerdict::BadRatio);
    }

    #[test]
    fn filter_pairs_keeps_order_and_counts() {
        let pairs = vec![
            pair(4, 5),  // keep
            pair(1, 3),  // too short
            pair(12, 9), // too long
            pair(2, 8),  // ratio 4
            pair(6, 6),  // keep
            pair(0, 0),  // too short
        ];
        let (kept, report) = filter_pairs(pairs, &FILTER);
        assert_eq!(kept, vec![pair(4, 5), pair(6, 6)]);
        assert_eq!((report.kept, report.too_short, report.too_long, report.bad_ratio), (2, 2, 1, 1));
        assert_eq!(report.dropped(), 4);
        assert_eq!(report.total(), 6);
    }

    #[test]
    fn display_matches_the_documented_wording() {
        let report = FilterReport { kept: 28_950, too_short: 0, too_long: 48, bad_ratio: 2, max_ratio: 3.0 };
        assert_eq!(
            report.to_string(),
            "kept 28,950 of 29,000 pairs (dropped 50: 0 too short, 48 too long, 2 length ratio > 3)"
        );
        let report = FilterReport { max_ratio: 1.5, ..report };
        assert!(report.to_string().ends_with("length ratio > 1.5)"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
