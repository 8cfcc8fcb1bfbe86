//! `locus train --config FILE [--set section.key=value ...] [--resume [DIR]]`
//!
//! SIGINT (Ctrl-C) and SIGTERM finish the current update, write a checkpoint and exit with
//! 128 + the signal's number (130, 143), saying how to resume; a second signal exits at once.
//!
//! Launched by `mpirun` or `srun` (a build with the `mpi` feature), each process is one rank of
//! a data-parallel job ([`crate::job`]): rank 0 shows the progress and the summary, and a stop
//! signal received by any rank stops all of them after the same update. A rank may receive two
//! signals for one Ctrl-C (the terminal's SIGINT, and the SIGTERM `mpirun` forwards), so in a
//! job of several ranks a second signal does not exit at once: the launcher's own SIGKILL,
//! after its grace period, is what ends a rank that takes too long.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use locus_train::{resolve_resume, train, RunConfig, StopReason, TrainOptions, TrainSummary};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::job::Job;
use crate::progress::ProgressDisplay;
use locus_train::Observer;

/// Arguments of `locus train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The run config (TOML with [data], [model] and [train]); with `--resume DIR` it may be
    /// left out, and the checkpoint's own config is used.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Override a config value, e.g. `--set train.max_steps=100` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue a run exactly where it stopped: from DIR (a checkpoint, or a run directory,
    /// meaning its `last`), or without DIR from `last` in the config's `train.out_dir`.
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    resume: Option<Option<PathBuf>>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// The config to train with and the checkpoint to resume from, if any.
fn resolve(args: &TrainArgs) -> Result<(RunConfig, Option<PathBuf>)> {
    let load = |path: &Path| {
        RunConfig::load(path, &args.overrides).with_context(|| format!("loading config {}", path.display()))
    };
    match (&args.config, &args.resume) {
        (Some(config), None) => Ok((load(config)?, None)),
        (Some(config), Some(None)) => {
            let config = load(config)?;
            let checkpoint = resolve_resume(&config.train.out_dir)?;
            Ok((config, Some(checkpoint)))
        }
        (Some(config), Some(Some(dir))) => Ok((load(config)?, Some(resolve_resume(dir)?))),
        (None, Some(Some(dir))) => {
            let checkpoint = resolve_resume(dir)?;
            Ok((load(&checkpoint.join("config.toml"))?, Some(checkpoint)))
        }
        (None, _) => bail!("--resume without a directory needs --config (to find train.out_dir)"),
    }
}

/// Records the first SIGINT/SIGTERM in `signal`; with `second_exits`, a second one terminates
/// the process.
fn watch_signals(signal: &Arc<AtomicUsize>, second_exits: bool) -> Result<()> {
    let armed = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        if second_exits {
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&armed))?;
        }
        signal_hook::flag::register(sig, Arc::clone(&armed))?;
        signal_hook::flag::register_usize(sig, Arc::clone(signal), sig as usize)?;
    }
    Ok(())
}

/// Trains and prints where the checkpoints went.
pub fn run(args: TrainArgs) -> Result<()> {
    crate::allocator::use_huge_pages();
    let mut job = Job::join()?;
    let device = job.open_device(&args.device)?;
    let signal = Arc::new(AtomicUsize::new(0));
    let summary = job.run(|| {
        let (config, resume) = resolve(&args)?;
        let second_exits = !job.comm().is_distributed();
        watch_signals(&signal, second_exits).context("installing the SIGINT/SIGTERM handler")?;
        let should_stop = |_step: usize| signal.load(Ordering::SeqCst) != 0;
        let display = job.is_root().then(ProgressDisplay::new);
        let show: Observer = &|event| display.iter().for_each(|display| display.show(event));
        let options = TrainOptions { progress: show, resume, should_stop: &should_stop, comm: job.comm() };
        let summary = train(&config, &device, options).context("training")?;
        Ok((config, summary))
    })?;
    let (config, summary) = summary;
    let interrupted = summary.stop == StopReason::Interrupted;
    if job.is_root() {
        report(&config, &summary);
    }
    // Every rank leaves the job (MPI_Finalize) before exiting, also with a status of its own.
    drop(job);
    // The rank that received the signal exits with its status; a rank stopped with it, with 0.
    let received = signal.load(Ordering::SeqCst);
    if interrupted && received != 0 {
        std::process::exit(128 + received as i32);
    }
    Ok(())
}

/// Prints where the run stopped, its scores and where its checkpoints went.
fn report(config: &RunConfig, summary: &TrainSummary) {
    let out_dir = summary.out_dir.display();
    eprintln!(
        "stopped at update {} ({}); {} parameters, {:.0} s, {:.0} tokens/s",
        summary.steps,
        summary.stop.name(),
        summary.parameters,
        summary.wall_secs,
        summary.tokens_per_sec
    );
    if let Some(valid) = summary.last_valid {
        eprintln!("last validation: nll {:.3} (ppl {:.2})", valid.nll, valid.ppl());
    }
    if let (Some(best), Some(step)) = (summary.best.best, summary.best.best_step) {
        eprintln!("best {} {best:.3} at update {step}", config.train.best_metric.name());
    }
    eprintln!("checkpoints: {out_dir}/last and {out_dir}/best; metrics: {out_dir}/metrics.jsonl");
    if summary.stop == StopReason::Interrupted {
        if let Some(dir) = &summary.last_checkpoint {
            eprintln!("interrupted: saved {}; continue with `locus train --resume {out_dir}`", dir.display());
        }
    }
}
