//! The `13a` tokenizer: sacreBLEU's default BLEU tokenizer, equivalent to the one
//! in WMT's `mteval-v13a.pl`.
//!
//! Mirrors sacreBLEU 2.6.0's `tokenizers/tokenizer_13a.py` and
//! `tokenizers/tokenizer_re.py`
//! (<https://github.com/mjpost/sacrebleu/tree/master/sacrebleu/tokenizers>):
//!
//! 1. remove `<skipped>`, join `-\n` hyphenations, turn `\n` into a space;
//! 2. unescape `&quot;`, `&amp;`, `&lt;`, `&gt;` (in that order, once each);
//! 3. apply, left to right and without overlaps like Python's `re.sub`:
//!    * `` ([\{-\~\[-\` -\&\(-\+\:-\@\/]) `` → `" \1 "` (ASCII symbols),
//!    * `([^0-9])([\.,])` → `"\1 \2 "` (period / comma not after a digit),
//!    * `([\.,])([^0-9])` → `" \1 \2"` (period / comma not before a digit),
//!    * `([0-9])(-)` → `"\1 \2 "` (dash after a digit);
//! 4. collapse whitespace the way Python's `" ".join(line.split())` does.
//!
//! `[0-9]` means the ASCII digits only, as in Python's `re` for these patterns.

use crate::pystr::py_split;

/// Tokenizes one segment exactly like sacreBLEU's `Tokenizer13a()(line)`.
///
/// sacreBLEU's BLEU first strips trailing whitespace (`line.rstrip()`) and then
/// calls this tokenizer; [`corpus_bleu`](crate::corpus_bleu) does the same.
#[must_use]
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }

    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 2);
    chars.push(' ');
    chars.extend(line.chars());
    chars.push(' ');

    let chars = pad_symbols(&chars);
    let chars = sub_pairs(&chars, |a| !is_digit(a), is_period_or_comma, |a, b| [a, ' ', b, ' ']);
    let chars = sub_pairs(&chars, is_period_or_comma, |b| !is_digit(b), |a, b| [' ', a, ' ', b]);
    let chars = sub_pairs(&chars, is_digit, |b| b == '-', |a, b| [a, ' ', b, ' ']);

    let line: String = chars.into_iter().collect();
    py_split(&line).collect::<Vec<_>>().join(" ")
}

/// The class `` [\{-\~\[-\` -\&\(-\+\:-\@\/] `` of the first 13a rule.
fn is_13a_symbol(c: char) -> bool {
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

/// First rule: surround every symbol of [`is_13a_symbol`] with spaces.
fn pad_symbols(chars: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() * 2);
    for &c in chars {
        if is_13a_symbol(c) {
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
fn sub_pairs(
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
    fn splits_punctuation_but_not_numbers() {
        assert_eq!(tokenize_13a("Hello, world!"), "Hello , world !");
        assert_eq!(tokenize_13a("It's 3.14, not 3,14."), "It's 3.14 , not 3,14 .");
        assert_eq!(tokenize_13a("pages 10-12"), "pages 10 - 12");
        assert_eq!(tokenize_13a("a-b"), "a-b");
    }

    #[test]
    fn unescapes_entities_once() {
        assert_eq!(tokenize_13a("&quot;x&quot;"), "\" x \"");
        assert_eq!(tokenize_13a("&amp;quot;"), "& quot ;");
        assert_eq!(tokenize_13a("&lt;b&gt;"), "< b >");
    }

    #[test]
    fn handles_skipped_and_line_breaks() {
        assert_eq!(tokenize_13a("a<skipped>b"), "ab");
        assert_eq!(tokenize_13a("hyphen-\nated line\nbreak"), "hyphenated line break");
        // `-\n` is joined after `<skipped>` is removed, so this one survives.
        assert_eq!(tokenize_13a("<skip-\nped>"), "< skipped >");
    }

    #[test]
    fn matches_are_not_overlapping() {
        // The second period is consumed by the first match of rule 2, so only
        // rule 3 separates it, exactly as in Python.
        assert_eq!(tokenize_13a("a.."), "a . .");
        assert_eq!(tokenize_13a(""), "");
    }
}
