//! End-to-end runs of the `locus` binary on tiny generated data in a temporary directory:
//! train from `configs/tiny.toml`, translate, evaluate, and the errors users hit first.

mod common;

use common::{data_overrides, locus, stderr, tiny_config, train_args, with_sets, write_corpus};

#[test]
fn train_translate_evaluate_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let config = tiny_config().display().to_string();
    let overrides = data_overrides(dir.path());
    let out = locus(&train_args(&config, &overrides));
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    let run = dir.path().join("run");
    for file in
        ["config.toml", "tokenizer.json", "metrics.jsonl", "last/model.safetensors", "best/model.safetensors"]
    {
        assert!(run.join(file).exists(), "missing {file}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(records.iter().any(|r| r["event"] == "train" && r["step"] == 20));
    assert!(records.iter().any(|r| r["event"] == "valid" && r["ppl"].as_f64().unwrap() > 1.0));

    // A fresh run never overwrites an existing one.
    let out = locus(&train_args(&config, &overrides));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already holds a run"), "{}", stderr(&out));

    // Translate a file with an empty line in the middle: three lines in, three lines out.
    let input = dir.path().join("input.de");
    std::fs::write(&input, "ein hund läuft\n\nzwei kinder spielen ball\n").unwrap();
    let output = dir.path().join("output.en");
    let checkpoint = run.join("best").display().to_string();
    let out = locus(&[
        "translate",
        "--checkpoint",
        &checkpoint,
        "--input",
        &input.display().to_string(),
        "--output",
        &output.display().to_string(),
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "translate failed: {}", stderr(&out));
    let translations = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = translations.lines().collect();
    assert_eq!(lines.len(), 3, "{translations:?}");
    assert_eq!(lines[1], "");

    // Evaluate prints one JSON object with the promised keys, decoding as translate does.
    let hyps = dir.path().join("hyps.txt");
    let out = locus(&[
        "evaluate",
        "--checkpoint",
        &checkpoint,
        "--src",
        &input.display().to_string(),
        "--ref",
        &output.display().to_string(),
        "--json",
        "--device",
        "cpu",
        "--hypotheses",
        &hyps.display().to_string(),
    ]);
    assert!(out.status.success(), "evaluate failed: {}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["bleu", "chrf", "loss", "ppl", "sentences"] {
        assert!(record.get(key).is_some(), "missing {key} in {record}");
    }
    assert_eq!(record["sentences"], 3);
    // The references are the model's own translations, so the scores are perfect.
    assert_eq!(std::fs::read_to_string(&hyps).unwrap(), translations);
    assert_eq!(record["chrf"].as_f64().unwrap(), 100.0);

    // `pe show` draws what the checkpoint's decoder uses.
    let picture = dir.path().join("pe.svg");
    let out = locus(&[
        "pe",
        "show",
        "--checkpoint",
        &checkpoint,
        "--stack",
        "decoder",
        "--len",
        "16",
        "--out",
        &picture.display().to_string(),
    ]);
    assert!(out.status.success(), "pe show failed: {}", stderr(&out));
    assert!(std::fs::read_to_string(&picture).unwrap().contains("sinusoidal table"));
}

#[test]
fn missing_checkpoint_is_named() {
    let out = locus(&["translate", "--checkpoint", "/nonexistent/run/best", "--device", "cpu"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/run/best") && err.contains("does not exist"), "{err}");
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    let text =
        std::fs::read_to_string(tiny_config()).unwrap().replace("d_ff = 64", "d_ff = 64\ndropuot = 0.3");
    std::fs::write(&config, text).unwrap();
    let out = locus(&["train", "--config", &config.display().to_string(), "--device", "cpu"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.toml") && err.contains("dropuot"), "{err}");
}

#[test]
fn impossible_shape_is_named() {
    let out = locus(&[
        "train",
        "--config",
        &tiny_config().display().to_string(),
        "--set",
        "model.n_heads=5",
        "--device",
        "cpu",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("model.d_model (32) must be divisible by model.n_heads (5)"), "{err}");
}

#[test]
fn mismatched_parallel_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    std::fs::write(dir.path().join("train.en"), "ONE LINE\nTWO LINES\n").unwrap();
    let config = tiny_config().display().to_string();
    let overrides = data_overrides(dir.path());
    let out = locus(&train_args(&config, &overrides));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("train.de") && err.contains("train.en"), "{err}");
    assert!(err.contains("200") && err.contains('2'), "{err}");
}

#[test]
fn invalid_utf8_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let mut bytes = std::fs::read(dir.path().join("train.de")).unwrap();
    let third_line = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(1).unwrap().0 + 1;
    bytes.insert(third_line, 0xff);
    std::fs::write(dir.path().join("train.de"), bytes).unwrap();
    let config = tiny_config().display().to_string();
    let overrides = data_overrides(dir.path());
    let out = locus(&train_args(&config, &overrides));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("train.de:3") && err.contains("invalid UTF-8"), "{err}");
}

/// A CPU-only build names the missing cargo feature when asked for a GPU.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_cuda_device_on_a_cpu_build_names_the_feature() {
    let out =
        locus(&["bench", "train", "--config", &tiny_config().display().to_string(), "--device", "cuda:1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("opening CUDA device 1 (this binary was built without --features cuda)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn prepare_then_train_from_the_prepared_dataset() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let config = tiny_config().display().to_string();
    let overrides = data_overrides(dir.path());
    let prepared = dir.path().join("prepared").display().to_string();
    let args =
        with_sets(vec!["prepare", "--config", config.as_str(), "--out", prepared.as_str()], &overrides);
    let out = locus(&args);
    assert!(out.status.success(), "prepare failed: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("train: kept 200 of 200 pairs") && err.contains("pairs/s; wrote"), "{err}");
    for file in ["manifest.json", "tokenizer.json", "train-00000.bin", "train-00000.idx", "valid.src.txt"] {
        assert!(dir.path().join("prepared").join(file).is_file(), "missing {file}");
    }

    // An existing directory is never overwritten.
    let out = locus(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // Training from it, with the raw files gone.
    for name in ["train.de", "train.en", "valid.de", "valid.en"] {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let mut overrides = overrides;
    overrides.push(format!("data.prepared={prepared}"));
    let out = locus(&train_args(&config, &overrides));
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    assert!(dir.path().join("run/last/model.safetensors").is_file());
    assert!(!dir.path().join("run/prepared").exists());
}
