//! How the `sacrebleu` command turns the text of a hypothesis or reference file into
//! segments.
//!
//! sacreBLEU 2.6.0's `sacrebleu.py` opens each file with `utils.smart_open` (`open(path,
//! encoding="utf-8", newline="\n")`, <https://github.com/mjpost/sacrebleu/blob/master/sacrebleu/utils.py>)
//! and keeps `line.rstrip()` of every line it iterates over. So:
//!
//! * lines end at `\n` only: a `\r` inside a line stays there, a `\r` before the `\n` is
//!   trailing whitespace and goes;
//! * a final `\n` does not start another segment, and an empty file has none;
//! * trailing whitespace (Python's definition: tabs, no-break and ideographic spaces,
//!   U+001C..U+001F, ...) is removed, leading whitespace kept;
//! * a byte-order mark stays, as U+FEFF at the start of the first segment (Python's
//!   `utf-8` codec, unlike `utf-8-sig`, keeps it).

use crate::pystr::py_rstrip;

/// The segments the `sacrebleu` command reads from a file holding `text`.
///
/// ```
/// use locus_metrics::split_segments;
///
/// assert_eq!(split_segments("a b \r\n\n c\td\t"), ["a b", "", " c\td"]);
/// assert_eq!(split_segments("x\ry\n"), ["x\ry"]);
/// assert!(split_segments("").is_empty());
/// ```
#[must_use]
pub fn split_segments(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').map(py_rstrip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_python_file_iteration() {
        // Values from Python 3.11: [l.rstrip() for l in open(p, encoding="utf-8", newline="\n")]
        assert_eq!(split_segments("one\ntwo"), ["one", "two"]);
        assert_eq!(split_segments("\n"), [""]);
        assert_eq!(split_segments("\n\n"), ["", ""]);
        assert_eq!(split_segments("\u{feff}a\u{3000}\u{a0}\n\u{2028}b\u{1c}\n"), ["\u{feff}a", "\u{2028}b"]);
    }
}
