//! Python's `str` whitespace rules (`str.isspace`, `str.split()`, `str.strip()`,
//! `str.rstrip()`), which sacreBLEU relies on for reading files, tokenization and chrF's
//! whitespace removal.
//!
//! Python counts a character as whitespace when its bidirectional class is WS, B
//! or S or its general category is Zs
//! (<https://docs.python.org/3/library/stdtypes.html#str.isspace>). That set differs
//! from Rust's [`char::is_whitespace`] (Unicode `White_Space`): it also holds the
//! ASCII information separators U+001C..U+001F. The list below is the one Python
//! 3.11 reports; the fixture test checks it code point by code point.

/// Whether Python's `str.isspace` is true for the one-character string `c`.
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `s.split()`: the maximal runs of non-whitespace characters.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|part| !part.is_empty())
}

/// Python's `s.rstrip()`: `s` without trailing whitespace.
pub(crate) fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// Python's `s.strip()`: `s` without leading or trailing whitespace.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `"".join(s.split())`: `s` with every whitespace character removed.
pub(crate) fn remove_py_space(s: &str) -> String {
    s.chars().filter(|&c| !is_py_space(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_separators_are_python_whitespace() {
        for c in ['\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}'] {
            assert!(is_py_space(c));
            assert!(!c.is_whitespace());
        }
        assert!(!is_py_space('\u{200b}'));
        assert!(!is_py_space('\u{feff}'));
    }

    #[test]
    fn split_and_strip_follow_python() {
        let s = "\u{a0} a\tb\u{1c}c\u{3000}\n";
        assert_eq!(py_split(s).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(py_rstrip(s), "\u{a0} a\tb\u{1c}c");
        assert_eq!(py_strip(s), "a\tb\u{1c}c");
        assert_eq!(remove_py_space(s), "abc");
        assert_eq!(py_split("   ").count(), 0);
    }
}
