//! Python 3.11's `str.lower()`, which sacreBLEU applies in case-insensitive TER (its
//! default) and in lowercased BLEU and chrF
//! (<https://docs.python.org/3/library/stdtypes.html#str.lower>).
//!
//! Both Python and Rust's [`str::to_lowercase`] use the full Unicode mappings
//! (`İ` becomes `i̇`) and the final-sigma rule (`ΟΔΟΣ` becomes `οδος`), but
//! Python 3.11 knows Unicode 14.0 and Rust a later version: the case pairs added
//! since are lowercased by Rust only. Those characters are kept as they are here,
//! which also keeps them from taking part in final-sigma contexts (in Python they
//! are unassigned, hence neither cased nor case-ignorable). A fixture test compares
//! every code point with Python's table.

/// Uppercase letters whose lowercase mapping Unicode added after 14.0 (Latin and
/// Cyrillic additions, the Garay and Beria Erfe scripts), i.e. those Rust lowercases
/// and Python 3.11 does not.
fn is_newer_than_unicode_14(c: char) -> bool {
    matches!(
        c,
        '\u{1c89}'
            | '\u{a7cb}'
            | '\u{a7cc}'
            | '\u{a7ce}'
            | '\u{a7d2}'
            | '\u{a7d4}'
            | '\u{a7da}'
            | '\u{a7dc}'
            | '\u{10d50}'..='\u{10d65}'
            | '\u{16ea0}'..='\u{16eb8}'
    )
}

/// Python 3.11's `s.lower()`.
pub(crate) fn py_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(is_newer_than_unicode_14) {
        out.push_str(&rest[..pos].to_lowercase());
        let kept = rest[pos..].chars().next().map_or(0, char::len_utf8);
        out.push_str(&rest[pos..pos + kept]);
        rest = &rest[pos + kept..];
    }
    out.push_str(&rest.to_lowercase());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_like_python() {
        // Values from Python 3.11: "...".lower()
        assert_eq!(py_lower("The CAT"), "the cat");
        assert_eq!(py_lower("İstanbul"), "i\u{307}stanbul");
        assert_eq!(py_lower("ΟΔΟΣ ΣΑΣ Σ"), "οδος σας σ");
        assert_eq!(py_lower("STRASSE ẞ"), "strasse ß");
    }

    #[test]
    fn keeps_letters_python_does_not_know() {
        assert_eq!(py_lower("A\u{a7cb}B\u{10d50}"), "a\u{a7cb}b\u{10d50}");
        // Python: the unassigned letter is not cased, so the sigma before it is final.
        assert_eq!(py_lower("ΑΣ\u{a7cb}Σ"), "ας\u{a7cb}σ");
    }
}
