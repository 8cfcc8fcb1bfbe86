//! `locus score` prints what the `sacrebleu` command prints, byte for byte: for every BLEU
//! tokenizer, with and without lowercasing, with one and two references, and with chrF++,
//! lowercased chrF and case-sensitive TER. The runs, the exact `sacrebleu` command of each
//! and its output are in crates/locus-metrics/tests/fixtures/score/expected.json, made by
//! scripts/make-score-fixtures.py with sacreBLEU 2.6.0. Unreadable or mismatched files are
//! errors that name them.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use common::stderr;

/// The fixture corpora and `expected.json`.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../locus-metrics/tests/fixtures/score")
}

/// Runs `locus score ARGS` in `dir`.
fn score_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus"))
        .arg("score")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running locus")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "locus score failed: {}", stderr(output));
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn runs() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    let expected: Value = serde_json::from_str(&text).expect("expected.json parses");
    expected["runs"].as_array().expect("runs").clone()
}

fn locus_args(run: &Value) -> Vec<&str> {
    run["locus_args"]
        .as_array()
        .expect("locus_args")
        .iter()
        .map(|arg| arg.as_str().expect("string"))
        .collect()
}

#[test]
fn json_and_text_equal_the_sacrebleu_command() {
    let runs = runs();
    assert!(runs.len() >= 60);
    for run in &runs {
        let args = locus_args(run);

        let command = run["sacrebleu_json_command"].as_str().expect("command");
        let json =
            stdout(&score_in(&fixtures(), &[args.as_slice(), &["--json", "--width", "4"][..]].concat()));
        let want = run["sacrebleu_json"].as_str().expect("json output");
        // The acceptance bound first, so that a failure says which score is off ...
        let (got_docs, want_docs): (Value, Value) = (
            serde_json::from_str(&json).expect("locus prints JSON"),
            serde_json::from_str(want).expect("JSON"),
        );
        for (got, want) in
            got_docs.as_array().expect("a list").iter().zip(want_docs.as_array().expect("a list"))
        {
            let (got_score, want_score) =
                (got["score"].as_f64().expect("score"), want["score"].as_f64().expect("score"));
            assert!((got_score - want_score).abs() < 0.01, "{command}: {got} vs {want}");
            assert_eq!(got["signature"], want["signature"], "{command}");
        }
        // ... then the whole output.
        assert_eq!(json, want, "{command}");

        let command = run["sacrebleu_text_command"].as_str().expect("command");
        let text = stdout(&score_in(&fixtures(), &args));
        assert_eq!(text, run["sacrebleu_text"].as_str().expect("text output"), "{command}");
    }
}

#[test]
fn one_metric_prints_one_document_and_references_may_be_listed_after_one_flag() {
    let dir = fixtures();
    let both = ["--hyp", "mixed.hyp", "--ref", "mixed.ref", "mixed.ref2", "--tokenize", "intl"];
    let ter = stdout(&score_in(
        &dir,
        &[both.as_slice(), &["--metrics", "ter", "--json", "--width", "4"][..]].concat(),
    ));
    let all = stdout(&score_in(
        &dir,
        &[
            "--hyp",
            "mixed.hyp",
            "--ref",
            "mixed.ref",
            "--ref",
            "mixed.ref2",
            "--tokenize",
            "intl",
            "--json",
            "--width",
            "4",
        ],
    ));
    let ter: Value = serde_json::from_str(&ter).expect("JSON");
    let all: Value = serde_json::from_str(&all).expect("JSON");
    assert_eq!(ter["name"], "TER", "a single document, not a list: {ter}");
    assert_eq!(ter, all[2]);

    // Metrics come in sacreBLEU's order, once each, whatever order they are asked in.
    let text = stdout(&score_in(&dir, &[both.as_slice(), &["--metrics", "ter,bleu,ter"][..]].concat()));
    let names: Vec<&str> =
        text.lines().map(|line| line.trim_start().split('|').next().unwrap_or("")).collect();
    assert_eq!(names, ["BLEU", "TER"], "{text}");
}

#[test]
fn gzip_files_are_read_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(fixtures().join("zh.ref")).unwrap();
    let gz = dir.path().join("zh.ref.gz");
    let mut encoder =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    encoder.write_all(&plain).unwrap();
    encoder.finish().unwrap();
    let hyp = fixtures().join("zh.hyp");
    let (hyp, gz) = (hyp.to_str().unwrap(), gz.to_str().unwrap());
    let from_gz = stdout(&score_in(dir.path(), &["--hyp", hyp, "--ref", gz, "--tokenize", "zh"]));
    let from_plain =
        stdout(&score_in(&fixtures(), &["--hyp", "zh.hyp", "--ref", "zh.ref", "--tokenize", "zh"]));
    assert_eq!(from_gz, from_plain);
}

#[test]
fn unreadable_files_and_differing_line_counts_are_errors_naming_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let hyp = write("sys.txt", b"a b\nc d\ne f\n");
    let short_ref = write("short.ref", b"a b\nc d\n");
    let good_ref = write("good.ref", b"a b\nc d\ne f\n");
    let empty = write("empty.txt", b"");
    let latin1 = write("latin1.ref", b"a b\nc \xe9\ne f\n");
    let missing = dir.path().join("missing.ref").to_str().unwrap().to_owned();

    let failure = |args: &[&str]| {
        let output = score_in(dir.path(), args);
        assert!(!output.status.success(), "{args:?} should fail");
        stderr(&output)
    };

    let err = failure(&["--hyp", &hyp, "--ref", &good_ref, "--ref", &short_ref]);
    assert!(err.contains(&short_ref) && err.contains(&hyp), "{err}");
    assert!(err.contains("2 lines") && err.contains("have 3"), "{err}");

    let err = failure(&["--hyp", &hyp, "--ref", &missing]);
    assert!(err.contains("cannot read") && err.contains(&missing), "{err}");

    let err = failure(&["--hyp", &empty, "--ref", &good_ref]);
    assert!(err.contains(&empty) && err.contains("no lines"), "{err}");

    let err = failure(&["--hyp", &hyp, "--ref", &latin1]);
    assert!(err.contains(&latin1) && err.contains("line 2"), "{err}");

    let err = failure(&["--hyp", &hyp, "--ref", &good_ref, "--tokenize", "ja-mecab"]);
    assert!(err.contains("13a") && err.contains("intl"), "the choices are listed: {err}");

    let err = failure(&["--hyp", &hyp]);
    assert!(err.contains("--ref"), "{err}");
}
