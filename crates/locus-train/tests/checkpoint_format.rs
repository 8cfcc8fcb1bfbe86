//! The checkpoint format ([`locus_train::checkpoint_format`]), through the public API:
//! - the format-1 fixture (committed: a checkpoint written before versions and checksums) loads
//!   and translates exactly as it did when it was written, greedy and beam 4, and a checkpoint
//!   saved from it is format 2 and translates the same;
//! - a format-0 state (the first trainer's `{step, valid_nll}`) is migrated: the checkpoint
//!   loads and translates, and resuming from it is refused, saying why;
//! - a format-2 checkpoint with a flipped bit in any file, a truncated file or a missing file
//!   is refused with an error naming the file and what differs; a newer format is refused.

mod common;

use std::path::Path;

use candle_core::Device;
use common::{copy_dir, fixture, fixture_checkpoint, save_as_today};
use locus_model::BeamOptions;
use locus_train::checkpoint_format::FORMAT_VERSION;
use locus_train::distributed::SingleProcess;
use locus_train::translate::Search;
use locus_train::{load_checkpoint, train, Checkpoint, TrainOptions, Translator};

/// `(score, translation)` of every fixture source line, as `locus translate --scores` prints
/// them (score to 4 decimals).
fn translate(checkpoint: &Checkpoint, beam: usize) -> Vec<(f64, String)> {
    let sources = std::fs::read_to_string(fixture().join("source.de")).unwrap();
    let lines: Vec<&str> = sources.lines().collect();
    let mut translator = Translator::new(&checkpoint.model, &checkpoint.tokenizer);
    if beam > 1 {
        translator.search = Search::Beam(BeamOptions { beam, ..BeamOptions::default() });
    }
    let translations = translator.translate_nbest(&lines, 0).unwrap();
    translations.into_iter().map(|mut nbest| nbest.swap_remove(0)).map(|t| (t.score, t.text)).collect()
}

/// The translations stored in the fixture's `file`.
fn expected(file: &str) -> Vec<(f64, String)> {
    let text = std::fs::read_to_string(fixture().join(file)).unwrap();
    let parse = |line: &str| {
        let (score, translation) = line.split_once('\t').unwrap();
        (score.parse().unwrap(), translation.to_string())
    };
    text.lines().map(parse).collect()
}

fn assert_translates_as_when_written(checkpoint: &Checkpoint) {
    for (beam, file) in [(1, "greedy.en"), (4, "beam4.en")] {
        let (got, want) = (translate(checkpoint, beam), expected(file));
        assert_eq!(got.len(), want.len());
        for ((got_score, got_text), (want_score, want_text)) in got.iter().zip(&want) {
            assert_eq!(got_text, want_text, "beam {beam}");
            assert!((got_score - want_score).abs() < 1e-3, "beam {beam}: score {got_score} vs {want_score}");
        }
    }
}

#[test]
fn the_format_1_fixture_loads_and_translates_as_when_it_was_written() {
    let checkpoint = load_checkpoint(&fixture_checkpoint(), &Device::Cpu).unwrap();
    assert_eq!((checkpoint.format_version, checkpoint.state.step), (1, 200));
    assert_translates_as_when_written(&checkpoint);

    let dir = tempfile::tempdir().unwrap();
    let saved = save_as_today(&checkpoint, dir.path());
    let reloaded = load_checkpoint(&saved, &Device::Cpu).unwrap();
    assert_eq!(reloaded.format_version, FORMAT_VERSION);
    assert_eq!(reloaded.state, checkpoint.state);
    assert_translates_as_when_written(&reloaded);
}

#[test]
fn a_format_0_state_is_migrated_and_cannot_be_resumed_from() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    copy_dir(&fixture_checkpoint(), &old);
    std::fs::remove_file(old.join("optimizer.safetensors")).unwrap();
    std::fs::write(old.join("state.json"), r#"{"step": 200, "valid_nll": 4.153}"#).unwrap();
    let checkpoint = load_checkpoint(&old, &Device::Cpu).unwrap();
    assert_eq!((checkpoint.format_version, checkpoint.state.step), (0, 200));
    assert_eq!((checkpoint.state.best.best, checkpoint.state.best.best_step), (Some(4.153), Some(200)));
    assert_translates_as_when_written(&checkpoint);

    let mut config = checkpoint.config.clone();
    config.train.out_dir = dir.path().join("resumed");
    config.train.max_steps = Some(201);
    let options = TrainOptions {
        progress: &locus_train::progress::silent,
        resume: Some(old.clone()),
        should_stop: &|_| false,
        comm: &SingleProcess,
    };
    let err = train(&config, &Device::Cpu, options).expect_err("resuming a format-0 checkpoint").to_string();
    assert!(err.contains("format version 0") && err.contains("cannot resume"), "{err}");
}

/// Loads `dir` and returns the error, which must name `file`.
fn refusal(dir: &Path, file: &str) -> String {
    let err = load_checkpoint(dir, &Device::Cpu).err().expect("a damaged checkpoint loaded").to_string();
    assert!(err.contains(&dir.join(file).display().to_string()), "{err}");
    err
}

#[test]
fn damaged_missing_or_newer_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = load_checkpoint(&fixture_checkpoint(), &Device::Cpu).unwrap();
    let saved = save_as_today(&fixture, &dir.path().join("run"));
    let manifest = std::fs::read_to_string(saved.join("manifest.json")).unwrap();
    let files = ["model.safetensors", "optimizer.safetensors", "config.toml", "tokenizer.json", "state.json"];
    for file in files {
        assert!(manifest.contains(&format!("\"{file}\"")), "{manifest}");
    }

    let fresh = |name: &str| {
        let copy = dir.path().join(name);
        copy_dir(&saved, &copy);
        copy
    };
    for file in files {
        // One bit in the middle of the file: the size stays, the checksum does not.
        let copy = fresh(&format!("flipped-{file}"));
        let mut bytes = std::fs::read(copy.join(file)).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(copy.join(file), bytes).unwrap();
        let err = refusal(&copy, file);
        assert!(err.contains("XXH3 checksum") && err.contains("damaged"), "{err}");
    }

    let copy = fresh("truncated");
    let weights = std::fs::read(copy.join("model.safetensors")).unwrap();
    std::fs::write(copy.join("model.safetensors"), &weights[..weights.len() - 100]).unwrap();
    let err = refusal(&copy, "model.safetensors");
    assert!(
        err.contains(&format!("{} bytes, but the manifest says {}", weights.len() - 100, weights.len())),
        "{err}"
    );

    let copy = fresh("missing");
    std::fs::remove_file(copy.join("optimizer.safetensors")).unwrap();
    assert!(refusal(&copy, "optimizer.safetensors").contains("cannot read it"));
    let copy = fresh("no-manifest");
    std::fs::remove_file(copy.join("manifest.json")).unwrap();
    assert!(refusal(&copy, "manifest.json").contains("is missing"));

    let copy = fresh("newer");
    let newer = manifest.replace(&format!("\"format_version\": {FORMAT_VERSION}"), "\"format_version\": 99");
    std::fs::write(copy.join("manifest.json"), newer).unwrap();
    let err = load_checkpoint(&copy, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("format version 99 is newer than this locus reads"), "{err}");
}
