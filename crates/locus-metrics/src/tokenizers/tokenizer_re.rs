//! The regular-expression pass shared by the `13a` and `zh` tokenizers, and the
//! Python `re.sub` equivalents it (and `intl`) is built from.
//!
//! Mirrors sacreBLEU 2.6.0's `tokenizers/tokenizer_re.py` (`TokenizerRegexp`,
//! <https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/tokenizers/tokenizer_re.py>),
//! which applies, left to right and without overlaps like Python's `re.sub`:
//!
//! * `` ([\{-\~\[-\` -\&\(-\+\:-\@\/]) `` → `" \1 "` (ASCII symbols),
//! * `([^0-9])([\.,])` → `"\1 \2 "` (period / comma not after a digit),
//! * `([\.,])([^0-9])` → `" \1 \2"` (period / comma not before a digit),
//! * `([0-9])(-)` → `"\1 \2 "` (dash after a digit);
//!
//! then collapses whitespace the way Python's `" ".join(line.split())` does.
//!
//! `[0-9]` means the ASCII digits only, as in Python's `re` for these patterns.

use crate::pystr::py_split;

/// sacreBLEU's `TokenizerRegexp()(line)`.
pub(super) fn tokenize_re(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let chars = pad_each(&chars, is_ascii_symbol);
    let chars = sub_pairs(&chars, |a| !is_digit(a), is_period_or_comma, |a, b| [a, ' ', b, ' ']);
    let chars = sub_pairs(&chars, is_period_or_comma, |b| !is_digit(b), |a, b| [' ', a, ' ', b]);
    let chars = sub_pairs(&chars, is_digit, |b| b == '-', |a, b| [a, ' ', b, ' ']);

    collapse_whitespace(chars)
}

/// Python's `" ".join(line.split())` of the characters `chars`.
pub(super) fn collapse_whitespace(chars: Vec<char>) -> String {
    let line: String = chars.into_iter().collect();
    py_split(&line).collect::<Vec<_>>().join(" ")
}

/// The class `` [\{-\~\[-\` -\&\(-\+\:-\@\/] `` of the first rule.
fn is_ascii_symbol(c: char) -> bool {
    matches!(
        c,
        '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/'
    )
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_period_or_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// `re.sub("(X)", r" \1 ", line)` for a one-character class `X`: surrounds every
/// character `is_match` accepts with spaces.
pub(super) fn pad_each(chars: &[char], is_match: impl Fn(char) -> bool) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() * 2);
    for &c in chars {
        if is_match(c) {
            out.extend([' ', c, ' ']);
        } else {
            out.push(c);
        }
    }
    out
}

/// `re.sub` for a two-character pattern `(A)(B)`: scans left to right, replaces
/// each non-overlapping match with the four characters `replace(a, b)` and
/// resumes after the match, as Python does.
pub(super) fn sub_pairs(
    chars: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    replace: impl Fn(char, char) -> [char; 4],
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        let (a, next) = (chars[i], chars.get(i + 1).copied());
        match next {
            Some(b) if first(a) && second(b) => {
                out.extend(replace(a, b));
                i += 2;
            }
            _ => {
                out.push(a);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_symbols_and_sentence_punctuation() {
        // Values from sacreBLEU: TokenizerRegexp()(s)
        assert_eq!(tokenize_re("Hello, world!"), "Hello , world !");
        assert_eq!(tokenize_re("pages 10-12, a-b"), "pages 10 - 12 , a-b");
        assert_eq!(tokenize_re("$5 and 3.14"), "$ 5 and 3.14");
    }

    #[test]
    fn needs_a_character_after_a_final_period() {
        // Unlike 13a, which pads the line with spaces first, nothing follows this period.
        assert_eq!(tokenize_re("in 1990."), "in 1990.");
        assert_eq!(tokenize_re("in 1990. Then"), "in 1990 . Then");
    }

    #[test]
    fn matches_are_not_overlapping() {
        // The second period is consumed by the first match of rule 2, so only
        // rule 3 separates it, exactly as in Python.
        assert_eq!(tokenize_re(" a.. "), "a . .");
        assert_eq!(tokenize_re(""), "");
    }
}
