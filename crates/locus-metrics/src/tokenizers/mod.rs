//! sacreBLEU's BLEU tokenizers, chosen with `--tokenize`: `13a` (the default), `none`,
//! `intl`, `char` and `zh`.
//!
//! Each mirrors sacreBLEU 2.6.0's module of the same name in `sacrebleu/tokenizers/`
//! (<https://github.com/mjpost/sacrebleu/tree/master/sacrebleu/tokenizers>); `none` and
//! `char` are one line each and live here. sacreBLEU's `ja-mecab`, `ko-mecab` and the
//! SentencePiece tokenizers (`spm`, `flores101`, `flores200`) need external analysers or
//! models and are not provided.

mod tokenizer_13a;
mod tokenizer_intl;
mod tokenizer_re;
mod tokenizer_zh;

use std::fmt;
use std::str::FromStr;

use crate::error::MetricError;

pub use self::tokenizer_13a::tokenize_13a;
#[cfg(test)]
pub(crate) use self::tokenizer_intl::{is_number, is_punctuation, is_symbol};
#[cfg(test)]
pub(crate) use self::tokenizer_zh::is_chinese_char;

/// A BLEU tokenizer of sacreBLEU, by its `--tokenize` name.
///
/// ```
/// use locus_metrics::BleuTokenizer;
///
/// let intl: BleuTokenizer = "intl".parse()?;
/// assert_eq!(intl.tokenize("\u{201c}Hi,\u{201d} in 1990."), "\u{201c} Hi , \u{201d} in 1990.");
/// assert_eq!(BleuTokenizer::V13a.tokenize("\u{201c}Hi,\u{201d} in 1990."), "\u{201c}Hi , \u{201d} in 1990 .");
/// assert_eq!(BleuTokenizer::Char.tokenize("a bc"), "a   b c");
/// assert_eq!(intl.to_string(), "intl");
/// # Ok::<(), locus_metrics::MetricError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BleuTokenizer {
    /// `none`: no tokenization; BLEU's words are what whitespace separates.
    None,
    /// `13a`: the tokenizer of WMT's `mteval-v13a.pl`, splitting off ASCII punctuation
    /// and symbols (see [`tokenize_13a`]). sacreBLEU's default.
    #[default]
    V13a,
    /// `intl`: the international tokenizer of `mteval-v14.pl`, splitting off Unicode
    /// punctuation and symbols except between digits.
    Intl,
    /// `char`: every character is a word.
    Char,
    /// `zh`: every Chinese character is a word, the rest is tokenized like `13a`.
    Zh,
}

impl BleuTokenizer {
    /// Every tokenizer, in sacreBLEU's `--tokenize` choices order.
    pub const ALL: [BleuTokenizer; 5] = [
        BleuTokenizer::None,
        BleuTokenizer::Zh,
        BleuTokenizer::V13a,
        BleuTokenizer::Intl,
        BleuTokenizer::Char,
    ];

    /// The tokenizer's name in sacreBLEU's `--tokenize` option and in signatures (`tok:13a`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BleuTokenizer::None => "none",
            BleuTokenizer::V13a => "13a",
            BleuTokenizer::Intl => "intl",
            BleuTokenizer::Char => "char",
            BleuTokenizer::Zh => "zh",
        }
    }

    /// Tokenizes one segment like sacreBLEU's tokenizer of this name, returning the words
    /// separated by spaces (`none` returns the segment as it is, `char` its characters
    /// joined by single spaces, whitespace included).
    ///
    /// sacreBLEU's BLEU right-strips a segment (and lowercases it, if asked) before it
    /// tokenizes it, and then splits the result on whitespace.
    #[must_use]
    pub fn tokenize(self, line: &str) -> String {
        match self {
            BleuTokenizer::None => line.to_owned(),
            BleuTokenizer::V13a => tokenize_13a(line),
            BleuTokenizer::Intl => tokenizer_intl::tokenize_intl(line),
            BleuTokenizer::Char => join_chars(line),
            BleuTokenizer::Zh => tokenizer_zh::tokenize_zh(line),
        }
    }
}

/// sacreBLEU's `TokenizerChar()(line)`: `" ".join(line)`.
fn join_chars(line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    for (i, c) in line.chars().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for BleuTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BleuTokenizer {
    type Err = MetricError;

    /// Parses a `--tokenize` name: `13a`, `none`, `intl`, `char` or `zh`.
    fn from_str(name: &str) -> Result<Self, MetricError> {
        BleuTokenizer::ALL
            .into_iter()
            .find(|tokenizer| tokenizer.name() == name)
            .ok_or_else(|| MetricError::UnknownTokenizer { name: name.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for tokenizer in BleuTokenizer::ALL {
            assert_eq!(tokenizer.name().parse::<BleuTokenizer>(), Ok(tokenizer));
        }
        assert_eq!(BleuTokenizer::default(), BleuTokenizer::V13a);
        let err = "ja-mecab".parse::<BleuTokenizer>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown BLEU tokenizer \"ja-mecab\" (expected one of: none, zh, 13a, intl, char)"
        );
    }

    #[test]
    fn none_and_char_follow_sacrebleu() {
        // Values from sacreBLEU 2.6.0: BLEU(tokenize=...)._preprocess_segment(s) on the
        // right-stripped string; BLEU splits the result on whitespace afterwards.
        assert_eq!(BleuTokenizer::None.tokenize(" a,b "), " a,b ");
        assert_eq!(BleuTokenizer::Char.tokenize(" a b"), "  a   b");
        assert_eq!(BleuTokenizer::Char.tokenize("我们。"), "我 们 。");
        assert_eq!(BleuTokenizer::Char.tokenize("\u{1F600}x"), "\u{1F600} x");
        assert_eq!(BleuTokenizer::Char.tokenize(""), "");
    }
}
