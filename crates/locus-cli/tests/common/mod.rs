//! Helpers shared by the binary's integration tests: running `locus`, the tiny config and a
//! small generated corpus.
#![allow(dead_code)] // Each test file uses its own subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `locus` with `args` to completion.
pub fn locus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus")).args(args).output().expect("running locus")
}

/// What a finished `locus` printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `configs/tiny.toml`.
pub fn tiny_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")
}

/// Writes a small "translation" corpus: each target is the source's words in upper case.
pub fn write_corpus(dir: &Path) {
    let words = ["ein", "hund", "läuft", "über", "die", "wiese", "zwei", "kinder", "spielen", "ball"];
    let mut src = String::new();
    let mut tgt = String::new();
    for i in 0..200 {
        let sentence: Vec<&str> = (0..3 + i % 4).map(|j| words[(i * 7 + j * 3) % words.len()]).collect();
        src += &(sentence.join(" ") + "\n");
        tgt += &(sentence.join(" ").to_uppercase() + "\n");
    }
    for split in ["train", "valid"] {
        std::fs::write(dir.join(format!("{split}.de")), &src).unwrap();
        std::fs::write(dir.join(format!("{split}.en")), &tgt).unwrap();
    }
}

/// `--set` values pointing the tiny config at the corpus in `dir` and the run at `dir/run`.
pub fn data_overrides(dir: &Path) -> Vec<String> {
    let p = |name: &str| dir.join(name).display().to_string();
    vec![
        format!("data.train_src={}", p("train.de")),
        format!("data.train_tgt={}", p("train.en")),
        format!("data.valid_src={}", p("valid.de")),
        format!("data.valid_tgt={}", p("valid.en")),
        format!("train.out_dir={}", p("run")),
    ]
}

/// `args`, then `--set ITEM` for each of `overrides`.
pub fn with_sets<'a>(mut args: Vec<&'a str>, overrides: &'a [String]) -> Vec<&'a str> {
    for item in overrides {
        args.extend(["--set", item.as_str()]);
    }
    args
}

/// `train --config CONFIG --device cpu --set ...`.
pub fn train_args<'a>(config: &'a str, overrides: &'a [String]) -> Vec<&'a str> {
    with_sets(vec!["train", "--config", config, "--device", "cpu"], overrides)
}

/// Copies the checkpoint `from` to `to`, file by file.
pub fn copy_checkpoint(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Rewrites the manifest of the checkpoint in `dir` after a test edited its files on purpose,
/// so that the edit, not the checksums, is what `locus` reacts to.
pub fn reseal(dir: &Path) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let files = manifest["files"].as_object_mut().unwrap();
    for (name, entry) in files.iter_mut() {
        let now = locus_data::checksum::FileEntry::of(&dir.join(name)).unwrap();
        *entry = serde_json::to_value(now).unwrap();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}
