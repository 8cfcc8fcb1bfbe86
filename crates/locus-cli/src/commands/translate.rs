//! `locus translate --checkpoint DIR [--input FILE] [--output FILE] [search options]`
//!
//! Reads stdin as it arrives (so `locus translate` works in a pipe, answering each line as
//! soon as it can while batching whatever input is waiting), or a file with a progress bar.
//! Output keeps input order, one line per input line; see [`Format`] for the formats.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use locus_train::translate::Translation;
use locus_train::{load_checkpoint, Translator};
use serde_json::json;

use crate::device::parse_device;
use crate::search_args::SearchArgs;

/// Most lines translated together from a file, or from stdin when that much is waiting: long
/// enough for batches of similar lengths, short enough for steady output.
const CHUNK_LINES: usize = 1024;

/// How translations are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One translation per input line; with `--scores`, `SCORE<TAB>TRANSLATION`; with
    /// `--nbest K`, K lines per input line: `LINE<TAB>SCORE<TAB>TRANSLATION` (LINE counts from 1).
    Text,
    /// One JSON object per input line: `line`, `translation`, `score`, `log_prob`, and with
    /// `--nbest K` an `nbest` list of `{translation, score, log_prob}`, best first.
    Jsonl,
}

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
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Print each translation's model score (natural log; length-normalised with --beam).
    #[arg(long)]
    scores: bool,
    /// Sentences decoded together.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[command(flatten)]
    search: SearchArgs,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Input lines, delivered in chunks: a file's in fixed chunks, stdin's as they arrive.
enum LineSource {
    File(std::vec::IntoIter<String>),
    Stdin(mpsc::Receiver<Result<String>>),
}

impl LineSource {
    /// The next chunk, or `None` at the end. From stdin, waits for one line, then takes
    /// whatever else is already waiting.
    fn next_chunk(&mut self) -> Option<Result<Vec<String>>> {
        match self {
            Self::File(lines) => {
                let chunk: Vec<String> = lines.take(CHUNK_LINES).collect();
                (!chunk.is_empty()).then_some(Ok(chunk))
            }
            Self::Stdin(receiver) => {
                let first = match receiver.recv() {
                    Ok(line) => line,
                    Err(_) => return None,
                };
                let mut chunk = match first {
                    Ok(line) => vec![line],
                    Err(err) => return Some(Err(err)),
                };
                while chunk.len() < CHUNK_LINES {
                    match receiver.try_recv() {
                        Ok(Ok(line)) => chunk.push(line),
                        Ok(Err(err)) => return Some(Err(err)),
                        Err(_) => break,
                    }
                }
                Some(Ok(chunk))
            }
        }
    }
}

/// Reads stdin on a thread, one line at a time, so that translation can start before the end.
fn stdin_lines() -> mpsc::Receiver<Result<String>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.with_context(|| format!("reading stdin line {}", i + 1));
            let failed = line.is_err();
            if sender.send(line).is_err() || failed {
                break;
            }
        }
    });
    receiver
}

fn progress_bar(lines: usize) -> ProgressBar {
    let bar = ProgressBar::new(lines as u64);
    let style = ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} lines | {per_sec} | ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

/// Writes the translations of one input line (`line` counts from 1).
fn write_translations(
    sink: &mut dyn Write,
    line: usize,
    list: &[Translation],
    args: &TranslateArgs,
) -> Result<()> {
    let best = &list[0];
    match args.format {
        Format::Jsonl => {
            let mut record = json!({
                "line": line, "translation": best.text, "score": best.score, "log_prob": best.log_prob,
            });
            if args.search.nbest() > 1 {
                let nbest: Vec<_> = list
                    .iter()
                    .map(|t| json!({ "translation": t.text, "score": t.score, "log_prob": t.log_prob }))
                    .collect();
                record["nbest"] = json!(nbest);
            }
            writeln!(sink, "{record}")?;
        }
        Format::Text if args.search.nbest() > 1 => {
            for translation in list {
                writeln!(sink, "{line}\t{:.4}\t{}", translation.score, translation.text)?;
            }
        }
        Format::Text if args.scores => writeln!(sink, "{:.4}\t{}", best.score, best.text)?,
        Format::Text => writeln!(sink, "{}", best.text)?,
    }
    Ok(())
}

/// Translates every input line, in order.
pub fn run(args: TranslateArgs) -> Result<()> {
    let (search, limits) = args.search.resolve()?;
    let device = parse_device(&args.device)?;
    let checkpoint = load_checkpoint(&args.checkpoint, &device)?;
    let (mut source, bar) = match &args.input {
        Some(path) => {
            let lines = locus_data::read_lines_allow_empty(path)?;
            let bar = progress_bar(lines.len());
            (LineSource::File(lines.into_iter()), bar)
        }
        None => (LineSource::Stdin(stdin_lines()), ProgressBar::hidden()),
    };
    let mut translator = Translator::new(&checkpoint.model, &checkpoint.tokenizer);
    translator.batch_size = args.batch_size;
    translator.search = search;
    translator.limits = limits;
    let mut sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut done = 0;
    while let Some(chunk) = source.next_chunk() {
        let chunk = chunk?;
        for (i, list) in translator.translate_nbest(&chunk, done)?.iter().enumerate() {
            write_translations(sink.as_mut(), done + i + 1, list, &args)?;
        }
        sink.flush()?;
        done += chunk.len();
        bar.set_position(done as u64);
    }
    bar.finish_and_clear();
    Ok(())
}
