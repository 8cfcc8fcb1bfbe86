//! Issue 19: `locus translate` on hostile input. Empty and whitespace-only lines, a
//! 100,000-character line, control characters, mixed scripts and emoji give exactly one output
//! line per input line, in order; invalid UTF-8 is an error naming the file and line unless
//! `--lossy`; `--max-len` caps every output.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{data_overrides, locus, stderr, tiny_config, train_args, write_corpus};
use serde_json::Value;

/// Trains the tiny config on the generated corpus; returns its best checkpoint.
fn trained_checkpoint(dir: &Path) -> PathBuf {
    write_corpus(dir);
    let config = tiny_config().display().to_string();
    let overrides = data_overrides(dir);
    let out = locus(&train_args(&config, &overrides));
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    dir.join("run/best")
}

/// `locus translate --device cpu --checkpoint CHECKPOINT --input INPUT EXTRA...`.
fn translate(checkpoint: &Path, input: &Path, extra: &[&str]) -> Output {
    let (checkpoint, input) = (checkpoint.display().to_string(), input.display().to_string());
    let args = ["translate", "--device", "cpu", "--checkpoint", &checkpoint, "--input", &input];
    locus(&[&args[..], extra].concat())
}

/// The lines of a successful run's stdout.
fn output_lines(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "translate failed ({}): {}", out.status, stderr(out));
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn issue_19_hostile_lines_give_one_output_line_each_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = trained_checkpoint(dir.path());
    let long = "x".repeat(100_000);
    let lines = [
        "ein hund läuft",
        "",
        " \t  ",
        long.as_str(),
        "zwei\u{0}kinder\u{1b}[31m\u{7} spielen\u{7f}\u{85}",
        "Ελληνικά русский 中文 العربية हिन्दी 🐕🏳️‍🌈 ball",
        "\u{1}\u{2}",
        "a\rb\u{2028}c",
        "<unk> </s> <s> <pad>",
        "die wiese",
    ];
    let input = dir.path().join("hostile.de");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let out = translate(&checkpoint, &input, &[]);
    let text = output_lines(&out);
    assert_eq!(text.len(), lines.len(), "{text:?}");
    assert!(text[1].is_empty() && text[2].is_empty(), "{text:?}");
    // The long line is cropped with a warning naming it, not a crash.
    let warnings = stderr(&out);
    let cropped =
        format!("{}:4: the source is longer than 1024 tokens; translating its first 1024", input.display());
    assert!(warnings.contains(&cropped), "{warnings}");

    // In order: every line translates as it does alone, and JSON lines count 1, 2, ...
    let jsonl = output_lines(&translate(&checkpoint, &input, &["--format", "jsonl", "--batch-size", "3"]));
    let records: Vec<Value> = jsonl.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), lines.len());
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["line"], i + 1);
        assert_eq!(record["translation"], text[i].as_str(), "line {}", i + 1);
    }
    for i in [0, 4, 5, 9] {
        let alone = dir.path().join("alone.de");
        std::fs::write(&alone, format!("{}\n", lines[i])).unwrap();
        assert_eq!(output_lines(&translate(&checkpoint, &alone, &[])), [text[i].as_str()], "line {}", i + 1);
    }

    // Beam search takes the same input.
    let beam = output_lines(&translate(&checkpoint, &input, &["--beam", "2", "--nbest", "2"]));
    let numbers: Vec<usize> = beam.iter().map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect();
    assert_eq!(numbers, [1, 1, 2, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10], "{beam:?}");
}

#[test]
fn issue_19_invalid_utf8_is_an_error_naming_the_line_unless_lossy() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = trained_checkpoint(dir.path());
    let input = dir.path().join("bad.de");
    std::fs::write(&input, b"ein hund\nzwei \xff kinder\nball\n").unwrap();

    // A file: the error names file and line before anything is written.
    let output = dir.path().join("out.en");
    let out = translate(&checkpoint, &input, &["--output", &output.display().to_string()]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains(&format!("{}:2: invalid UTF-8", input.display())), "{message}");
    assert!(message.contains("--lossy"), "{message}");
    assert!(!output.exists());

    // --lossy translates every line, warning about the one it repaired.
    let out = translate(&checkpoint, &input, &["--lossy"]);
    assert_eq!(output_lines(&out).len(), 3);
    assert!(stderr(&out).contains(&format!("{}:2: invalid UTF-8 replaced by U+FFFD", input.display())));

    // Stdin: the lines before the bad one are translated, then the error names the line.
    let checkpoint = checkpoint.display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["translate", "--device", "cpu", "--checkpoint", &checkpoint])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ein hund\nzwei \xff kinder\nball\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(stderr(&out).contains("<stdin>:2: invalid UTF-8"), "{}", stderr(&out));
}

#[test]
fn issue_19_max_len_caps_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = trained_checkpoint(dir.path());
    let input = dir.path().join("long.de");
    let sentence = "ein hund läuft über die wiese zwei kinder spielen ball ".repeat(8);
    std::fs::write(&input, format!("{sentence}\nein hund\n{}\n", "x".repeat(3000))).unwrap();
    for search in [&["--beam", "1"][..], &["--beam", "3"], &["--sample", "--seed", "2"]] {
        let text = output_lines(&translate(&checkpoint, &input, &[&["--max-len", "3"][..], search].concat()));
        assert_eq!(text.len(), 3);
        // An output of at most 3 subword tokens has at most 3 words.
        assert!(text.iter().all(|line| line.split_whitespace().count() <= 3), "{search:?}: {text:?}");
    }
    let out = translate(&checkpoint, &input, &["--max-len", "0"]);
    assert!(stderr(&out).contains("--max-len and --max-source-len must be at least 1"), "{}", stderr(&out));
}
