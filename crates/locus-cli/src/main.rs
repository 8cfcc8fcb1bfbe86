//! `locus`: train, translate with and evaluate encoder-decoder Transformers.
//!
//! A thin layer over the `locus-train` library: argument parsing, device choice, file handling
//! and output formatting. Errors are printed with their whole chain of causes.

// No unwrap or expect outside tests: every failure reaches main as an error with its context.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod allocator;
mod commands;
mod device;
mod job;
mod plot;
mod pool;
mod progress;
mod quantize_args;
mod search_args;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's allocator, keeping freed memory, with huge pages for the largest blocks in training
/// (see [`allocator`]).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

/// Train, translate with and evaluate encoder-decoder Transformers.
#[derive(Parser)]
#[command(name = "locus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for matrix products and other parallel work (default: one per physical
    /// core; under mpirun or srun, the machine's share of each rank on it). Sets candle's and rayon's pools (`CANDLE_NUM_THREADS`, `RAYON_NUM_THREADS`).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

#[derive(Subcommand)]
enum Command {
    /// Tokenize a config's corpora once into a memory-mapped prepared dataset.
    Prepare(commands::prepare::PrepareArgs),
    /// Train a model from a TOML run config.
    Train(commands::train::TrainArgs),
    /// Translate lines (stdin or a file) with a checkpoint: greedy, beam search or sampling.
    Translate(commands::translate::TranslateArgs),
    /// Score checkpoints on a source/reference pair: BLEU, chrF, TER, loss and perplexity.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Score any system's output against references exactly like the sacrebleu command:
    /// BLEU (any tokenizer), chrF and TER with their signatures.
    Score(commands::score::ScoreArgs),
    /// Train and test a grid of encodings × synthetic tasks × seeds on length extrapolation.
    Lab(commands::lab::LabArgs),
    /// Draw what a checkpoint attends to when it translates a sentence: encoder, decoder and
    /// cross-attention heatmaps with the tokens on the axes.
    Attention(commands::attention::AttentionArgs),
    /// Inspect positional encodings (`locus pe show`).
    Pe(commands::pe::PeArgs),
    /// Draw a run's loss, BLEU and learning rate against steps (from its metrics.jsonl).
    Plot(commands::plot::PlotArgs),
    /// Average the weights of checkpoints of one architecture into a new checkpoint.
    Average(commands::average::AverageArgs),
    /// Measure training or translation throughput on this machine.
    Bench(commands::bench::BenchArgs),
    /// Serve translations over HTTP (JSON), batching concurrent requests.
    Serve(commands::serve::ServeArgs),
    /// Export a checkpoint to another inference engine (`locus export ctranslate2`).
    Export(commands::export::ExportArgs),
}

/// Sizes the thread pools before any of them starts: candle's own pool and the size it gives
/// its matrix products read `CANDLE_NUM_THREADS` and `RAYON_NUM_THREADS`, and rayon's global
/// pool (Locus's fused ops) reads `RAYON_NUM_THREADS` when it is first used.
fn set_thread_count(threads: u16) {
    // Written before any other thread starts, so nothing reads the environment meanwhile.
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
}

impl Command {
    /// The `--workers` of a command that decodes.
    fn workers_mut(&mut self) -> Option<&mut pool::WorkerArgs> {
        match self {
            Command::Translate(args) => Some(&mut args.workers),
            Command::Evaluate(args) => Some(&mut args.workers),
            Command::Bench(args) => args.workers_mut(),
            Command::Serve(args) => Some(&mut args.workers),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let mut cli = Cli::parse();
    let threads = cli.threads.or_else(job::threads_per_local_rank);
    if let Some(workers) = cli.command.workers_mut() {
        // Each worker's pool, and the global one it is started from, get its share.
        let all = threads.map_or_else(candle_core::utils::get_num_threads, usize::from);
        set_thread_count(u16::try_from(workers.resolve(all)).unwrap_or(u16::MAX));
    } else if let Some(threads) = threads {
        set_thread_count(threads);
    }
    let result = match cli.command {
        Command::Prepare(args) => commands::prepare::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Translate(args) => pool::on_a_pool_thread(|| commands::translate::run(args)),
        Command::Evaluate(args) => pool::on_a_pool_thread(|| commands::evaluate::run(args)),
        Command::Score(args) => commands::score::run(args),
        Command::Lab(args) => commands::lab::run(args),
        Command::Attention(args) => commands::attention::run(args),
        Command::Pe(args) => commands::pe::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Average(args) => commands::average::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Export(args) => commands::export::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
