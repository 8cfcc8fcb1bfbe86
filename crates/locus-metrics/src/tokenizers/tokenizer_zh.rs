//! The `zh` tokenizer for Chinese: every Chinese character is a token of its own, the
//! rest is tokenized like `13a` (without its entity and `<skipped>` handling).
//!
//! Mirrors sacreBLEU 2.6.0's `tokenizers/tokenizer_zh.py` (`TokenizerZh`, by Shujian
//! Huang, <https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/tokenizers/tokenizer_zh.py>):
//! strip the line (Python's `str.strip`), surround each character of the ranges below
//! with spaces, then apply the regular-expression pass of `tokenizer_re.rs`.

use super::tokenizer_re::tokenize_re;
use crate::pystr::py_strip;

/// sacreBLEU's `_UCODE_RANGES`, in its order: the code point ranges whose characters
/// `_is_chinese_char` accepts.
///
/// Two of sacreBLEU's bounds are written with five hex digits in a four-digit escape,
/// `u'\u20000'` and `u'\u2f800'`, so Python reads them as two-character strings
/// (`'\u2000' + '0'`, ...) and compares a character with them as strings. The ranges
/// meant as CJK Extension B (U+20000..U+2A6D6) and the Compatibility Supplement
/// (U+2F800..U+2FA1D) therefore cover U+2001..=U+2A6D (general punctuation, arrows,
/// mathematical operators, dingbats, ...) and U+2F81..=U+2FA1 instead; this is what
/// sacreBLEU does, so it is what is reproduced here.
const CHINESE_RANGES: &[(char, char)] = &[
    ('\u{3400}', '\u{4db5}'), // CJK Unified Ideographs Extension A, release 3.0
    ('\u{4e00}', '\u{9fa5}'), // CJK Unified Ideographs, release 1.1
    ('\u{9fa6}', '\u{9fbb}'), // CJK Unified Ideographs, release 4.1
    ('\u{f900}', '\u{fa2d}'), // CJK Compatibility Ideographs, release 1.1
    ('\u{fa30}', '\u{fa6a}'), // CJK Compatibility Ideographs, release 3.2
    ('\u{fa70}', '\u{fad9}'), // CJK Compatibility Ideographs, release 4.1
    ('\u{2001}', '\u{2a6d}'), // meant as CJK Unified Ideographs Extension B (see above)
    ('\u{2f81}', '\u{2fa1}'), // meant as CJK Compatibility Supplement (see above)
    ('\u{ff00}', '\u{ffef}'), // full-width ASCII and punctuation, half-width kana, Hangul
    ('\u{2e80}', '\u{2eff}'), // CJK Radicals Supplement
    ('\u{3000}', '\u{303f}'), // CJK punctuation marks
    ('\u{31c0}', '\u{31ef}'), // CJK strokes
    ('\u{2f00}', '\u{2fdf}'), // Kangxi Radicals
    ('\u{2ff0}', '\u{2fff}'), // Chinese character structure
    ('\u{3100}', '\u{312f}'), // phonetic symbols
    ('\u{31a0}', '\u{31bf}'), // phonetic symbols (Taiwanese and Hakka expansion)
    ('\u{fe10}', '\u{fe1f}'),
    ('\u{fe30}', '\u{fe4f}'),
    ('\u{2600}', '\u{26ff}'),
    ('\u{2700}', '\u{27bf}'),
    ('\u{3200}', '\u{32ff}'),
    ('\u{3300}', '\u{33ff}'),
];

/// sacreBLEU's `TokenizerZh._is_chinese_char`.
pub(crate) fn is_chinese_char(c: char) -> bool {
    CHINESE_RANGES.iter().any(|&(first, last)| (first..=last).contains(&c))
}

/// sacreBLEU's `TokenizerZh()(line)`.
pub(super) fn tokenize_zh(line: &str) -> String {
    let line = py_strip(line);
    let mut spaced = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_chinese_char(c) {
            spaced.extend([' ', c, ' ']);
        } else {
            spaced.push(c);
        }
    }
    tokenize_re(&spaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values from sacreBLEU 2.6.0: TokenizerZh()(s)

    #[test]
    fn splits_chinese_characters() {
        assert_eq!(tokenize_zh("我们今天去北京。"), "我 们 今 天 去 北 京 。");
        assert_eq!(tokenize_zh("GDP增长了6.5%"), "GDP 增 长 了 6.5 %");
        assert_eq!(tokenize_zh("Hello 世界, this"), "Hello 世 界 , this");
    }

    #[test]
    fn treats_general_punctuation_as_chinese() {
        // U+2001..=U+2A6D: em dash, curly quotes, ellipsis, arrows
        assert_eq!(tokenize_zh("\u{2014}dash\u{2014}x"), "\u{2014} dash \u{2014} x");
        assert_eq!(
            tokenize_zh("\u{201c}quoted\u{201d} \u{ab}x\u{bb}"),
            "\u{201c} quoted \u{201d} \u{ab}x\u{bb}"
        );
        assert!(is_chinese_char('\u{2001}') && is_chinese_char('\u{2a6d}'));
        assert!(!is_chinese_char('\u{2000}') && !is_chinese_char('\u{2a6e}'));
        // ... while CJK Extension B itself is not
        assert!(!is_chinese_char('\u{20000}'));
        assert_eq!(tokenize_zh("\u{20000}x"), "\u{20000}x");
    }

    #[test]
    fn strips_before_and_has_no_padding() {
        assert_eq!(tokenize_zh("\u{3000} a b \u{a0}"), "a b");
        // no space is added around the line, so a final period after a digit stays
        assert_eq!(tokenize_zh("in 1990."), "in 1990.");
        assert_eq!(tokenize_zh("Tom &amp; Jerry"), "Tom & amp ; Jerry");
    }
}
