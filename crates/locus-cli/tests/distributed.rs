//! Data-parallel training under `mpirun` (a build with the `mpi` feature; run by
//! `scripts/test-distributed.sh`, which installs Open MPI and fetches Multi30k first):
//!
//! - 2 ranks with half of every batch each apply the updates one process applies with the whole
//!   batch (dropout 0, so only the split differs): per-update loss within 1e-5 relative, final
//!   weights within 1e-5 (relative L2 distance), on the tiny config (with and without gradient accumulation) and on
//!   configs/multi30k-de-en.toml;
//! - a 2-rank run interrupted by SIGINT to `mpirun` and resumed equals an uninterrupted one
//!   bit for bit (dropout on: every rank's dropout stream must resume too), and resuming it on
//!   another number of ranks continues and says it is not exact;
//! - a rank killed with SIGKILL stops the job within 30 s with a message naming it, and the
//!   last checkpoint resumes; an error on every rank stops the job rather than hanging it.
//!
//! - `locus bench all-reduce` on 3 ranks sums buffers of every size exactly.
//!
//! Every `mpirun` has a deadline, after which it is killed and the test fails: a hang fails the
//! test instead of the CI job.
#![cfg(feature = "mpi")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use serde_json::Value;

/// The repository root: configs name their data relative to it.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `mpirun -np RANKS locus ARGS`, as root too, in the repository root. Open MPI waits
/// `sigkill_timeout` seconds between the SIGTERM it forwards on SIGINT and SIGKILL.
fn mpirun(ranks: usize, args: &[String], sigkill_timeout: u32) -> Command {
    assert!(
        repo().join("data/multi30k/train.de.gz").exists(),
        "Multi30k is missing: run scripts/get-multi30k.sh (scripts/test-distributed.sh does)"
    );
    let mut command = Command::new("mpirun");
    command
        .args(["--oversubscribe", "-np", &ranks.to_string()])
        .args(["--mca", "odls_base_sigkill_timeout", &sigkill_timeout.to_string()])
        .arg(env!("CARGO_BIN_EXE_locus"))
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .current_dir(repo());
    command
}

/// Starts `locus ARGS` on `ranks` ranks, its output going to `log`.
fn spawn(ranks: usize, args: &[String], sigkill_timeout: u32, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    mpirun(ranks, args, sigkill_timeout).stdout(out).stderr(err).spawn().expect("starting mpirun")
}

/// Waits at most `limit` for `job` to exit; after that, stops it (SIGTERM, which mpirun passes
/// on to its ranks, then SIGKILL) and fails the test.
fn wait(job: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = job.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = Command::new("kill").args(["-TERM", &job.id().to_string()]).status();
            std::thread::sleep(Duration::from_secs(10));
            let _ = job.kill();
            panic!("mpirun did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `locus ARGS` on `ranks` ranks to completion.
fn run(ranks: usize, args: &[String]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let status = wait(&mut spawn(ranks, args, 1, &log), Duration::from_secs(300));
    let output = std::fs::read(&log).unwrap();
    Output { status, stdout: output, stderr: Vec::new() }
}

/// Runs `locus ARGS` on `ranks` ranks and fails the test unless it succeeds.
fn run_ok(ranks: usize, args: &[String]) -> Output {
    let output = run(ranks, args);
    assert!(output.status.success(), "mpirun -np {ranks} locus {args:?} failed: {}", text(&output));
    output
}

/// stdout and stderr together.
fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// `train --config CONFIG --set out_dir=OUT --set ITEM ...` with one log line per update.
fn train_args(config: &str, out: &Path, sets: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--config", config, "--device", "cpu"].map(String::from).into();
    let out_dir = format!("train.out_dir={}", out.display());
    for item in [out_dir.as_str(), "train.log_interval=1"].iter().chain(sets) {
        args.extend(["--set".to_string(), item.to_string()]);
    }
    args
}

/// The `(step, loss)` of every `train` record of a run.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["event"] == "train")
        .map(|record| (record["step"].as_u64().unwrap(), record["loss"].as_f64().unwrap()))
        .collect()
}

/// The weights of a run's `last` checkpoint.
fn weights(run: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(run.join("last/model.safetensors"), &Device::Cpu).unwrap()
}

/// Trains `config` for 20 updates in one process and on 2 ranks, and checks that they agree:
/// every update's loss within 1e-5 relative, every final weight within 1e-5 (relative to its
/// size where that is above 1).
fn assert_two_ranks_match_one(config: &str, sets: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let mut sets = sets.to_vec();
    sets.extend([
        "train.max_steps=20",
        "model.dropout=0",
        "model.attention_dropout=0",
        "model.activation_dropout=0",
    ]);
    run_ok(1, &train_args(config, &one, &sets));
    let output = run_ok(2, &train_args(config, &two, &sets));
    assert!(text(&output).contains("data parallel: 2 ranks"), "{}", text(&output));

    let (alone, split) = (losses(&one), losses(&two));
    assert_eq!(alone.len(), 20);
    // The updates trained the model: the comparison is not between two fresh ones.
    assert!(alone[19].1 < alone[0].1 - 0.1, "{alone:?}");
    assert_eq!(alone.iter().map(|l| l.0).collect::<Vec<_>>(), split.iter().map(|l| l.0).collect::<Vec<_>>());
    for ((step, a), (_, b)) in alone.iter().zip(&split) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{config} update {step}: loss {a} alone, {b} on 2 ranks");
    }
    // The weights as one vector: their distance relative to its length. Element by element,
    // Adam divides each gradient by its own size, so an element whose gradient cancels to about
    // nothing moves by ±lr at the whim of rounding: 20 updates of the Multi30k model leave a
    // few such elements 1e-4 apart. Key projections' biases are left out: their gradient is
    // zero in exact arithmetic (softmax does not change when all of a query's scores move by
    // the same amount), so every element of theirs is such noise.
    let (alone, split) = (weights(&one), weights(&two));
    assert_eq!(alone.len(), split.len());
    let (mut distance, mut length) = (0f64, 0f64);
    for (name, a) in alone.iter().filter(|(name, _)| !name.ends_with("k_proj.bias")) {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = split[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        distance += a.iter().zip(&b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>();
        length += a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
    }
    let relative = (distance / length).sqrt();
    assert!(
        relative <= 1e-5,
        "{config}: the weights on 2 ranks are {relative:e} (relative L2) from one process's"
    );
}

#[test]
fn two_ranks_match_one_process_on_the_tiny_config() {
    assert_two_ranks_match_one("configs/tiny.toml", &["train.valid_interval=10"]);
    // Gradient accumulation: two batches per update, reduced once.
    assert_two_ranks_match_one("configs/tiny.toml", &["train.update_freq=2", "train.valid_bleu=false"]);
}

#[test]
fn two_ranks_match_one_process_on_multi30k() {
    assert_two_ranks_match_one(
        "configs/multi30k-de-en.toml",
        &[
            "train.valid_interval=20",
            "train.save_interval=20",
            "train.valid_bleu=false",
            "train.best_metric=nll",
        ],
    );
}

#[test]
fn the_all_reduce_benchmark_sums_exactly_on_three_ranks() {
    let args =
        ["bench", "all-reduce", "--device", "cpu", "--floats", "1,1000,1048576", "--repeats", "3", "--json"];
    let output = run_ok(3, &args.map(String::from));
    let text = text(&output);
    let record: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!((&record["ranks"], &record["engine"]), (&3.into(), &"MPI".into()), "{text}");
    let sizes = record["sizes"].as_array().unwrap();
    assert_eq!(sizes.iter().map(|s| s["floats"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 1000, 1048576]);
    assert!(sizes.iter().all(|s| s["max_error"] == 0.0), "{text}");
}

/// The processes whose environment holds `OMPI_COMM_WORLD_RANK=<rank>` and whose command line
/// mentions `marker`.
fn rank_pids(rank: usize, marker: &str) -> Vec<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let read = |file: &str| std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
            let environ = read("environ");
            let cmdline = String::from_utf8_lossy(&read("cmdline")).into_owned();
            cmdline.contains(marker) && environ.split(|&b| b == 0).any(|var| var == wanted.as_bytes())
        })
        .collect()
}

/// Waits until `ready` holds, failing if `child` exits first or 120 s pass.
fn wait_until(child: &mut Child, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mpirun exited early ({status})");
        }
        assert!(started.elapsed() < Duration::from_secs(120), "timed out waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_rank_stops_the_job_and_the_last_checkpoint_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let sets = ["train.max_steps=100000", "train.save_interval=5", "train.valid_interval=100000"];
    let args = train_args("configs/tiny.toml", &run_dir, &sets);
    let log = dir.path().join("log");
    let mut job = spawn(2, &args, 1, &log);
    wait_until(&mut job, || run_dir.join("last").exists());
    let marker = run_dir.display().to_string();
    let victims = rank_pids(1, &marker);
    assert_eq!(victims.len(), 1, "rank 1's process: {victims:?}");
    let killed = Instant::now();
    assert!(Command::new("kill").args(["-9", &victims[0].to_string()]).status().unwrap().success());
    let status = wait(&mut job, Duration::from_secs(60));
    let waited = killed.elapsed();
    assert!(waited < Duration::from_secs(30), "the job took {waited:?} to stop");
    assert!(!status.success(), "{status}");
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(message.contains("rank 1"), "the error does not name rank 1: {message}");
    assert!(rank_pids(0, &marker).is_empty(), "rank 0 outlived the job");

    // The last checkpoint loads and the run continues from it on 2 ranks.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("last/state.json")).unwrap()).unwrap();
    let step = saved["step"].as_u64().unwrap();
    let max_steps = format!("train.max_steps={}", step + 3);
    let mut resume = train_args("configs/tiny.toml", &run_dir, &[&max_steps, "train.valid_interval=100000"]);
    resume.push("--resume".into());
    let output = run_ok(2, &resume);
    assert!(text(&output).contains(&format!("stopped at update {}", step + 3)), "{}", text(&output));
}

#[test]
fn an_error_on_every_rank_stops_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("data.prepared={}", dir.path().join("no-such-dataset").display());
    let started = Instant::now();
    let output = run(2, &train_args("configs/tiny.toml", &dir.path().join("run"), &[&missing]));
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let message = text(&output);
    assert!(message.contains("rank 0 of 2 failed") && message.contains("no-such-dataset"), "{message}");
}

#[test]
fn an_interrupted_two_rank_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    // Dropout on (the tiny config has none): each rank's stream must resume where it was.
    let sets = [
        "train.max_steps=200",
        "train.valid_interval=100",
        "train.valid_bleu=false",
        "model.dropout=0.1",
        "model.attention_dropout=0.1",
    ];
    run_ok(2, &train_args("configs/tiny.toml", &whole, &sets));

    // The same run, stopped by SIGINT to mpirun once it has passed update 10 ...
    let log = dir.path().join("log");
    let mut job = spawn(2, &train_args("configs/tiny.toml", &parts, &sets), 1, &log);
    wait_until(&mut job, || losses_so_far(&parts) > 10);
    assert!(Command::new("kill").args(["-INT", &job.id().to_string()]).status().unwrap().success());
    let status = wait(&mut job, Duration::from_secs(60));
    assert!(!status.success(), "{status}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(parts.join("last/state.json")).unwrap()).unwrap();
    let stopped = saved["step"].as_u64().unwrap();
    assert!((11..200).contains(&stopped), "stopped at {stopped}");
    assert_eq!(saved["world_size"], 2);

    // ... and resumed: the same losses and, bit for bit, the same weights.
    let mut resume = train_args("configs/tiny.toml", &parts, &sets);
    resume.push("--resume".into());
    let output = run_ok(2, &resume);
    assert!(text(&output).contains("resuming from"), "{}", text(&output));
    assert_eq!(losses(&whole), losses(&parts));
    let read = |run: &Path| std::fs::read(run.join("last/model.safetensors")).unwrap();
    assert!(read(&whole) == read(&parts), "the resumed run's weights differ");

    // On one rank it continues, and says that it is not exact.
    let mut alone = train_args(
        "configs/tiny.toml",
        &whole,
        &[
            "train.max_steps=202",
            "train.valid_bleu=false",
            "model.dropout=0.1",
            "model.attention_dropout=0.1",
        ],
    );
    alone.push("--resume".into());
    let output = run_ok(1, &alone);
    assert!(text(&output).contains("not bit-exactly"), "{}", text(&output));
}

/// Updates logged so far by a running job (0 before its log exists).
fn losses_so_far(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("\"event\":\"train\""))
        .count()
}
