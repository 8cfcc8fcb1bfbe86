//! `locus translate` and `locus evaluate` with the search options: n-best lists and scores in
//! both output formats, seeded sampling, answers streamed line by line from a pipe, clear
//! errors for contradictory options and incompatible checkpoints, and several checkpoints
//! scored in one table; `--quantize int8` decodes with the int8 model; `locus attention`
//! draws what the model attends to.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{copy_checkpoint, data_overrides, locus, reseal, stderr, tiny_config, train_args, write_corpus};
use serde_json::Value;

/// Trains the tiny config on the generated corpus; returns the run directory.
fn trained_run(dir: &Path) -> PathBuf {
    write_corpus(dir);
    let config = tiny_config().display().to_string();
    let overrides = data_overrides(dir);
    let out = locus(&train_args(&config, &overrides));
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    dir.join("run")
}

fn translate(checkpoint: &Path, input: &Path, extra: &[&str]) -> String {
    let mut args = vec!["translate", "--device", "cpu", "--checkpoint"];
    let (checkpoint, input) = (checkpoint.display().to_string(), input.display().to_string());
    args.extend([checkpoint.as_str(), "--input", input.as_str()]);
    args.extend(extra);
    let out = locus(&args);
    assert!(out.status.success(), "translate {extra:?} failed: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn nbest_scores_formats_and_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let input = dir.path().join("input.de");
    std::fs::write(&input, "ein hund läuft\n\nzwei kinder spielen ball\n").unwrap();
    let best = run.join("best");

    // Text n-best: three lines per input line, `LINE<TAB>SCORE<TAB>TRANSLATION`, best first.
    let text = translate(&best, &input, &["--beam", "3", "--nbest", "3"]);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(3, '\t').collect()).collect();
    let lines: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(lines, ["1", "1", "1", "2", "3", "3", "3"], "{text}");
    for group in [&rows[0..3], &rows[4..7]] {
        let scores: Vec<f64> = group.iter().map(|r| r[1].parse().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{text}");
        assert!(group[0][2] != group[1][2] && group[1][2] != group[2][2], "{text}");
    }

    // JSON lines: one object per input line, with the n-best list.
    let jsonl = translate(&best, &input, &["--beam", "3", "--nbest", "2", "--format", "jsonl"]);
    let records: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[2]["line"], 3);
    assert_eq!(records[2]["nbest"].as_array().unwrap().len(), 2);
    assert_eq!(records[2]["nbest"][0]["translation"], records[2]["translation"]);
    assert_eq!(records[1]["translation"], "");

    // --scores puts the score before each best translation; greedy scores are log-probabilities.
    let scored = translate(&best, &input, &["--scores"]);
    let first: Vec<&str> = scored.lines().next().unwrap().splitn(2, '\t').collect();
    assert!(first[0].parse::<f64>().unwrap() < 0.0, "{scored}");

    // The same seed samples the same translations.
    let sampled =
        |seed: &str| translate(&best, &input, &["--sample", "--nbest", "2", "--seed", seed, "--top-k", "5"]);
    assert_eq!(sampled("3"), sampled("3"));
}

/// `--quantize int8` reaches the model: `translate` scores its translations with int8 products
/// (close to the f32 scores, and not equal), `evaluate` scores with it, and an unknown
/// quantization is refused naming the value.
#[test]
fn int8_decoding_scores_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let input = dir.path().join("input.de");
    std::fs::write(&input, "ein hund läuft\nzwei kinder spielen ball\n").unwrap();
    let best = run.join("best");
    let scores = |extra: &[&str]| -> Vec<f64> {
        let text = translate(&best, &input, &[&["--scores", "--max-len", "1"], extra].concat());
        text.lines().map(|line| line.split('\t').next().unwrap().parse().unwrap()).collect()
    };
    // At most one output token each (--max-len 1): each score is one or two tokens' log-probabilities.
    let (f32, int8) = (scores(&[]), scores(&["--quantize", "int8"]));
    for (a, b) in f32.iter().zip(&int8) {
        assert!(a != b && (a - b).abs() < 0.05 * a.abs().max(1.0), "f32 {f32:?}, int8 {int8:?}");
    }
    let (checkpoint, input) = (best.display().to_string(), input.display().to_string());
    let evaluate =
        ["evaluate", "--device", "cpu", "--checkpoint", &checkpoint, "--src", &input, "--ref", &input];
    let out = locus(&[&evaluate[..], &["--quantize", "int8", "--json"]].concat());
    assert!(out.status.success(), "evaluate --quantize int8 failed: {}", stderr(&out));
    let out = locus(&[&evaluate[..], &["--quantize", "int4"]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid value 'int4' for '--quantize"), "{}", stderr(&out));
}

#[test]
fn stdin_is_translated_line_by_line_as_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let checkpoint = run.join("best").display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["translate", "--device", "cpu", "--checkpoint", &checkpoint])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Each answer comes back while stdin is still open: nothing waits for the end of input.
    for sentence in ["ein hund läuft", "zwei kinder"] {
        writeln!(stdin, "{sentence}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        stdout.read_line(&mut answer).unwrap();
        assert!(answer.ends_with('\n') && !answer.trim().is_empty(), "{answer:?}");
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn contradictory_options_and_incompatible_checkpoints_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let input = dir.path().join("input.de");
    std::fs::write(&input, "ein hund\n").unwrap();
    let checkpoint = run.join("best").display().to_string();
    let input_arg = input.display().to_string();
    let base = ["translate", "--device", "cpu", "--checkpoint", &checkpoint, "--input", &input_arg];
    let fails = |extra: &[&str], want: &str| {
        let out = locus(&[&base[..], extra].concat());
        assert!(!out.status.success());
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    };
    fails(&["--nbest", "3"], "--nbest (3) needs --beam at least as large (it is 1)");
    fails(&["--sample", "--beam", "4"], "it does not take --beam (4)");
    fails(&["--rope-scaling", "linear:0.5"], "must be a number ≥ 1");
    fails(&["--rope-scaling", "ntk:2"], "needs a rope encoding, but the encoder uses sinusoidal");

    // A checkpoint whose config does not describe its weights.
    let edited = dir.path().join("edited");
    copy_checkpoint(&run.join("best"), &edited);
    let config = std::fs::read_to_string(edited.join("config.toml")).unwrap();
    std::fs::write(edited.join("config.toml"), config.replace("d_ff = 64", "d_ff = 96")).unwrap();
    reseal(&edited);
    let edited_arg = edited.display().to_string();
    let out = locus(&["translate", "--device", "cpu", "--checkpoint", &edited_arg, "--input", &input_arg]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("weights do not match its config.toml"), "{}", stderr(&out));
}

/// `--rope-scaling` reaches the model: a RoPE model's scores change under each scaling, and
/// `evaluate` takes it too.
#[test]
fn rope_scaling_changes_a_rope_models_scores() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let config = tiny_config().display().to_string();
    let mut overrides = data_overrides(dir.path());
    overrides.push("model.positional.kind=rope".to_owned());
    let out = locus(&train_args(&config, &overrides));
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    let best = dir.path().join("run/best");
    let input = dir.path().join("input.de");
    std::fs::write(&input, "ein hund läuft über die wiese zwei kinder spielen ball ein hund\n").unwrap();
    let score = |extra: &[&str]| -> f64 {
        let scored = translate(&best, &input, &[&["--scores"], extra].concat());
        scored.split('\t').next().unwrap().parse().unwrap()
    };
    let plain = score(&[]);
    for scaling in ["linear:4", "ntk:4", "yarn:4:8"] {
        let scaled = score(&["--rope-scaling", scaling]);
        assert!((scaled - plain).abs() > 1e-6, "{scaling}: {scaled} against {plain}");
    }
    let (checkpoint, input) = (best.display().to_string(), input.display().to_string());
    let out = locus(&[
        "evaluate",
        "--device",
        "cpu",
        "--checkpoint",
        &checkpoint,
        "--src",
        &input,
        "--ref",
        &input,
        "--rope-scaling",
        "linear:2",
    ]);
    assert!(out.status.success(), "evaluate --rope-scaling failed: {}", stderr(&out));
}

#[test]
fn several_checkpoints_make_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let (best, last) = (run.join("best").display().to_string(), run.join("last").display().to_string());
    let (src, reference) = (
        dir.path().join("valid.de").display().to_string(),
        dir.path().join("valid.en").display().to_string(),
    );
    let hyps = dir.path().join("hyps");
    let hyps_arg = hyps.display().to_string();
    let args =
        ["evaluate", "--device", "cpu", "--src", &src, "--ref", &reference, "--checkpoint", &best, &last];
    let out = locus(&[&args[..], &["--beam", "2", "--hypotheses", &hyps_arg]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("checkpoint") && lines[0].contains("BLEU") && lines[0].contains("TER"),
        "{table}"
    );
    assert!(lines[1].starts_with(&best) && lines[2].starts_with(&last), "{table}");
    assert!(table.contains("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"), "{table}");
    assert_eq!(std::fs::read_dir(&hyps).unwrap().count(), 2);

    let out = locus(&[&args[..], &["--json"]].concat());
    let records: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r["ter"].as_f64().is_some() && r["sentences"] == 200));
    assert_eq!(
        records[0]["ter_signature"],
        "nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0"
    );
}

/// `locus attention` draws, for the sentence and the translation `locus translate` gives it, a
/// panel per stack, layer and head (encoder self-, decoder self- and cross-attention), with
/// the tokens on the axes; `--layer` and `--head` pick one, and `--tgt` draws a given
/// translation. Whether the maps are the model's is tested on the model (`attention_maps`).
#[test]
fn attention_draws_every_head_of_the_translation() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let checkpoint = run.join("best").display().to_string();
    let sentence = "ein hund läuft über die wiese";
    let input = dir.path().join("input.de");
    std::fs::write(&input, format!("{sentence}\n")).unwrap();
    let translation = translate(&run.join("best"), &input, &[]);
    let attention = |extra: &[&str]| {
        let args = [&["attention", "--checkpoint", &checkpoint, "--src", sentence], extra].concat();
        locus(&args)
    };

    // Every layer and head of the tiny model (1 + 1 layers, 4 heads): 3 rows of 4 panels, each
    // 420 × 380 pixels and 72 more each way for the token labels.
    let png = dir.path().join("all.png");
    let out = attention(&["--out", &png.display().to_string()]);
    assert!(out.status.success(), "attention failed: {}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), translation, "the translation drawn");
    let image = image::open(&png).unwrap();
    assert_eq!((image.width(), image.height()), (4 * 492, 3 * 452));

    // One head: three panels, titled, with the source's tokens and the target's EOS as labels.
    let svg = dir.path().join("one.svg");
    let out =
        attention(&["--layer", "0", "--head", "3", "--tgt", "EIN HUND", "--out", &svg.display().to_string()]);
    assert!(out.status.success(), "attention --head failed: {}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "EIN HUND\n");
    let svg = std::fs::read_to_string(&svg).unwrap();
    for title in ["encoder self-attention, layer 0, head 3", "decoder self-attention, layer 0, head 3"] {
        assert!(svg.contains(title), "no panel '{title}'");
    }
    assert!(svg.contains("cross-attention, layer 0, head 3"));
    for label in ["&lt;s&gt;", "&lt;/s&gt;", "query (the token it predicts)", "key (source token)"] {
        assert!(svg.contains(label), "no label {label}");
    }

    // Bad requests are named.
    let png = png.display().to_string();
    for (extra, named) in [
        (&["--layer", "1", "--out", &png][..], "--layer 1"),
        (&["--head", "4", "--out", &png][..], "--head 4"),
        (&["--out", "picture.pdf"][..], "picture.pdf"),
    ] {
        let out = attention(extra);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(stderr(&out).contains(named), "{extra:?}: {}", stderr(&out));
    }
    let out = locus(&["attention", "--checkpoint", &checkpoint, "--src", "  ", "--out", &png]);
    assert!(!out.status.success() && stderr(&out).contains("--src is blank"), "{}", stderr(&out));
}
