//! `locus average`: the element-wise mean of checkpoints' weights, written as a checkpoint that
//! `translate` accepts; `--last N` picks the newest; mismatched inputs and an occupied output
//! directory are refused with errors naming what is wrong.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::{copy_checkpoint, data_overrides, locus, reseal, stderr, tiny_config, train_args, write_corpus};
use serde_json::Value;

/// Trains the tiny config for 3 updates in `dir/run`, checkpointing after each; returns the run.
fn train_three_steps(dir: &Path) -> PathBuf {
    write_corpus(dir);
    let config = tiny_config().display().to_string();
    let mut overrides = data_overrides(dir);
    overrides.extend(["train.max_steps=3", "train.save_interval=1", "train.keep_last=10"].map(String::from));
    let out = locus(&train_args(&config, &overrides));
    assert!(out.status.success(), "train failed: {}", stderr(&out));
    dir.join("run")
}

fn step(run: &Path, step: usize) -> PathBuf {
    run.join("checkpoints").join(format!("step-{step:08}"))
}

fn weights(checkpoint: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(checkpoint.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn flat(tensor: &Tensor) -> Vec<f32> {
    tensor.flatten_all().unwrap().to_vec1().unwrap()
}

/// `locus average ARGS...`, with paths.
fn average(args: &[&Path]) -> std::process::Output {
    let mut all = vec!["average".to_string()];
    all.extend(args.iter().map(|p| p.display().to_string()));
    locus(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `average.json`'s checkpoint paths, as steps.
fn averaged_steps(out: &Path) -> Vec<u64> {
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("average.json")).unwrap()).unwrap();
    record["checkpoints"].as_array().unwrap().iter().map(|c| c["step"].as_u64().unwrap()).collect()
}

#[test]
fn averaging_two_checkpoints_gives_the_element_wise_mean() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_three_steps(dir.path());
    let (a, b) = (step(&run, 1), step(&run, 3));
    let out = dir.path().join("averaged");
    let result = average(&[Path::new("--out"), &out, &a, &b]);
    assert!(result.status.success(), "average failed: {}", stderr(&result));
    let log = stderr(&result);
    assert!(log.contains("averaged 2 checkpoints") && log.contains(&out.display().to_string()), "{log}");

    let (wa, wb, mean) = (weights(&a), weights(&b), weights(&out));
    assert_eq!(mean.len(), wa.len());
    let mut changed = false;
    for (name, m) in &mean {
        assert_eq!(m.dtype(), wa[name].dtype(), "{name}");
        assert_eq!(m.dims(), wa[name].dims(), "{name}");
        let (xa, xb, xm) = (flat(&wa[name]), flat(&wb[name]), flat(m));
        for ((x, y), z) in xa.iter().zip(&xb).zip(&xm) {
            assert!((z - (x + y) / 2.0).abs() <= 1e-6, "{name}: mean of {x} and {y} is not {z}");
        }
        changed |= xa != xb;
    }
    assert!(changed, "training changed no weight between steps 1 and 3");

    // config.toml and tokenizer.json of the first, state.json of the newest, no optimizer.
    for file in ["config.toml", "tokenizer.json"] {
        assert_eq!(std::fs::read(out.join(file)).unwrap(), std::fs::read(a.join(file)).unwrap(), "{file}");
    }
    assert_eq!(std::fs::read(out.join("state.json")).unwrap(), std::fs::read(b.join("state.json")).unwrap());
    assert!(!out.join("optimizer.safetensors").exists());
    assert_eq!(averaged_steps(&out), [1, 3]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The average is a checkpoint `translate` accepts.
    let input = dir.path().join("input.de");
    std::fs::write(&input, "ein hund läuft\nzwei kinder spielen ball\n").unwrap();
    let translated = locus(&[
        "translate",
        "--checkpoint",
        &out.display().to_string(),
        "--input",
        &input.display().to_string(),
        "--device",
        "cpu",
    ]);
    assert!(translated.status.success(), "translate failed: {}", stderr(&translated));
    assert_eq!(String::from_utf8_lossy(&translated.stdout).lines().count(), 2);

    // One checkpoint averages to a copy of its weights.
    let single = dir.path().join("single");
    let result = average(&[Path::new("--out"), &single, &b]);
    assert!(result.status.success(), "average failed: {}", stderr(&result));
    let copied = weights(&single);
    for (name, tensor) in &wb {
        assert_eq!(flat(&copied[name]), flat(tensor), "{name}");
    }
}

#[test]
fn last_n_picks_the_newest_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_three_steps(dir.path());
    let out = dir.path().join("last2");
    let result = average(&[Path::new("--out"), &out, Path::new("--last"), Path::new("2"), &run]);
    assert!(result.status.success(), "average failed: {}", stderr(&result));
    assert_eq!(averaged_steps(&out), [2, 3]);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 3);

    // More than there are: the error says how many there are.
    let result =
        average(&[Path::new("--out"), &dir.path().join("last5"), Path::new("--last"), Path::new("5"), &run]);
    assert!(!result.status.success());
    let err = stderr(&result);
    assert!(err.contains("holds 3 checkpoints, fewer than the 5"), "{err}");
    assert!(!dir.path().join("last5").exists());
}

#[test]
fn mismatched_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_three_steps(dir.path());
    let first = step(&run, 1);
    let out = dir.path().join("averaged");
    let refused = |other: &Path| {
        let result = average(&[Path::new("--out"), &out, &first, other]);
        assert!(!result.status.success(), "averaging {} succeeded", other.display());
        assert!(!out.exists(), "a failed average left {}", out.display());
        let err = stderr(&result);
        assert!(err.contains(&other.display().to_string()), "{err}");
        err
    };

    // A tensor of another shape, hand-edited into a copy of step 2.
    let reshaped = dir.path().join("reshaped");
    copy_checkpoint(&step(&run, 2), &reshaped);
    let mut tensors = weights(&reshaped);
    let mut names: Vec<String> = tensors.keys().filter(|n| tensors[*n].rank() == 2).cloned().collect();
    names.sort();
    let name = names[0].clone();
    let (rows, cols) = tensors[&name].dims2().unwrap();
    tensors.insert(
        name.clone(),
        Tensor::zeros((rows + 1, cols), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, reshaped.join("model.safetensors")).unwrap();
    reseal(&reshaped);
    let err = refused(&reshaped);
    let expected = format!("tensor `{name}` has shape [{}, {cols}], but [{rows}, {cols}]", rows + 1);
    assert!(err.contains(&expected), "{err}");

    // A different [model] section.
    let wider = dir.path().join("wider");
    copy_checkpoint(&step(&run, 2), &wider);
    let config = std::fs::read_to_string(wider.join("config.toml")).unwrap();
    assert!(config.contains("d_ff = 64"), "{config}");
    std::fs::write(wider.join("config.toml"), config.replace("d_ff = 64", "d_ff = 128")).unwrap();
    reseal(&wider);
    let err = refused(&wider);
    assert!(err.contains("[model]") && err.contains("model.d_ff is 128, not 64"), "{err}");

    // A different tokenizer.
    let retokenized = dir.path().join("retokenized");
    copy_checkpoint(&step(&run, 2), &retokenized);
    let mut tokenizer: Value =
        serde_json::from_str(&std::fs::read_to_string(retokenized.join("tokenizer.json")).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    let size = vocab.len();
    vocab.insert("zzz".into(), Value::from(size));
    std::fs::write(retokenized.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    reseal(&retokenized);
    let err = refused(&retokenized);
    assert!(
        err.contains("tokenizer.json") && err.contains(&format!("{} entries, not {size}", size + 1)),
        "{err}"
    );

    // The same checkpoint twice, also through a link.
    let err = refused(&first);
    assert!(err.contains("given twice"), "{err}");
    let result = average(&[Path::new("--out"), &out, &step(&run, 3), &run.join("last")]);
    assert!(!result.status.success());
    assert!(stderr(&result).contains("given twice"), "{}", stderr(&result));
}

#[test]
fn existing_output_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_three_steps(dir.path());
    let out = dir.path().join("occupied");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let result = average(&[Path::new("--out"), &out, &step(&run, 2), &step(&run, 3)]);
    assert!(!result.status.success());
    let err = stderr(&result);
    assert!(err.contains(&out.display().to_string()) && err.contains("exists and is not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "keep me");

    // An empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let result = average(&[Path::new("--out"), &empty, &step(&run, 2), &step(&run, 3)]);
    assert!(result.status.success(), "average failed: {}", stderr(&result));
    assert!(empty.join("model.safetensors").is_file());
}
