//! The `13a` tokenizer: sacreBLEU's default BLEU tokenizer, equivalent to the one
//! in WMT's `mteval-v13a.pl`.
//!
//! Mirrors sacreBLEU 2.6.0's `tokenizers/tokenizer_13a.py`
//! (<https://github.com/mjpost/sacrebleu/tree/master/sacrebleu/tokenizers>):
//!
//! 1. remove `<skipped>`, join `-\n` hyphenations, turn `\n` into a space;
//! 2. unescape `&quot;`, `&amp;`, `&lt;`, `&gt;` (in that order, once each);
//! 3. pad the line with a space on either side and apply the regular-expression
//!    pass shared with `zh` (see `tokenizer_re.rs`), which also collapses whitespace.

use super::tokenizer_re::tokenize_re;

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
    tokenize_re(&format!(" {line} "))
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
    fn padding_separates_a_final_period() {
        // The spaces 13a adds around the line give rule 3 a character to match.
        assert_eq!(tokenize_13a("in 1990."), "in 1990 .");
        assert_eq!(tokenize_13a("a.."), "a . .");
        assert_eq!(tokenize_13a(""), "");
    }
}
