//! `locus export ctranslate2 --checkpoint DIR --out DIR [--quantization int8]`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use locus_train::export::ctranslate2::DEFAULT_MAX_POSITIONS;
use locus_train::export::{export_ctranslate2, ExportOptions, Quantization};

/// Arguments of `locus export`.
#[derive(Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    to: Export,
}

#[derive(Subcommand)]
enum Export {
    /// Write a CTranslate2 model directory (model.bin, config.json, shared_vocabulary.json).
    Ctranslate2(Ctranslate2Args),
}

/// Arguments of `locus export ctranslate2`.
#[derive(Args)]
struct Ctranslate2Args {
    /// The checkpoint to export (a checkpoints/step-* directory, or a run's `best` or `last`).
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    /// The CTranslate2 model directory to write: a new or empty directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Store linear and embedding weights as int8 with a scale per row (CTranslate2's `int8`);
    /// `float32` (the default) keeps them as trained.
    #[arg(long, value_name = "TYPE", default_value = "float32")]
    quantization: Quantization,
    /// Rows of the explicit position table written for `sinusoidal` and `none` stacks: the
    /// longest source (with its EOS) and output CTranslate2 can then handle.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_POSITIONS)]
    max_positions: usize,
}

/// Runs `locus export`.
pub fn run(args: ExportArgs) -> Result<()> {
    match args.to {
        Export::Ctranslate2(args) => ctranslate2(args),
    }
}

fn ctranslate2(args: Ctranslate2Args) -> Result<()> {
    let options = ExportOptions { quantization: args.quantization, max_positions: args.max_positions };
    let summary = export_ctranslate2(&args.checkpoint, &args.out, &options).with_context(|| {
        format!("exporting {} to CTranslate2 in {}", args.checkpoint.display(), args.out.display())
    })?;
    eprintln!(
        "wrote {} ({} variables, {} aliases, {} tokens, {})",
        args.out.display(),
        summary.variables,
        summary.aliases,
        summary.vocab_size,
        match args.quantization {
            Quantization::Float32 => "float32",
            Quantization::Int8 => "int8",
        }
    );
    let limit =
        |n: Option<usize>| n.map_or_else(|| "any length".to_string(), |n| format!("at most {n} tokens"));
    eprintln!(
        "CTranslate2 limits: sources {} (plus EOS), outputs {}",
        limit(summary.max_source_tokens),
        limit(summary.max_output_tokens)
    );
    Ok(())
}
