//! `locus prepare --config FILE [--set section.key=value ...] [--out DIR]`
//!
//! Tokenizes the training and validation corpora of the config's `[data]` section once into a
//! prepared dataset (memory-mapped shards of token ids, a manifest with checksums), which
//! `locus train` reads with `data.prepared = DIR`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use locus_data::{prepare, PrepareOptions};
use locus_train::{Progress, RunConfig};

use crate::progress::ProgressDisplay;

/// Arguments of `locus prepare`.
#[derive(Args)]
pub struct PrepareArgs {
    /// The run config whose [data] section names the corpora.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value, e.g. `--set data.vocab_size=32000` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
    /// Where to write the dataset (a new directory); default: `data.prepared` of the config.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prepares the corpora and prints what was kept and dropped.
pub fn run(args: PrepareArgs) -> Result<()> {
    let config = RunConfig::load(&args.config, &args.overrides)
        .with_context(|| format!("loading config {}", args.config.display()))?;
    let Some(out) = args.out.or(config.data.prepared.clone()) else {
        bail!("say where to write the dataset: --out DIR, or data.prepared = DIR in the config");
    };
    if out.exists() {
        bail!("{} already exists; remove it or choose another --out", out.display());
    }
    let display = ProgressDisplay::new();
    let options =
        PrepareOptions { tokenizer: None, progress: &|event| display.show(Progress::Prepare(event)) };
    let manifest = prepare(&config.data, &out, options).context("preparing the data")?;
    drop(display);
    let report = locus_train::setup::train_report(&manifest);
    let tokens: u64 = manifest.corpora.iter().map(|c| c.src_tokens + c.tgt_tokens).sum();
    let lines: usize = manifest.corpora.iter().map(|c| c.lines).sum();
    eprintln!("train: {report}");
    eprintln!("valid: {}", locus_train::setup::valid_report(&manifest));
    eprintln!(
        "{} pairs ({tokens} tokens, vocabulary {}) in {:.1} s: {:.0} pairs/s; wrote {}",
        manifest.train.pairs,
        manifest.vocab_size,
        manifest.seconds,
        lines as f64 / manifest.seconds.max(1e-9),
        out.display()
    );
    Ok(())
}
