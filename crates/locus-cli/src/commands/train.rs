//! `locus train --config FILE [--set section.key=value ...]`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use locus_train::{train, RunConfig};

use crate::device::parse_device;

/// Arguments of `locus train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The run config (TOML with [data], [model] and [train]).
    #[arg(long)]
    config: PathBuf,
    /// Override a config value, e.g. `--set train.max_steps=100` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Trains and prints where the checkpoints went.
pub fn run(args: TrainArgs) -> Result<()> {
    let config = RunConfig::load(&args.config, &args.overrides)
        .with_context(|| format!("loading config {}", args.config.display()))?;
    let device = parse_device(&args.device)?;
    let summary = train(&config, &device, true).context("training")?;
    eprintln!(
        "trained {} parameters for {} steps in {:.0} s ({:.0} tokens/s); valid nll {:.3} (ppl {:.2}), best {:.3}",
        summary.parameters,
        summary.steps,
        summary.wall_secs,
        summary.tokens_per_sec,
        summary.last_valid.nll,
        summary.last_valid.ppl(),
        summary.best_valid_nll
    );
    eprintln!("checkpoints: {0}/last and {0}/best; metrics: {0}/metrics.jsonl", summary.out_dir.display());
    Ok(())
}
