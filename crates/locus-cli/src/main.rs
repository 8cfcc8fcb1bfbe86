//! `locus`: train, translate with and evaluate encoder-decoder Transformers.
//!
//! A thin layer over the `locus-train` library: argument parsing, device choice, file handling
//! and output formatting. Errors are printed with their whole chain of causes.

mod commands;
mod device;
mod plot;
mod run_history;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Train, translate with and evaluate encoder-decoder Transformers.
#[derive(Parser)]
#[command(name = "locus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a TOML run config.
    Train(commands::train::TrainArgs),
    /// Translate lines (stdin or a file) with a checkpoint, greedily.
    Translate(commands::translate::TranslateArgs),
    /// Score a checkpoint on a source/reference pair: BLEU, chrF, loss and perplexity.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Inspect positional encodings (`locus pe show`).
    Pe(commands::pe::PeArgs),
    /// Draw a run's loss, BLEU and learning rate against steps (from its metrics.jsonl).
    Plot(commands::plot::PlotArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Translate(args) => commands::translate::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Pe(args) => commands::pe::run(args),
        Command::Plot(args) => commands::plot::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
