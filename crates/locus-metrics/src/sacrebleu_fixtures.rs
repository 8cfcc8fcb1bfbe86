//! Cross-checks against sacreBLEU: the fixtures in `tests/fixtures/sacrebleu/` and
//! the scores (BLEU, chrF, chrF++, TER), signatures and tokenizations sacreBLEU 2.6.0
//! computed for them, plus Python's whitespace and lowercase tables (`expected.json`,
//! written by `make_fixtures.py` in that directory).

use serde_json::Value;

use crate::lowercase::py_lower;
use crate::pystr::is_py_space;
use crate::{
    bleu_signature, chrf_signature, corpus_bleu, corpus_chrf_with, corpus_ter, ter_signature, tokenize_13a,
    BleuParams, BleuScore, ChrfParams, ChrfScore, TerScore, SACREBLEU_VERSION,
};

const TOLERANCE: f64 = 1e-9;

const EXPECTED: &str = include_str!("../tests/fixtures/sacrebleu/expected.json");

/// The fixture text files, by the names `expected.json` uses.
const FILES: &[(&str, &str)] = &[
    ("all_empty.hyp", include_str!("../tests/fixtures/sacrebleu/all_empty.hyp")),
    ("all_empty.ref", include_str!("../tests/fixtures/sacrebleu/all_empty.ref")),
    ("de_near_miss.hyp", include_str!("../tests/fixtures/sacrebleu/de_near_miss.hyp")),
    ("de_near_miss.ref", include_str!("../tests/fixtures/sacrebleu/de_near_miss.ref")),
    ("en_near_miss.hyp", include_str!("../tests/fixtures/sacrebleu/en_near_miss.hyp")),
    ("en_near_miss.ref", include_str!("../tests/fixtures/sacrebleu/en_near_miss.ref")),
    ("entities_hyphens.hyp", include_str!("../tests/fixtures/sacrebleu/entities_hyphens.hyp")),
    ("entities_hyphens.ref", include_str!("../tests/fixtures/sacrebleu/entities_hyphens.ref")),
    ("long_segments.hyp", include_str!("../tests/fixtures/sacrebleu/long_segments.hyp")),
    ("long_segments.ref", include_str!("../tests/fixtures/sacrebleu/long_segments.ref")),
    ("mixed_case.hyp", include_str!("../tests/fixtures/sacrebleu/mixed_case.hyp")),
    ("mixed_case.ref", include_str!("../tests/fixtures/sacrebleu/mixed_case.ref")),
    ("multi30k_degraded.hyp", include_str!("../tests/fixtures/sacrebleu/multi30k_degraded.hyp")),
    ("multi30k_degraded.ref", include_str!("../tests/fixtures/sacrebleu/multi30k_degraded.ref")),
    ("no_4gram_match.hyp", include_str!("../tests/fixtures/sacrebleu/no_4gram_match.hyp")),
    ("no_4gram_match.ref", include_str!("../tests/fixtures/sacrebleu/no_4gram_match.ref")),
    ("numbers.hyp", include_str!("../tests/fixtures/sacrebleu/numbers.hyp")),
    ("numbers.ref", include_str!("../tests/fixtures/sacrebleu/numbers.ref")),
    ("perfect.hyp", include_str!("../tests/fixtures/sacrebleu/perfect.hyp")),
    ("perfect.ref", include_str!("../tests/fixtures/sacrebleu/perfect.ref")),
    ("reordered_phrases.hyp", include_str!("../tests/fixtures/sacrebleu/reordered_phrases.hyp")),
    ("reordered_phrases.ref", include_str!("../tests/fixtures/sacrebleu/reordered_phrases.ref")),
    ("reordered_phrases.ref2", include_str!("../tests/fixtures/sacrebleu/reordered_phrases.ref2")),
    ("short_segments.hyp", include_str!("../tests/fixtures/sacrebleu/short_segments.hyp")),
    ("short_segments.ref", include_str!("../tests/fixtures/sacrebleu/short_segments.ref")),
    ("two_refs.hyp", include_str!("../tests/fixtures/sacrebleu/two_refs.hyp")),
    ("two_refs.ref", include_str!("../tests/fixtures/sacrebleu/two_refs.ref")),
    ("two_refs.ref2", include_str!("../tests/fixtures/sacrebleu/two_refs.ref2")),
    ("unicode_punct.hyp", include_str!("../tests/fixtures/sacrebleu/unicode_punct.hyp")),
    ("unicode_punct.ref", include_str!("../tests/fixtures/sacrebleu/unicode_punct.ref")),
];

fn expected() -> Value {
    serde_json::from_str(EXPECTED).expect("expected.json parses")
}

/// The text of the fixture file `name` of `files` (a table of names and texts).
pub(crate) fn fixture_text(files: &[(&str, &'static str)], name: &str) -> &'static str {
    files
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("fixture {name} is not in its table of files"))
}

/// The lines of a fixture file, split exactly as `make_fixtures.py` reads them.
fn file_lines(name: &str) -> Vec<String> {
    let text = fixture_text(FILES, name);
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix('\n').unwrap_or_else(|| panic!("fixture {name} must end with a newline"));
    body.split('\n').map(str::to_owned).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("array of strings")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

pub(crate) fn float(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("{value} is not a number"))
}

pub(crate) fn int(value: &Value) -> usize {
    usize::try_from(value.as_u64().unwrap_or_else(|| panic!("{value} is not an integer")))
        .expect("fits usize")
}

/// Asserts that `rust` is within `tolerance` of `sacrebleu`'s value, naming `what`.
pub(crate) fn assert_within(what: &str, rust: f64, sacrebleu: f64, tolerance: f64) {
    assert!((rust - sacrebleu).abs() < tolerance, "{what}: rust {rust:?} != sacrebleu {sacrebleu:?}");
}

fn assert_close(what: &str, rust: f64, sacrebleu: f64) {
    assert_within(what, rust, sacrebleu, TOLERANCE);
}

fn check_bleu(name: &str, got: &BleuScore, want: &Value, nrefs: usize) {
    assert_close(&format!("{name} BLEU"), got.score, float(&want["score"]));
    assert_close(&format!("{name} BLEU bp"), got.bp, float(&want["bp"]));
    for n in 0..4 {
        assert_close(
            &format!("{name} BLEU precision {}", n + 1),
            got.precisions[n],
            float(&want["precisions"][n]),
        );
        assert_eq!(got.counts[n], int(&want["counts"][n]), "{name} count {n}");
        assert_eq!(got.totals[n], int(&want["totals"][n]), "{name} total {n}");
    }
    assert_eq!(got.sys_len, int(&want["sys_len"]), "{name} sys_len");
    assert_eq!(got.ref_len, int(&want["ref_len"]), "{name} ref_len");
    assert_eq!(got.to_string(), want["formatted"].as_str().expect("formatted"));
    assert_eq!(bleu_signature(nrefs), want["signature"].as_str().expect("sig"));
}

fn check_chrf(name: &str, got: &ChrfScore, want: &Value, params: ChrfParams, nrefs: usize) {
    assert_close(&format!("{name} chrF (nw={})", params.word_order), got.score, float(&want["score"]));
    assert_eq!(got.char_order, int(&want["char_order"]));
    assert_eq!(got.word_order, int(&want["word_order"]));
    assert_eq!(got.beta, int(&want["beta"]));
    assert_eq!(got.to_string(), want["formatted"].as_str().expect("formatted"));
    assert_eq!(params.signature(nrefs), want["signature"].as_str().expect("sig"));
}

fn check_ter(name: &str, got: &TerScore, want: &Value, nrefs: usize) {
    assert_close(&format!("{name} TER"), got.score, float(&want["score"]));
    assert_eq!(got.num_edits, int(&want["num_edits"]), "{name} TER num_edits");
    assert_close(&format!("{name} TER ref_length"), got.ref_length, float(&want["ref_length"]));
    assert_eq!(got.to_string(), want["formatted"].as_str().expect("formatted"));
    assert_eq!(ter_signature(nrefs), want["signature"].as_str().expect("sig"));
}

/// Scores one set with every metric and compares with sacreBLEU.
fn check_set(set: &Value, hyps: &[String], refs: &[Vec<String>]) {
    let name = set["name"].as_str().expect("name");
    let nrefs = refs.len();
    let bleu = corpus_bleu(hyps, refs).expect("bleu");
    check_bleu(name, &bleu, &set["bleu"], nrefs);
    for (key, params) in [("chrf", ChrfParams::default()), ("chrf_pp", ChrfParams::chrf_plus_plus())] {
        let chrf = corpus_chrf_with(hyps, refs, params).expect("chrf");
        check_chrf(name, &chrf, &set[key], params, nrefs);
    }
    let ter = corpus_ter(hyps, refs).expect("ter");
    check_ter(name, &ter, &set["ter"], nrefs);
}

#[test]
fn fixtures_come_from_the_mirrored_sacrebleu_version() {
    assert_eq!(expected()["sacrebleu_version"], SACREBLEU_VERSION);
}

#[test]
fn file_fixtures_match_sacrebleu() {
    let expected = expected();
    let sets = expected["sets"].as_array().expect("sets");
    let mut used = Vec::new();
    for set in sets {
        let hyp_file = set["hyp"].as_str().expect("hyp");
        let ref_files = strings(&set["refs"]);
        let hyps = file_lines(hyp_file);
        let refs: Vec<Vec<String>> = ref_files.iter().map(|f| file_lines(f)).collect();
        check_set(set, &hyps, &refs);
        used.push(hyp_file.to_owned());
        used.extend(ref_files);
    }
    used.sort();
    let mut known: Vec<String> = FILES.iter().map(|(f, _)| (*f).to_owned()).collect();
    known.sort();
    assert_eq!(used, known, "FILES and expected.json list the same fixtures");
}

#[test]
fn inline_fixtures_match_sacrebleu() {
    let expected = expected();
    let sets = expected["inline_sets"].as_array().expect("inline_sets");
    assert!(!sets.is_empty());
    for set in sets {
        let hyps = strings(&set["hyps"]);
        let refs: Vec<Vec<String>> = set["refs"].as_array().expect("refs").iter().map(strings).collect();
        check_set(set, &hyps, &refs);
    }
}

#[test]
fn tokenizer_13a_matches_sacrebleu() {
    let expected = expected();
    let cases = expected["tokenizer_13a"].as_array().expect("tokenizer cases");
    assert!(cases.len() > 100);
    for case in cases {
        let input = case["input"].as_str().expect("input");
        assert_eq!(tokenize_13a(input), case["tokenized"], "input {input:?}");
        assert_eq!(BleuParams::default().preprocess(input), case["bleu_preprocessed"], "input {input:?}");
    }
}

#[test]
fn python_whitespace_matches_str_isspace() {
    let expected = expected();
    let spaces: Vec<u32> = expected["python_isspace"]
        .as_array()
        .expect("python_isspace")
        .iter()
        .map(|c| u32::try_from(c.as_u64().expect("code point")).expect("u32"))
        .collect();
    for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
        assert_eq!(is_py_space(c), spaces.contains(&u32::from(c)), "U+{:04X}", u32::from(c));
    }
}

#[test]
fn signatures_match_sacrebleu() {
    let expected = expected();
    let sigs = expected["signatures"].as_object().expect("signatures");
    assert!(!sigs.is_empty());
    for (nrefs, sig) in sigs {
        let nrefs: usize = nrefs.parse().expect("nrefs");
        assert_eq!(bleu_signature(nrefs), sig["bleu"]);
        assert_eq!(chrf_signature(nrefs), sig["chrf"]);
        assert_eq!(ChrfParams::chrf_plus_plus().signature(nrefs), sig["chrf_pp"]);
        assert_eq!(ter_signature(nrefs), sig["ter"]);
    }
}

#[test]
fn lowercase_matches_python_str_lower() {
    let expected = expected();
    let table = expected["python_lower"].as_array().expect("python_lower");
    let lower: std::collections::HashMap<u32, &str> = table
        .iter()
        .map(|pair| {
            let c = u32::try_from(pair[0].as_u64().expect("code point")).expect("u32");
            (c, pair[1].as_str().expect("lowercase"))
        })
        .collect();
    assert!(lower.len() > 1000);
    for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
        let want = lower.get(&u32::from(c)).map_or_else(|| c.to_string(), |s| (*s).to_owned());
        assert_eq!(py_lower(&c.to_string()), want, "U+{:04X}", u32::from(c));
    }
}
