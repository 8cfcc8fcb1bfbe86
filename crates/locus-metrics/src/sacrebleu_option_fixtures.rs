//! Cross-checks of every BLEU tokenizer and case option against the `sacrebleu` command:
//! the corpora in `tests/fixtures/score/` and what sacreBLEU 2.6.0 printed and computed for
//! them (`expected.json`, written by `scripts/make-score-fixtures.py`, which names the
//! exact command of each run), plus each tokenizer's output on tricky strings and the
//! Unicode tables behind `intl` and `zh`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::sacrebleu_fixtures::{assert_within, fixture_text, float, int};
use crate::tokenizers::{is_chinese_char, is_number, is_punctuation, is_symbol};
use crate::{
    corpus_bleu_with, corpus_chrf_with, corpus_ter_with, json_report, split_segments, text_report,
    BleuParams, BleuTokenizer, ChrfParams, ScoreReport, TerParams, SACREBLEU_VERSION,
};

const EXPECTED: &str = include_str!("../tests/fixtures/score/expected.json");

/// The corpus files, by the names `expected.json` uses.
const FILES: &[(&str, &str)] = &[
    ("mixed.hyp", include_str!("../tests/fixtures/score/mixed.hyp")),
    ("mixed.ref", include_str!("../tests/fixtures/score/mixed.ref")),
    ("mixed.ref2", include_str!("../tests/fixtures/score/mixed.ref2")),
    ("zh.hyp", include_str!("../tests/fixtures/score/zh.hyp")),
    ("zh.ref", include_str!("../tests/fixtures/score/zh.ref")),
    ("zh.ref2", include_str!("../tests/fixtures/score/zh.ref2")),
    ("empty.hyp", include_str!("../tests/fixtures/score/empty.hyp")),
    ("empty.ref", include_str!("../tests/fixtures/score/empty.ref")),
    ("empty.ref2", include_str!("../tests/fixtures/score/empty.ref2")),
];

/// Full-precision scores must agree with sacreBLEU's Python API to this.
const API_TOLERANCE: f64 = 1e-9;
/// The acceptance bound against the scores the `sacrebleu` command printed (`--width 4`).
const COMMAND_TOLERANCE: f64 = 0.01;

fn expected() -> Value {
    serde_json::from_str(EXPECTED).expect("expected.json parses")
}

fn segments(name: &str) -> Vec<&'static str> {
    split_segments(fixture_text(FILES, name))
}

/// The metric settings of a run's `options`.
fn params(options: &Value) -> (BleuParams, ChrfParams, TerParams) {
    let flag = |key: &str| options[key].as_bool().unwrap_or_else(|| panic!("options.{key}"));
    let tokenizer: BleuTokenizer =
        options["tokenize"].as_str().expect("tokenize").parse().expect("known tokenizer");
    let bleu = BleuParams { tokenizer, lowercase: flag("lowercase") };
    let chrf = ChrfParams {
        word_order: int(&options["chrf_word_order"]),
        lowercase: flag("chrf_lowercase"),
        ..ChrfParams::default()
    };
    let ter = TerParams { case_sensitive: flag("ter_case_sensitive") };
    (bleu, chrf, ter)
}

/// Scores one run and compares the scores with the API's and the reports with the command's.
fn check_run(run: &Value) {
    let what = run["sacrebleu_json_command"].as_str().expect("command");
    let corpus = run["corpus"].as_str().expect("corpus");
    let hyps = segments(&format!("{corpus}.hyp"));
    let refs: Vec<Vec<&str>> = [format!("{corpus}.ref"), format!("{corpus}.ref2")][..int(&run["nrefs"])]
        .iter()
        .map(|f| segments(f))
        .collect();
    let (bleu_params, chrf_params, ter_params) = params(&run["options"]);

    let bleu = corpus_bleu_with(&hyps, &refs, bleu_params).expect("bleu");
    let chrf = corpus_chrf_with(&hyps, &refs, chrf_params).expect("chrf");
    let ter = corpus_ter_with(&hyps, &refs, ter_params).expect("ter");

    let api = &run["api"];
    assert_within(&format!("{what}: BLEU"), bleu.score, float(&api["bleu"]["score"]), API_TOLERANCE);
    for n in 0..4 {
        assert_eq!(bleu.counts[n], int(&api["bleu"]["counts"][n]), "{what}: BLEU count {n}");
        assert_eq!(bleu.totals[n], int(&api["bleu"]["totals"][n]), "{what}: BLEU total {n}");
    }
    assert_eq!(bleu.sys_len, int(&api["bleu"]["sys_len"]), "{what}: BLEU sys_len");
    assert_eq!(bleu.ref_len, int(&api["bleu"]["ref_len"]), "{what}: BLEU ref_len");
    assert_within(&format!("{what}: chrF"), chrf.score, float(&api["chrf"]["score"]), API_TOLERANCE);
    assert_within(&format!("{what}: TER"), ter.score, float(&api["ter"]["score"]), API_TOLERANCE);
    assert_eq!(ter.num_edits, int(&api["ter"]["num_edits"]), "{what}: TER edits");
    assert_within(
        &format!("{what}: TER length"),
        ter.ref_length,
        float(&api["ter"]["ref_length"]),
        API_TOLERANCE,
    );

    let nrefs = refs.len();
    let reports = [
        ScoreReport::bleu(&bleu, &bleu_params, nrefs),
        ScoreReport::chrf(&chrf, &chrf_params, nrefs),
        ScoreReport::ter(&ter, &ter_params, nrefs),
    ];
    let printed: Value =
        serde_json::from_str(run["sacrebleu_json"].as_str().expect("json output")).expect("parses");
    for (report, doc) in reports.iter().zip(printed.as_array().expect("one document per metric")) {
        assert_within(
            &format!("{what}: {}", report.name),
            report.score,
            float(&doc["score"]),
            COMMAND_TOLERANCE,
        );
        assert_eq!(report.signature, doc["signature"], "{what}");
    }
    assert_eq!(json_report(&reports, 4), run["sacrebleu_json"].as_str().expect("json output"), "{what}");
    let text_command = run["sacrebleu_text_command"].as_str().expect("command");
    assert_eq!(
        text_report(&reports, 1),
        run["sacrebleu_text"].as_str().expect("text output"),
        "{text_command}"
    );
}

#[test]
fn fixtures_come_from_the_mirrored_sacrebleu_version() {
    assert_eq!(expected()["sacrebleu_version"], SACREBLEU_VERSION);
}

#[test]
fn every_tokenizer_and_case_option_matches_the_sacrebleu_command() {
    let expected = expected();
    let runs = expected["runs"].as_array().expect("runs");
    let mut covered = BTreeSet::new();
    for run in runs {
        check_run(run);
        let options = &run["options"];
        covered.insert((
            run["corpus"].as_str().expect("corpus").to_owned(),
            options["tokenize"].as_str().expect("tokenize").to_owned(),
            options["lowercase"].as_bool().expect("lowercase"),
            int(&run["nrefs"]),
        ));
    }
    // every corpus x tokenizer x lowercase x one or two references
    assert_eq!(covered.len(), 3 * BleuTokenizer::ALL.len() * 2 * 2);
}

#[test]
fn tokenizers_match_sacrebleu() {
    let expected = expected();
    let cases = expected["tokenizers"].as_object().expect("tokenizers");
    assert_eq!(cases.len(), BleuTokenizer::ALL.len());
    for (name, pairs) in cases {
        let params = BleuParams { tokenizer: name.parse().expect("known tokenizer"), lowercase: false };
        let pairs = pairs.as_array().expect("pairs");
        assert!(pairs.len() > 300);
        for pair in pairs {
            let input = pair[0].as_str().expect("input");
            assert_eq!(params.preprocess(input), pair[1], "{name}: {input:?}");
        }
    }
}

/// Which code points the `[first, last]` ranges of `ranges` hold, indexed by code point.
fn code_points(ranges: &Value) -> Vec<bool> {
    let mut members = vec![false; 0x11_0000];
    for range in ranges.as_array().expect("ranges") {
        members[int(&range[0])..=int(&range[1])].fill(true);
    }
    members
}

#[test]
fn intl_categories_match_the_regex_module() {
    let expected = expected();
    let tables = &expected["unicode_categories"];
    let classes = [("P", is_punctuation as fn(char) -> bool), ("S", is_symbol), ("N", is_number)];
    for (class, is_member) in classes {
        let members = code_points(&tables[class]);
        assert!(members.iter().filter(|&&member| member).count() > 500, "\\p{{{class}}}");
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            assert_eq!(is_member(c), members[c as usize], "\\p{{{class}}} U+{:04X}", u32::from(c));
        }
    }
}

#[test]
fn zh_chinese_chars_match_sacrebleu() {
    let chinese = code_points(&expected()["zh_chinese_chars"]);
    for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
        assert_eq!(is_chinese_char(c), chinese[c as usize], "U+{:04X}", u32::from(c));
    }
}
