//! `locus average --out DIR CKPT...` or `locus average --out DIR --last N RUN_DIR`

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use locus_train::{average_checkpoints, newest_checkpoints};

/// Arguments of `locus average`.
#[derive(Args)]
pub struct AverageArgs {
    /// Checkpoint directories to average, e.g. runs/x/checkpoints/step-00001100; with --last,
    /// one run directory.
    #[arg(required = true, value_name = "CKPT")]
    inputs: Vec<PathBuf>,
    /// Average the N newest checkpoints (by update) of the run directory given.
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Where to write the averaged checkpoint: a new or empty directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Averages the checkpoints' weights into a new checkpoint directory.
pub fn run(args: AverageArgs) -> Result<()> {
    let inputs = match args.last {
        Some(n) => {
            let [run_dir] = args.inputs.as_slice() else {
                bail!("--last {n} takes one run directory, not {} paths", args.inputs.len());
            };
            newest_checkpoints(run_dir, n).with_context(|| format!("--last {n} {}", run_dir.display()))?
        }
        None => args.inputs,
    };
    let summary = average_checkpoints(&inputs, &args.out)
        .with_context(|| format!("averaging {} checkpoints into {}", inputs.len(), args.out.display()))?;
    eprintln!(
        "averaged {} checkpoint{} ({} tensors, {} parameters):",
        summary.checkpoints.len(),
        if summary.checkpoints.len() == 1 { "" } else { "s" },
        summary.tensors,
        summary.parameters
    );
    for checkpoint in &summary.checkpoints {
        eprintln!("  step {:>8}  {}", checkpoint.step, checkpoint.path.display());
    }
    eprintln!("state.json from {}", summary.state_from.display());
    eprintln!("wrote {} (no optimizer state: translate or evaluate it, not resume)", summary.out.display());
    Ok(())
}
