//! `locus`: train, translate with and evaluate encoder-decoder Transformers.
//!
//! A thin layer over the `locus-train` library: argument parsing, device choice, file handling
//! and output formatting. Errors are printed with their whole chain of causes.

mod allocator;
mod commands;
mod device;
mod plot;
mod run_history;
mod search_args;

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
    /// Translate lines (stdin or a file) with a checkpoint: greedy, beam search or sampling.
    Translate(commands::translate::TranslateArgs),
    /// Score checkpoints on a source/reference pair: BLEU, chrF, TER, loss and perplexity.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Inspect positional encodings (`locus pe show`).
    Pe(commands::pe::PeArgs),
    /// Draw a run's loss, BLEU and learning rate against steps (from its metrics.jsonl).
    Plot(commands::plot::PlotArgs),
    /// Average the weights of checkpoints of one architecture into a new checkpoint.
    Average(commands::average::AverageArgs),
    /// Measure training or translation throughput on this machine.
    Bench(commands::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Translate(args) => commands::translate::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Pe(args) => commands::pe::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Average(args) => commands::average::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
