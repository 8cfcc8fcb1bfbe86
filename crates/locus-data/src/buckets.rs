//! Length buckets: an ordered list of disjoint, inclusive ranges of sentence lengths, for
//! scoring a model separately on short and long inputs (e.g. to see how a positional encoding
//! extrapolates past the lengths it was trained on).
//!
//! Buckets are written as comma-separated ranges, `MIN-MAX` or, for the last one only in
//! practice, open-ended `MIN-` (also accepted as `MIN+`):
//!
//! ```
//! use locus_data::LengthBuckets;
//!
//! let buckets: LengthBuckets = "1-10,11-20,21-40,41-".parse().unwrap();
//! assert_eq!(buckets.bucket_of(10), Some(0));
//! assert_eq!(buckets.bucket_of(11), Some(1));
//! assert_eq!(buckets.bucket_of(500), Some(3));
//! assert_eq!(buckets.bucket_of(0), None);
//! let labels: Vec<String> = buckets.iter().map(ToString::to_string).collect();
//! assert_eq!(labels, ["1-10", "11-20", "21-40", "41+"]);
//! assert_eq!(buckets.to_string(), "1-10,11-20,21-40,41-");
//! ```
//!
//! Gaps between buckets are allowed; a length in a gap belongs to no bucket. Serde reads and
//! writes the buckets as that same string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One inclusive range of lengths; `max: None` has no upper end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthBucket {
    /// The shortest length in the bucket.
    pub min: usize,
    /// The longest length in the bucket, or `None` for no limit.
    pub max: Option<usize>,
}

impl LengthBucket {
    /// Whether `len` lies in the bucket.
    pub fn contains(&self, len: usize) -> bool {
        len >= self.min && self.max.is_none_or(|max| len <= max)
    }

    /// Whether the two buckets share a length.
    fn overlaps(&self, other: &LengthBucket) -> bool {
        let below = |a: &LengthBucket, b: &LengthBucket| a.max.is_some_and(|max| max < b.min);
        !below(self, other) && !below(other, self)
    }

    /// The bucket as written in a bucket list: `1-10`, or `41-` when open-ended.
    fn spec(&self) -> String {
        match self.max {
            Some(max) => format!("{}-{max}", self.min),
            None => format!("{}-", self.min),
        }
    }
}

impl fmt::Display for LengthBucket {
    /// The bucket's label: `1-10`, or `41+` when open-ended.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(max) => write!(f, "{}-{max}", self.min),
            None => write!(f, "{}+", self.min),
        }
    }
}

/// Why a bucket list could not be parsed; every message quotes the offending piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketsError {
    /// The list holds no bucket at all.
    #[error("length buckets: the list is empty (expected e.g. \"1-10,11-20,21-\")")]
    Empty,
    /// A piece between commas is empty.
    #[error("length buckets: bucket {position} is empty (two commas in a row, or a trailing comma?)")]
    EmptyPiece {
        /// 1-based position of the piece in the list.
        position: usize,
    },
    /// A piece is not of the form `MIN-MAX` or `MIN-`.
    #[error("length buckets: {piece:?} is not MIN-MAX or MIN- (e.g. \"1-10\" or \"41-\")")]
    Malformed {
        /// The piece as written.
        piece: String,
    },
    /// A bound is not a whole number.
    #[error("length buckets: in {piece:?}, {number:?} is not a whole number")]
    BadNumber {
        /// The piece as written.
        piece: String,
        /// The text that should have been a number.
        number: String,
    },
    /// A bucket's lower bound exceeds its upper bound.
    #[error("length buckets: in {piece:?}, the minimum {min} exceeds the maximum {max}")]
    MinAboveMax {
        /// The piece as written.
        piece: String,
        /// Its lower bound.
        min: usize,
        /// Its upper bound.
        max: usize,
    },
    /// Two buckets share a length.
    #[error("length buckets: {piece:?} overlaps {earlier:?}")]
    Overlap {
        /// The later of the two pieces.
        piece: String,
        /// The earlier piece it overlaps.
        earlier: String,
    },
    /// A bucket starts below an earlier one (buckets must be listed shortest first).
    #[error("length buckets: {piece:?} comes after {earlier:?} but starts below it; list them in order")]
    OutOfOrder {
        /// The later of the two pieces.
        piece: String,
        /// The earlier piece.
        earlier: String,
    },
}

/// Parses one bound of `piece`.
fn parse_bound(piece: &str, number: &str) -> Result<usize, BucketsError> {
    number
        .trim()
        .parse()
        .map_err(|_| BucketsError::BadNumber { piece: piece.to_string(), number: number.trim().to_string() })
}

/// Parses one trimmed, non-empty piece: `MIN-MAX`, `MIN-` or `MIN+`.
fn parse_bucket(piece: &str) -> Result<LengthBucket, BucketsError> {
    if let Some(min) = piece.strip_suffix('+') {
        return Ok(LengthBucket { min: parse_bound(piece, min)?, max: None });
    }
    let Some((min, max)) = piece.split_once('-') else {
        return Err(BucketsError::Malformed { piece: piece.to_string() });
    };
    let min = parse_bound(piece, min)?;
    if max.trim().is_empty() {
        return Ok(LengthBucket { min, max: None });
    }
    let max = parse_bound(piece, max)?;
    if min > max {
        return Err(BucketsError::MinAboveMax { piece: piece.to_string(), min, max });
    }
    Ok(LengthBucket { min, max: Some(max) })
}

/// An ordered list of disjoint length buckets; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthBuckets {
    buckets: Vec<LengthBucket>,
}

impl LengthBuckets {
    /// The index of the bucket holding `len`, or `None` when no bucket does.
    pub fn bucket_of(&self, len: usize) -> Option<usize> {
        self.buckets.iter().position(|bucket| bucket.contains(len))
    }

    /// The buckets, shortest first.
    pub fn iter(&self) -> std::slice::Iter<'_, LengthBucket> {
        self.buckets.iter()
    }

    /// Checks that `bucket` (written `piece`) follows every bucket so far without overlap.
    fn check_next(&self, bucket: &LengthBucket, piece: &str) -> Result<(), BucketsError> {
        for earlier in &self.buckets {
            let (piece, earlier_piece) = (piece.to_string(), earlier.spec());
            if bucket.overlaps(earlier) {
                return Err(BucketsError::Overlap { piece, earlier: earlier_piece });
            }
            if bucket.min < earlier.min {
                return Err(BucketsError::OutOfOrder { piece, earlier: earlier_piece });
            }
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a LengthBuckets {
    type Item = &'a LengthBucket;
    type IntoIter = std::slice::Iter<'a, LengthBucket>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl FromStr for LengthBuckets {
    type Err = BucketsError;

    /// Parses `"1-10,11-20,21-40,41-"`; spaces around pieces and bounds are ignored.
    fn from_str(text: &str) -> Result<Self, BucketsError> {
        if text.trim().is_empty() {
            return Err(BucketsError::Empty);
        }
        let mut buckets = LengthBuckets { buckets: Vec::new() };
        for (index, piece) in text.split(',').enumerate() {
            let piece = piece.trim();
            if piece.is_empty() {
                return Err(BucketsError::EmptyPiece { position: index + 1 });
            }
            let bucket = parse_bucket(piece)?;
            buckets.check_next(&bucket, piece)?;
            buckets.buckets.push(bucket);
        }
        Ok(buckets)
    }
}

impl fmt::Display for LengthBuckets {
    /// The list as it is parsed: `1-10,11-20,21-40,41-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pieces: Vec<String> = self.buckets.iter().map(LengthBucket::spec).collect();
        f.write_str(&pieces.join(","))
    }
}

impl Serialize for LengthBuckets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LengthBuckets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LengthBuckets, BucketsError> {
        text.parse()
    }

    fn bucket(min: usize, max: Option<usize>) -> LengthBucket {
        LengthBucket { min, max }
    }

    #[test]
    fn parses_closed_and_open_ranges() {
        let buckets = parse("1-10,11-20,21-40,41-").unwrap();
        let want = [bucket(1, Some(10)), bucket(11, Some(20)), bucket(21, Some(40)), bucket(41, None)];
        assert_eq!(buckets.iter().copied().collect::<Vec<_>>(), want);
        // Spaces are ignored, `MIN+` means `MIN-`, and one-length buckets are fine.
        assert_eq!(parse(" 1 - 10 , 11-20,21-40, 41+ ").unwrap(), buckets);
        assert_eq!(parse("5-5").unwrap().iter().next(), Some(&bucket(5, Some(5))));
    }

    #[test]
    fn bucket_of_at_the_boundaries() {
        let buckets = parse("1-10,11-20,21-40,41-").unwrap();
        assert_eq!(buckets.bucket_of(1), Some(0));
        assert_eq!(buckets.bucket_of(10), Some(0));
        assert_eq!(buckets.bucket_of(11), Some(1));
        assert_eq!(buckets.bucket_of(20), Some(1));
        assert_eq!(buckets.bucket_of(21), Some(2));
        assert_eq!(buckets.bucket_of(40), Some(2));
        assert_eq!(buckets.bucket_of(41), Some(3));
        assert_eq!(buckets.bucket_of(usize::MAX), Some(3));
    }

    #[test]
    fn lengths_outside_every_bucket_have_none() {
        let buckets = parse("1-10,21-30").unwrap();
        assert_eq!(buckets.bucket_of(0), None); // below the first
        assert_eq!(buckets.bucket_of(15), None); // in the gap
        assert_eq!(buckets.bucket_of(31), None); // above the last, which is closed
        assert_eq!(buckets.bucket_of(21), Some(1));
    }

    #[test]
    fn labels_and_round_trip_text() {
        let buckets = parse("1-10,11-20,41+").unwrap();
        let labels: Vec<String> = buckets.iter().map(ToString::to_string).collect();
        assert_eq!(labels, ["1-10", "11-20", "41+"]);
        assert_eq!(buckets.to_string(), "1-10,11-20,41-");
        assert_eq!(parse(&buckets.to_string()).unwrap(), buckets);
    }

    #[test]
    fn serde_uses_the_list_text() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Holder {
            buckets: LengthBuckets,
        }
        let holder: Holder = toml::from_str("buckets = \"1-10, 11-\"").unwrap();
        assert_eq!(holder.buckets, parse("1-10,11-").unwrap());
        assert_eq!(toml::to_string(&holder).unwrap(), "buckets = \"1-10,11-\"\n");
        let err = toml::from_str::<Holder>("buckets = \"10-1\"").unwrap_err();
        assert!(err.to_string().contains("the minimum 10 exceeds the maximum 1"), "{err}");
    }

    #[test]
    fn every_error_names_the_offending_piece() {
        assert_eq!(parse(""), Err(BucketsError::Empty));
        assert_eq!(parse("  "), Err(BucketsError::Empty));
        assert_eq!(parse("1-10,,21-30"), Err(BucketsError::EmptyPiece { position: 2 }));
        assert_eq!(parse("1-10,"), Err(BucketsError::EmptyPiece { position: 2 }));
        assert_eq!(parse("1-10,12"), Err(BucketsError::Malformed { piece: "12".into() }));
        assert_eq!(parse("1-x"), Err(BucketsError::BadNumber { piece: "1-x".into(), number: "x".into() }));
        assert_eq!(parse("-5"), Err(BucketsError::BadNumber { piece: "-5".into(), number: "".into() }));
        assert_eq!(
            parse("1-10,-3-4"),
            Err(BucketsError::BadNumber { piece: "-3-4".into(), number: "".into() })
        );
        assert_eq!(
            parse("1-10,20-11"),
            Err(BucketsError::MinAboveMax { piece: "20-11".into(), min: 20, max: 11 })
        );
        assert_eq!(
            parse("1-10,10-20"),
            Err(BucketsError::Overlap { piece: "10-20".into(), earlier: "1-10".into() })
        );
        assert_eq!(
            parse("1-10,41+,50-60"),
            Err(BucketsError::Overlap { piece: "50-60".into(), earlier: "41-".into() })
        );
        assert_eq!(
            parse("11-20,1-10"),
            Err(BucketsError::OutOfOrder { piece: "1-10".into(), earlier: "11-20".into() })
        );
    }

    #[test]
    fn error_messages_quote_the_piece() {
        let message = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(
            message("1-10,12"),
            "length buckets: \"12\" is not MIN-MAX or MIN- (e.g. \"1-10\" or \"41-\")"
        );
        assert_eq!(message("1-x"), "length buckets: in \"1-x\", \"x\" is not a whole number");
        assert_eq!(message("20-11"), "length buckets: in \"20-11\", the minimum 20 exceeds the maximum 11");
        assert_eq!(message("1-10,5-8"), "length buckets: \"5-8\" overlaps \"1-10\"");
        assert_eq!(
            message("11-20,1-10"),
            "length buckets: \"1-10\" comes after \"11-20\" but starts below it; list them in order"
        );
        assert_eq!(
            message("1-10,,11-"),
            "length buckets: bucket 2 is empty (two commas in a row, or a trailing comma?)"
        );
    }
}
