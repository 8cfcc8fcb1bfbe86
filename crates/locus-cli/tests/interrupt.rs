//! Stopping `locus train` from outside: SIGINT (SIGTERM) finishes the update, writes a
//! checkpoint and exits with 130 (143), and the run resumes from it; SIGKILL at any moment, even
//! in the middle of writing a checkpoint, leaves `last` and `best` loadable and the run resumable.
//! SIGKILL in the middle of `locus prepare` leaves no dataset, and the next `prepare` starts
//! clean. A second `locus train` on a run directory in use is refused, naming the process that
//! holds it, until that process dies; the next run then takes the lock over.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use candle_core::Device;
use common::{data_overrides, locus, stderr, tiny_config, train_args, with_sets, write_corpus};
use serde_json::Value;

/// Starts `locus` with `args`, its stderr going to `log`.
fn spawn(args: &[&str], log: &Path) -> Child {
    let stderr = File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_locus")).args(args).stderr(stderr).spawn().expect("starting locus")
}

fn send(child: &Child, signal: &str) {
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal} failed");
}

fn wait(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "locus did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `ready` holds, failing with the log if `child` exits first.
fn wait_until(child: &mut Child, log: &Path, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("locus exited early ({status}): {}", std::fs::read_to_string(log).unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(120), "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The records of `run/metrics.jsonl` (every line must be whole JSON).
fn records(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))).collect()
}

/// Training records logged since the last `resume` (all of them in a fresh run).
fn updates_this_session(run: &Path) -> Vec<u64> {
    let records = records(run);
    let start = records.iter().rposition(|r| r["event"] == "resume").map_or(0, |i| i + 1);
    records[start..].iter().filter(|r| r["event"] == "train").map(|r| r["step"].as_u64().unwrap()).collect()
}

/// How many times the run has been resumed (its `resume` records).
fn resumes(run: &Path) -> usize {
    records(run).iter().filter(|r| r["event"] == "resume").count()
}

/// The update recorded in `run/last/state.json`.
fn last_checkpoint_step(run: &Path) -> Value {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("last/state.json")).unwrap()).unwrap();
    state["step"].clone()
}

#[test]
fn sigint_saves_a_checkpoint_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let config = tiny_config().display().to_string();
    let mut overrides = data_overrides(dir.path());
    overrides.extend(
        ["train.max_steps=1000000", "train.log_interval=1", "train.save_interval=100000"].map(String::from),
    );
    let run = dir.path().join("run");
    let log = dir.path().join("train.log");
    let mut child = spawn(&train_args(&config, &overrides), &log);
    wait_until(&mut child, &log, || updates_this_session(&run).len() >= 3);
    send(&child, "-INT");
    let status = wait(&mut child);
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains(&format!("continue with `locus train --resume {}`", run.display())), "{said}");

    let stop = records(&run).last().unwrap().clone();
    assert_eq!(stop["event"], "stop");
    assert_eq!(stop["reason"], "interrupted");
    let step = stop["step"].as_u64().unwrap();
    assert_eq!(last_checkpoint_step(&run), step);

    // Resume from the run directory, with the checkpoint's own config, for three more updates.
    let max_steps = format!("train.max_steps={}", step + 3);
    let out =
        locus(&["train", "--resume", &run.display().to_string(), "--set", &max_steps, "--device", "cpu"]);
    assert!(out.status.success(), "resume failed: {}", stderr(&out));
    assert_eq!(updates_this_session(&run), [step + 1, step + 2, step + 3]);
    assert!(
        stderr(&out).contains(&format!("stopped at update {} (max_steps)", step + 3)),
        "{}",
        stderr(&out)
    );

    // SIGTERM, as a job scheduler sends it, stops the continued run the same way, with 143.
    let run_arg = run.display().to_string();
    let args = ["train", "--resume", &run_arg, "--set", "train.max_steps=1000000", "--device", "cpu"];
    let resumed = resumes(&run);
    let mut child = spawn(&args, &log);
    // This session's own updates: it has logged its `resume` record and two updates since.
    wait_until(&mut child, &log, || resumes(&run) > resumed && updates_this_session(&run).len() >= 2);
    send(&child, "-TERM");
    let status = wait(&mut child);
    assert_eq!(status.code(), Some(143), "{}", std::fs::read_to_string(&log).unwrap());
    let stop = records(&run).last().unwrap().clone();
    assert_eq!(stop["reason"], "interrupted");
    assert_eq!(last_checkpoint_step(&run), stop["step"]);
}

#[test]
fn sigkill_while_checkpointing_leaves_last_and_best_loadable() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let config = tiny_config().display().to_string();
    let mut overrides = data_overrides(dir.path());
    // A checkpoint after every update, so that most kills land inside a save.
    overrides.extend(
        [
            "train.max_steps=1000000",
            "train.log_interval=1",
            "train.save_interval=1",
            "train.valid_interval=2",
        ]
        .map(String::from),
    );
    overrides.extend(["train.valid_bleu=false", "train.keep_last=2"].map(String::from));
    let run = dir.path().join("run");
    let log = dir.path().join("train.log");
    // A save of process `pid` under way: its `.tmp-*-<pid>` directory, renamed when done. (A
    // killed process's directory stays behind until the next save prunes it, so the pid matters.)
    let saving = |pid: u32| {
        let entries = std::fs::read_dir(run.join("checkpoints")).into_iter().flatten().flatten();
        entries.into_iter().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".tmp-") && name.ends_with(&format!("-{pid}"))
        })
    };
    let mut kills_inside_a_save = 0;
    for attempt in 0..100 {
        let mut args = train_args(&config, &overrides);
        if attempt > 0 {
            args.push("--resume");
        }
        let resumed = resumes(&run);
        let mut child = spawn(&args, &log);
        let pid = child.id();
        // This session's own updates first (after its `resume` record, if resumed), then kill
        // as soon as one of its saves is under way.
        let started = || attempt == 0 || resumes(&run) > resumed;
        wait_until(&mut child, &log, || {
            run.join("best").exists() && started() && updates_this_session(&run).len() >= 2
        });
        wait_until(&mut child, &log, || saving(pid));
        send(&child, "-KILL");
        wait(&mut child);
        if saving(pid) {
            kills_inside_a_save += 1;
        }
        for link in ["last", "best"] {
            if let Err(err) = locus_train::load_checkpoint(&run.join(link), &Device::Cpu) {
                panic!("after kill {attempt}, {link} does not load: {err}");
            }
        }
        if kills_inside_a_save >= 3 {
            return;
        }
    }
    panic!("only {kills_inside_a_save} of 100 kills landed inside a checkpoint save");
}

#[test]
fn a_run_directory_in_use_is_refused_until_its_holder_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let config = tiny_config().display().to_string();
    let mut overrides = data_overrides(dir.path());
    overrides.extend(["train.max_steps=1000000", "train.save_interval=2"].map(String::from));
    let run = dir.path().join("run");
    let log = dir.path().join("train.log");
    let mut first = spawn(&train_args(&config, &overrides), &log);
    wait_until(&mut first, &log, || run.join("last").exists());

    let second = locus(&train_args(&config, &overrides));
    let holder = format!("is in use by another `locus train` (pid {}", first.id());
    assert!(!second.status.success() && stderr(&second).contains(&holder), "{}", stderr(&second));

    send(&first, "-KILL");
    wait(&mut first);
    let step = last_checkpoint_step(&run).as_u64().unwrap();
    let max_steps = format!("train.max_steps={}", step + 1);
    let run_arg = run.display().to_string();
    let resumed = locus(&["train", "--resume", &run_arg, "--set", &max_steps, "--device", "cpu"]);
    let said = stderr(&resumed);
    assert!(resumed.status.success(), "{said}");
    assert!(said.contains("took over the lock") && said.contains(&format!("pid {}", first.id())), "{said}");
}

#[test]
fn a_killed_prepare_leaves_no_dataset_and_the_next_one_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    // 120,000 pairs: long enough to be caught in the middle.
    for (name, upper) in [("big.de", false), ("big.en", true)] {
        let text = std::fs::read_to_string(dir.path().join("train.de")).unwrap();
        let text = if upper { text.to_uppercase() } else { text };
        std::fs::write(dir.path().join(name), text.repeat(600)).unwrap();
    }
    let config = tiny_config().display().to_string();
    let mut overrides = data_overrides(dir.path());
    overrides.push(format!("data.train_src={}", dir.path().join("big.de").display()));
    overrides.push(format!("data.train_tgt={}", dir.path().join("big.en").display()));
    let out_dir = dir.path().join("prepared");
    let out = out_dir.display().to_string();
    let args = with_sets(vec!["prepare", "--config", config.as_str(), "--out", out.as_str()], &overrides);
    let temporary = |pid: u32| dir.path().join(format!(".tmp-prepared-{pid}"));

    let log = dir.path().join("prepare.log");
    let mut child = spawn(&args, &log);
    let pid = child.id();
    // Killed once it writes shards into its temporary directory.
    wait_until(&mut child, &log, || temporary(pid).join("train-00000.bin").exists());
    send(&child, "-KILL");
    wait(&mut child);
    assert!(!out_dir.exists(), "a killed prepare left a dataset");
    assert!(temporary(pid).exists());

    let out = locus(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out_dir.join("manifest.json").is_file());
    assert!(!temporary(pid).exists(), "the dead process's temporary directory was not swept");
}
