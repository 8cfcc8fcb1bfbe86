//! The `intl` tokenizer: the international tokenization of WMT's `mteval-v14.pl`, which
//! splits on Unicode punctuation and symbols.
//!
//! Mirrors sacreBLEU 2.6.0's `tokenizers/tokenizer_intl.py`
//! (`TokenizerV14International`,
//! <https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/tokenizers/tokenizer_intl.py>),
//! which applies, left to right and without overlaps, with the `regex` module:
//!
//! * `(\P{N})(\p{P})` → `"\1 \2 "` (punctuation after a non-number),
//! * `(\p{P})(\P{N})` → `" \1 \2"` (punctuation before a non-number),
//! * `(\p{S})` → `" \1 "` (symbols);
//!
//! then collapses whitespace like Python's `" ".join(line.split())`. `P`, `S` and `N` are
//! the Unicode general categories Punctuation, Symbol and Number. As in `mteval-v14.pl`, a
//! number followed by a final period keeps it (`"in 1990."` stays one token pair), and a
//! period or comma between digits is not split.
//!
//! The categories come from the `unicode-general-category` crate (Unicode 16.0). The
//! Python `regex` module that sacreBLEU uses (2026.5.9) knows Unicode 17.0, which made a few
//! new characters punctuation, symbols or numbers; they are listed below so that the
//! tokenizer matches today's sacreBLEU installation code point for code point (a fixture
//! test compares every code point with the `regex` module's classes).

use std::cmp::Ordering;

use unicode_general_category::{get_general_category, GeneralCategory};

use super::tokenizer_re::{collapse_whitespace, pad_each, sub_pairs};

/// Characters Unicode 17.0 assigned to Punctuation (`\p{P}` in Python's `regex` 2026.5.9).
const PUNCTUATION_SINCE_UNICODE_17: &[(char, char)] = &[('\u{10ed0}', '\u{10ed0}')];

/// Characters Unicode 17.0 assigned to Symbol (`\p{S}`).
const SYMBOLS_SINCE_UNICODE_17: &[(char, char)] = &[
    ('\u{20c1}', '\u{20c1}'),
    ('\u{2b96}', '\u{2b96}'),
    ('\u{fbc3}', '\u{fbd2}'),
    ('\u{fd90}', '\u{fd91}'),
    ('\u{fdc8}', '\u{fdce}'),
    ('\u{10ed1}', '\u{10ed8}'),
    ('\u{1ccfa}', '\u{1ccfc}'),
    ('\u{1ceba}', '\u{1ced0}'),
    ('\u{1cee0}', '\u{1cef0}'),
    ('\u{1f6d8}', '\u{1f6d8}'),
    ('\u{1f777}', '\u{1f77a}'),
    ('\u{1f8d0}', '\u{1f8d8}'),
    ('\u{1fa54}', '\u{1fa57}'),
    ('\u{1fa8a}', '\u{1fa8a}'),
    ('\u{1fa8e}', '\u{1fa8e}'),
    ('\u{1fac8}', '\u{1fac8}'),
    ('\u{1facd}', '\u{1facd}'),
    ('\u{1faea}', '\u{1faea}'),
    ('\u{1faef}', '\u{1faef}'),
    ('\u{1fbfa}', '\u{1fbfa}'),
];

/// Characters Unicode 17.0 assigned to Number (`\p{N}`).
const NUMBERS_SINCE_UNICODE_17: &[(char, char)] = &[('\u{11de0}', '\u{11de9}'), ('\u{16ff4}', '\u{16ff6}')];

/// sacreBLEU's `TokenizerV14International()(line)`.
pub(super) fn tokenize_intl(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let chars = sub_pairs(&chars, |a| !is_number(a), is_punctuation, |a, b| [a, ' ', b, ' ']);
    let chars = sub_pairs(&chars, is_punctuation, |b| !is_number(b), |a, b| [' ', a, ' ', b]);
    let chars = pad_each(&chars, is_symbol);
    collapse_whitespace(chars)
}

/// Whether `c` lies in one of `ranges`, which are sorted and disjoint.
fn in_ranges(c: char, ranges: &[(char, char)]) -> bool {
    ranges
        .binary_search_by(|&(first, last)| {
            if last < c {
                Ordering::Less
            } else if first > c {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

/// `\p{P}`: connector, dash, open, close, initial, final or other punctuation.
pub(crate) fn is_punctuation(c: char) -> bool {
    use GeneralCategory::*;
    match get_general_category(c) {
        ConnectorPunctuation | DashPunctuation | OpenPunctuation | ClosePunctuation | InitialPunctuation
        | FinalPunctuation | OtherPunctuation => true,
        Unassigned => in_ranges(c, PUNCTUATION_SINCE_UNICODE_17),
        _ => false,
    }
}

/// `\p{S}`: math, currency, modifier or other symbol.
pub(crate) fn is_symbol(c: char) -> bool {
    use GeneralCategory::*;
    match get_general_category(c) {
        MathSymbol | CurrencySymbol | ModifierSymbol | OtherSymbol => true,
        Unassigned => in_ranges(c, SYMBOLS_SINCE_UNICODE_17),
        _ => false,
    }
}

/// `\p{N}`: decimal, letter or other number.
pub(crate) fn is_number(c: char) -> bool {
    use GeneralCategory::*;
    match get_general_category(c) {
        DecimalNumber | LetterNumber | OtherNumber => true,
        Unassigned => in_ranges(c, NUMBERS_SINCE_UNICODE_17),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from sacreBLEU 2.6.0: TokenizerV14International()(s)

    #[test]
    fn splits_unicode_punctuation_and_symbols() {
        assert_eq!(tokenize_intl("Hello, world!"), "Hello , world !");
        assert_eq!(
            tokenize_intl("\u{201c}quoted\u{201d} \u{ab}x\u{bb}"),
            "\u{201c} quoted \u{201d} \u{ab} x \u{bb}"
        );
        assert_eq!(tokenize_intl("\u{2014}dash\u{2014}x"), "\u{2014} dash \u{2014} x");
        assert_eq!(tokenize_intl("$5 \u{20ac}5 5%"), "$ 5 \u{20ac} 5 5%");
        assert_eq!(tokenize_intl("It's a-b"), "It ' s a - b");
    }

    #[test]
    fn keeps_punctuation_next_to_numbers() {
        assert_eq!(tokenize_intl("It's 3.14, not 3,14."), "It ' s 3.14 , not 3,14.");
        assert_eq!(tokenize_intl("in 1990."), "in 1990.");
        assert_eq!(tokenize_intl("in 1990. Then"), "in 1990 . Then");
        assert_eq!(tokenize_intl("pages 10-12"), "pages 10-12");
        // superscript two and one half are numbers (No), the plus sign a symbol (Sm)
        assert_eq!(tokenize_intl("x\u{b2}+\u{bd}"), "x\u{b2} + \u{bd}");
    }

    #[test]
    fn does_not_unescape_entities() {
        assert_eq!(tokenize_intl("Tom &amp; Jerry"), "Tom & amp ; Jerry");
        assert_eq!(tokenize_intl("\u{6211}\u{4eec}\u{3002}"), "\u{6211}\u{4eec} \u{3002}");
    }

    #[test]
    fn knows_unicode_17_additions() {
        assert!(is_punctuation('\u{10ed0}') && is_symbol('\u{20c1}') && is_number('\u{16ff4}'));
        assert!(is_symbol('\u{1fbfa}') && is_symbol('\u{1ceba}') && !is_symbol('\u{1ced1}'));
        assert!(!is_punctuation('a') && !is_symbol('1') && !is_number('.'));
    }
}
