//! `locus translate --checkpoint DIR [--input FILE] [--output FILE]`

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use locus_train::{load_checkpoint, Translator};

use crate::device::parse_device;

/// Arguments of `locus translate`.
#[derive(Args)]
pub struct TranslateArgs {
    /// A checkpoint directory, e.g. runs/multi30k-de-en/best.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Source text, one sentence per line (plain or .gz); stdin by default.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write translations; stdout by default.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Sentences decoded together.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

fn read_input(input: &Option<PathBuf>) -> Result<Vec<String>> {
    match input {
        Some(path) => Ok(locus_data::read_lines_allow_empty(path)?),
        None => {
            let mut lines = Vec::new();
            for (i, line) in std::io::stdin().lock().lines().enumerate() {
                lines.push(line.with_context(|| format!("reading stdin line {}", i + 1))?);
            }
            Ok(lines)
        }
    }
}

/// Translates every input line, one output line each, in order.
pub fn run(args: TranslateArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let checkpoint = load_checkpoint(&args.checkpoint, &device)?;
    let lines = read_input(&args.input)?;
    let mut translator = Translator::new(&checkpoint.model, &checkpoint.tokenizer);
    translator.batch_size = args.batch_size;
    let outputs = translator.translate(&lines)?;
    let mut sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for line in outputs {
        writeln!(sink, "{line}")?;
    }
    sink.flush()?;
    Ok(())
}
