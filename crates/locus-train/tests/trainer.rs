//! The training loop's promises, through [`train`] on a tiny model and corpus:
//! - a run stopped at update N and resumed trains exactly like one that never stopped (bit for
//!   bit: same losses, same final weights), across epoch boundaries, with dropout and gradient
//!   accumulation, whether it was interrupted or ran out of `max_steps` and was extended;
//! - `keep_last` prunes old checkpoints but keeps those `last` and `best` name;
//! - `patience` stops a run whose validation score no longer improves;
//! - `max_epochs` stops a run after that many passes, before `max_steps`;
//! - a diverging run fails naming the update, before a checkpoint of it is saved;
//! - a checkpoint that cannot be written stops the run with an error naming the path, and
//!   leaves the previous `last` and `best` loadable;
//! - in mixed precision (`bf16`, `f16`) a run learns, saves f32 weights, and resumes exactly,
//!   f16's loss scale included;
//! - training from a prepared dataset (`data.prepared`) is bit-identical to training from the
//!   raw files (prepared into the run directory, and kept there across a resume), resumes
//!   exactly, and is refused when its filter or tokenizer differs from the run's.

use std::path::{Path, PathBuf};

use candle_core::Device;
use locus_data::{DataConfig, PrepareOptions};
use locus_model::ModelConfig;
use locus_train::distributed::SingleProcess;
use locus_train::precision::Precision;
use locus_train::{
    load_checkpoint, resolve_resume, train, RunConfig, StopReason, TrainConfig, TrainOptions, TrainSummary,
};
use serde_json::Value;

/// 240 sentence pairs: each target is its source reversed.
fn write_corpus(dir: &Path) {
    let words = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mut src = String::new();
    let mut tgt = String::new();
    for i in 0..240 {
        let mut sentence: Vec<&str> = (0..2 + i % 6).map(|j| words[(i * 7 + j * 3) % words.len()]).collect();
        src += &(sentence.join(" ") + "\n");
        sentence.reverse();
        tgt += &(sentence.join(" ") + "\n");
    }
    for split in ["train", "valid"] {
        std::fs::write(dir.join(format!("{split}.src")), &src).unwrap();
        std::fs::write(dir.join(format!("{split}.tgt")), &tgt).unwrap();
    }
}

/// A tiny run with dropout and `update_freq = 2`, logging every update.
fn config(dir: &Path, run: &str, max_steps: usize) -> RunConfig {
    let mut data = DataConfig::with_paths(
        dir.join("train.src"),
        dir.join("train.tgt"),
        dir.join("valid.src"),
        dir.join("valid.tgt"),
    );
    data.vocab_size = 40;
    data.max_tokens = 160;
    RunConfig {
        data,
        model: ModelConfig { d_model: 16, n_heads: 2, d_ff: 32, dropout: 0.2, ..ModelConfig::tiny() },
        train: TrainConfig {
            lr: 3e-3,
            warmup_steps: 5,
            update_freq: 2,
            log_interval: 1,
            valid_interval: 6,
            save_interval: 4,
            keep_last: 2,
            ..TrainConfig::new(dir.join(run), max_steps)
        },
    }
}

fn run(cfg: &RunConfig, resume: Option<PathBuf>, stop_at: Option<usize>) -> TrainSummary {
    let should_stop = move |step: usize| Some(step) == stop_at;
    let options = TrainOptions {
        progress: &locus_train::progress::silent,
        resume,
        should_stop: &should_stop,
        comm: &SingleProcess,
    };
    train(cfg, &Device::Cpu, options).unwrap()
}

/// `(step, loss)` of every training record, as logged (JSON numbers round-trip f64 exactly).
fn train_losses(run_dir: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["event"] == "train")
        .map(|record| (record["step"].as_u64().unwrap(), record["loss"].as_f64().unwrap()))
        .collect()
}

/// Every training record without its timings: what a resumed run must repeat exactly.
fn train_records(run_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["event"] == "train")
        .map(|mut record| {
            let fields = record.as_object_mut().unwrap();
            fields.remove("wall_s");
            fields.remove("tokens_per_s");
            record
        })
        .collect()
}

fn weights(run_dir: &Path) -> Vec<u8> {
    std::fs::read(run_dir.join("last/model.safetensors")).unwrap()
}

#[test]
fn resumed_runs_match_an_uninterrupted_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let total: usize = 30;
    let whole = run(&config(dir.path(), "whole", total), None, None);
    assert_eq!((whole.steps, whole.stop), (total, StopReason::MaxSteps));
    let updates_per_epoch = {
        let text = std::fs::read_to_string(dir.path().join("whole/metrics.jsonl")).unwrap();
        let data: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        data["updates_per_epoch"].as_u64().unwrap() as usize
    };
    // The stop falls mid-epoch, and the rest crosses at least one epoch boundary.
    let stop: usize = 13;
    assert!(
        !stop.is_multiple_of(updates_per_epoch) && updates_per_epoch < total - stop,
        "{updates_per_epoch}"
    );

    // Interrupted at `stop`, then resumed from the run directory's `last`.
    let interrupted = config(dir.path(), "interrupted", total);
    let first = run(&interrupted, None, Some(stop));
    assert_eq!((first.steps, first.stop), (stop, StopReason::Interrupted));
    let checkpoint = resolve_resume(&interrupted.train.out_dir).unwrap();
    run(&interrupted, Some(checkpoint), None);

    // Stopped by max_steps at `stop`, then extended to `total`.
    let short = config(dir.path(), "extended", stop);
    run(&short, None, None);
    let extended = config(dir.path(), "extended", total);
    run(&extended, Some(dir.path().join("extended/last")), None);

    let want = train_losses(&dir.path().join("whole"));
    assert_eq!(want.len(), total);
    for name in ["interrupted", "extended"] {
        let got = train_losses(&dir.path().join(name));
        // Steps 1..=stop, then the resumed stop+1..=total: the same losses, to the last bit.
        assert_eq!(got, want, "{name}");
        assert!(
            weights(&dir.path().join(name)) == weights(&dir.path().join("whole")),
            "{name}: final weights differ"
        );
    }
}

#[test]
fn keep_last_prunes_all_but_the_newest_and_the_linked() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    // Saves at 4, 8, ..., 28, 30 and at every new best (validations at 6, 12, ..., 30).
    let summary = run(&config(dir.path(), "run", 30), None, None);
    let run_dir = dir.path().join("run");
    let mut kept: Vec<String> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let best = format!("step-{:08}", summary.best.best_step.unwrap());
    let mut want = vec!["step-00000028".to_string(), "step-00000030".to_string()];
    if !want.contains(&best) {
        want.insert(0, best.clone());
    }
    assert_eq!(kept, want);
    let target = |link: &str| std::fs::read_link(run_dir.join(link)).unwrap();
    assert_eq!(target("last"), Path::new("checkpoints/step-00000030"));
    assert_eq!(target("best"), Path::new("checkpoints").join(&best));
}

#[test]
fn patience_stops_a_run_that_no_longer_improves() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let mut cfg = config(dir.path(), "run", 100);
    // A learning rate far below f32 resolution leaves the weights, hence the validation loss,
    // unchanged: the first validation (update 6) is the best, 12 and 18 tie (no improvement),
    // and patience 2 stops the run at 18 with a checkpoint.
    cfg.train.lr = 1e-15;
    cfg.train.patience = Some(2);
    cfg.model.dropout = 0.0;
    let summary = run(&cfg, None, None);
    assert_eq!((summary.steps, summary.stop), (18, StopReason::EarlyStopping));
    assert_eq!((summary.best.best_step, summary.best.stale_validations), (Some(6), 2));
    let last = std::fs::read_link(dir.path().join("run/last")).unwrap();
    assert_eq!(last, Path::new("checkpoints/step-00000018"));
}

#[test]
fn max_epochs_stops_before_max_steps() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let mut cfg = config(dir.path(), "run", 1000);
    cfg.train.max_epochs = Some(2);
    let summary = run(&cfg, None, None);
    let text = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    let records: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let per_epoch = records[0]["updates_per_epoch"].as_u64().unwrap() as usize;
    assert_eq!((summary.steps, summary.stop), (2 * per_epoch, StopReason::MaxEpochs));
    let epochs: Vec<u64> =
        records.iter().filter(|r| r["event"] == "train").map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs.iter().filter(|&&e| e == 1).count(), per_epoch);
    assert_eq!(epochs.last(), Some(&2));
}

/// Losses are read from the device only at log lines, validations and checkpoints; a loss that
/// stops being finite still fails the run naming its update, and before any checkpoint of the
/// broken weights is written.
#[test]
fn a_diverging_run_fails_naming_the_update_before_saving_it() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let mut cfg = config(dir.path(), "run", 20);
    // Adam moves every weight by about lr: at 1e38 the logits overflow from the second update.
    cfg.train.lr = 1e38;
    cfg.train.warmup_steps = 0;
    cfg.train.log_interval = 10;
    let options = TrainOptions {
        progress: &locus_train::progress::silent,
        resume: None,
        should_stop: &|_| false,
        comm: &SingleProcess,
    };
    let err = train(&cfg, &Device::Cpu, options).unwrap_err().to_string();
    assert!(err.starts_with("training diverged at step 2: loss is NaN"), "{err}");
    assert!(!dir.path().join("run/last").exists(), "a checkpoint was saved: {err}");
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let mut cfg = config(dir.path(), "run", 20);
    (cfg.train.save_interval, cfg.train.valid_interval) = (4, 4);
    // After the save at update 4, a file where the save at update 8 puts its temporary
    // directory (as a full disk or an I/O error would, the write fails).
    let blocker = dir.path().join(format!("run/checkpoints/.tmp-step-00000008-{}", std::process::id()));
    let block = |step: usize| {
        if step == 5 {
            std::fs::write(&blocker, b"in the way").unwrap();
        }
        false
    };
    let options = TrainOptions {
        progress: &locus_train::progress::silent,
        resume: None,
        should_stop: &block,
        comm: &SingleProcess,
    };
    let err = train(&cfg, &Device::Cpu, options).unwrap_err().to_string();
    let path = dir.path().join("run/checkpoints/step-00000008");
    assert!(err.starts_with(&format!("checkpoint {}: cannot be written", path.display())), "{err}");
    assert!(err.contains(&blocker.display().to_string()) && err.contains("Not a directory"), "{err}");
    for link in ["last", "best"] {
        let checkpoint = load_checkpoint(&dir.path().join("run").join(link), &Device::Cpu).unwrap();
        assert_eq!(checkpoint.state.step, 4, "{link}");
    }
    assert_eq!(std::fs::read(&blocker).unwrap(), b"in the way", "the file in the way is left alone");
}

#[test]
fn bf16_training_learns_and_saves_f32_weights() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let mut cfg = config(dir.path(), "run", 40);
    cfg.train.precision = Precision::Bf16;
    run(&cfg, None, None);
    let losses: Vec<f64> = train_losses(&dir.path().join("run")).into_iter().map(|(_, loss)| loss).collect();
    let (first, last) = (losses[0], losses[losses.len() - 5..].iter().sum::<f64>() / 5.0);
    eprintln!("bf16 training loss: {first:.3} at update 1, {last:.3} over the last 5");
    assert!(last < 0.7 * first, "bf16 loss fell from {first:.3} to only {last:.3}: {losses:?}");
    let checkpoint = load_checkpoint(&dir.path().join("run/last"), &Device::Cpu).unwrap();
    assert_eq!(checkpoint.config.train.precision, Precision::Bf16);
    assert!(checkpoint.varmap.all_vars().iter().all(|var| var.dtype() == candle_core::DType::F32));
}

#[test]
fn mixed_precision_runs_resume_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    // 5 updates per epoch: the stop falls inside the second.
    let (total, stop) = (12, 8);
    for precision in [Precision::Bf16, Precision::F16] {
        let config_in = |run: &str| {
            let mut cfg = config(dir.path(), &format!("{run}-{}", precision.name()), total);
            cfg.train.precision = precision;
            // Started high, so that the first updates overflow and are skipped.
            cfg.train.loss_scale_init = 32768.0;
            cfg
        };
        let (whole, interrupted) = (config_in("whole"), config_in("interrupted"));
        run(&whole, None, None);
        run(&interrupted, None, Some(stop));
        run(&interrupted, Some(resolve_resume(&interrupted.train.out_dir).unwrap()), None);
        let want = train_records(&whole.train.out_dir);
        assert_eq!(want.len(), total);
        assert_eq!(train_records(&interrupted.train.out_dir), want, "{}", precision.name());
        assert!(
            weights(&interrupted.train.out_dir) == weights(&whole.train.out_dir),
            "{}: final weights differ",
            precision.name()
        );
        if precision == Precision::F16 {
            // 2^15 overflows at first (updates 1 to 5 are skipped, down to 2^10), then updates
            // apply: the resumed run needed the saved scale, and Adam's count of applied updates.
            let at_stop = &want[stop - 1];
            eprintln!("f16 at update {stop}: {at_stop}");
            assert!(at_stop["skipped_updates"].as_u64().unwrap() > 0, "{at_stop}");
            assert!(at_stop["loss_scale"].as_f64().unwrap() < 32768.0, "{at_stop}");
            assert_eq!(at_stop["skipped"], 0, "{at_stop}");
        } else {
            assert!(want[0].get("loss_scale").is_none());
        }
    }
}

/// `cfg` reading the dataset `locus prepare` wrote from its corpora into `dir`.
fn from_prepared(mut cfg: RunConfig, dir: &Path) -> RunConfig {
    if !dir.exists() {
        let options = PrepareOptions { tokenizer: None, progress: &|_| {} };
        locus_data::prepare(&cfg.data, dir, options).unwrap();
    }
    cfg.data.prepared = Some(dir.to_path_buf());
    cfg
}

#[test]
fn training_from_a_prepared_dataset_equals_training_from_the_raw_files() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    // Raw files: `train` prepares them into the run directory itself.
    let raw = config(dir.path(), "raw", 12);
    run(&raw, None, None);
    assert!(dir.path().join("raw/prepared/manifest.json").is_file());
    // The same corpora prepared first, then named by `data.prepared`.
    let prepared = from_prepared(config(dir.path(), "prepared", 12), &dir.path().join("dataset"));
    run(&prepared, None, None);
    assert!(!dir.path().join("prepared/prepared").exists());
    assert_eq!(train_records(&dir.path().join("prepared")), train_records(&dir.path().join("raw")));
    assert_eq!(train_losses(&dir.path().join("raw")).len(), 12);
    assert!(
        weights(&dir.path().join("prepared")) == weights(&dir.path().join("raw")),
        "final weights differ"
    );
}

#[test]
fn a_run_resumed_from_a_prepared_dataset_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let dataset = dir.path().join("dataset");
    let total = 20;
    run(&from_prepared(config(dir.path(), "whole", total), &dataset), None, None);
    // Killed mid-epoch at update 7 (updates_per_epoch is 10 here), resumed to the end.
    let interrupted = from_prepared(config(dir.path(), "interrupted", total), &dataset);
    assert_eq!(run(&interrupted, None, Some(7)).stop, StopReason::Interrupted);
    run(&interrupted, Some(resolve_resume(&interrupted.train.out_dir).unwrap()), None);
    let whole = train_losses(&dir.path().join("whole"));
    assert_eq!(whole.len(), total);
    assert_eq!(train_losses(&dir.path().join("interrupted")), whole);
    assert!(weights(&dir.path().join("interrupted")) == weights(&dir.path().join("whole")));
}

#[test]
fn a_run_directory_keeps_its_prepared_data_across_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let cfg = config(dir.path(), "run", 6);
    run(&cfg, None, Some(3));
    let manifest = dir.path().join("run/prepared/manifest.json");
    let prepared_at = std::fs::metadata(&manifest).unwrap().modified().unwrap();
    run(&cfg, Some(resolve_resume(&cfg.train.out_dir).unwrap()), None);
    assert_eq!(std::fs::metadata(&manifest).unwrap().modified().unwrap(), prepared_at, "prepared again");
    // A changed data section (another filter) prepares afresh.
    let mut longer = config(dir.path(), "run", 8);
    longer.data.max_len = 100;
    run(&longer, Some(resolve_resume(&cfg.train.out_dir).unwrap()), None);
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"max_len\": 100"), "{text}");
}

#[test]
fn a_prepared_dataset_must_match_the_run() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let cfg = from_prepared(config(dir.path(), "run", 4), &dir.path().join("dataset"));
    run(&cfg, None, None);

    // Filtered otherwise than the config says.
    let mut other_filter = cfg.clone();
    other_filter.data.max_len = 50;
    other_filter.train.out_dir = dir.path().join("other-filter");
    let err = train(&other_filter, &Device::Cpu, silent_options(None)).unwrap_err().to_string();
    assert!(err.contains("data.max_len is 50") && err.contains("filtered with 128"), "{err}");

    // Encoded with another tokenizer than the checkpoint's: a corpus of other words.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for name in ["train.src", "train.tgt", "valid.src", "valid.tgt"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        std::fs::write(other.join(name), text.replace('a', "x y z").replace('b', "q r")).unwrap();
    }
    let mut resumed = from_prepared(config(&other, "unused", 8), &other.join("dataset"));
    resumed.train.out_dir = cfg.train.out_dir.clone();
    let err = train(&resumed, &Device::Cpu, silent_options(Some(dir.path().join("run/last"))))
        .unwrap_err()
        .to_string();
    assert!(err.contains("another tokenizer than the checkpoint's"), "{err}");
}

fn silent_options(resume: Option<PathBuf>) -> TrainOptions<'static> {
    TrainOptions {
        progress: &locus_train::progress::silent,
        resume,
        should_stop: &|_| false,
        comm: &SingleProcess,
    }
}
