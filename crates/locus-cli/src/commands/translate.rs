//! `locus translate --checkpoint DIR [--input FILE] [--output FILE] [search options]`
//!
//! Reads stdin as it arrives (so `locus translate` works in a pipe, answering each line as
//! soon as it can while batching whatever input is waiting), or a file with a progress bar.
//! Output keeps input order, one line per input line; see [`Format`] for the formats.
//!
//! Input of any kind and size translates in bounded memory:
//!
//! - lines are read [`CHUNK_LINES`] at a time, translated (sorted by length within the chunk)
//!   and written before the next chunk is read, so memory follows the chunk, not the input;
//! - a file is first read once to count its lines (for the progress bar) and, unless
//!   `--lossy`, to check that it is UTF-8: a bad line is an error naming the file and line
//!   before the model is loaded or anything written. From stdin, the lines before a bad line
//!   are translated and written, then the error names the line; either way the exit status is
//!   non-zero. `--lossy` replaces invalid bytes with U+FFFD and warns naming each line;
//! - sources longer than `--max-source-len` tokens are cropped, with a warning naming the line
//!   (see [`locus_train::translate`] for every limit);
//! - a translation never spans lines: line breaks the model might write become spaces in the
//!   text format.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use locus_data::{DataError, LineReader};
use locus_model::positional::RopeScaling;
use locus_model::Seq2Seq;
use locus_train::translate::{LineTranslation, Translation, DEFAULT_MAX_TOKENS};
use locus_train::{load_checkpoint, Translator};
use serde_json::json;

use crate::device::parse_device;
use crate::pool::WorkerArgs;
use crate::quantize_args::QuantizeArgs;
use crate::search_args::SearchArgs;

/// Most lines translated together from a file, or from stdin when that much is waiting: long
/// enough for batches of similar lengths, short enough for steady output and bounded memory.
pub const CHUNK_LINES: usize = 1024;

/// Warnings of one kind printed line by line; the rest are counted in a summary at the end.
const WARNINGS_PER_KIND: usize = 10;

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
    /// Replace bytes that are not UTF-8 with U+FFFD (with a warning naming the line) instead of
    /// stopping with an error naming the line.
    #[arg(long)]
    lossy: bool,
    /// Most sentences decoded together.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[command(flatten)]
    pub(crate) workers: WorkerArgs,
    /// Most source tokens decoded together: sentences × (longest source + 1), so that a batch
    /// of long lines stays small.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS)]
    max_tokens: usize,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    rope: RopeScalingArgs,
    #[command(flatten)]
    quantize: QuantizeArgs,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// `--rope-scaling` of `locus translate` and `locus evaluate`.
#[derive(Args)]
pub(crate) struct RopeScalingArgs {
    /// Stretch the positions of a RoPE model to read sentences longer than it was trained on:
    /// linear:S (position interpolation), ntk:S (NTK-aware) or yarn:S:L (YaRN, L the training
    /// length in tokens), with S ≥ 1 the factor; formulas in docs/positional-encodings.md.
    #[arg(long, value_name = "SCALING")]
    rope_scaling: Option<RopeScaling>,
}

impl RopeScalingArgs {
    /// `model` with its RoPE positions stretched as asked, or as it is.
    pub(crate) fn apply(&self, model: Seq2Seq) -> Result<Seq2Seq> {
        Ok(match self.rope_scaling {
            Some(scaling) => model.with_rope_scaling(scaling).context("--rope-scaling")?,
            None => model,
        })
    }
}

/// One input line: its text, and whether a `--lossy` reader replaced invalid bytes in it.
struct Line {
    text: String,
    replaced: bool,
}

/// Input lines, delivered in chunks: a file's in fixed chunks, stdin's as they arrive.
enum LineSource {
    File(LineReader),
    Stdin(mpsc::Receiver<Result<Line, DataError>>),
}

impl LineSource {
    /// The next chunk, empty at the end, with the error that ended it early, if any (the lines
    /// before the error are in the chunk). From stdin, waits for one line, then takes whatever
    /// else is already waiting.
    fn next_chunk(&mut self) -> (Vec<Line>, Option<DataError>) {
        let mut chunk = Vec::new();
        match self {
            Self::File(reader) => {
                while chunk.len() < CHUNK_LINES {
                    match reader.next_line() {
                        Ok(Some(text)) => {
                            let text = text.to_owned();
                            chunk.push(Line { text, replaced: reader.replaced_invalid_utf8() });
                        }
                        Ok(None) => break,
                        Err(err) => return (chunk, Some(err)),
                    }
                }
            }
            Self::Stdin(receiver) => {
                match receiver.recv() {
                    Ok(Ok(line)) => chunk.push(line),
                    Ok(Err(err)) => return (chunk, Some(err)),
                    Err(_) => return (chunk, None),
                }
                while chunk.len() < CHUNK_LINES {
                    match receiver.try_recv() {
                        Ok(Ok(line)) => chunk.push(line),
                        Ok(Err(err)) => return (chunk, Some(err)),
                        Err(_) => break,
                    }
                }
            }
        }
        (chunk, None)
    }
}

/// Reads stdin on a thread, one line at a time, so that translation can start before the end.
/// The queue holds at most two chunks: a fast producer waits for the translation instead of
/// filling memory.
fn stdin_lines(lossy: bool) -> mpsc::Receiver<Result<Line, DataError>> {
    let (sender, receiver) = mpsc::sync_channel(2 * CHUNK_LINES);
    std::thread::spawn(move || {
        let mut reader = LineReader::stdin().lossy(lossy);
        loop {
            let line = match reader.next_line() {
                Ok(Some(text)) => {
                    Ok(Line { text: text.to_owned(), replaced: reader.replaced_invalid_utf8() })
                }
                Ok(None) => break,
                Err(err) => Err(err),
            };
            let failed = line.is_err();
            if sender.send(line).is_err() || failed {
                break;
            }
        }
    });
    receiver
}

/// The lines of `path`, read once before translating: checks every line is UTF-8 (unless
/// `lossy`), so that a bad file fails before anything is written.
fn count_lines(path: &Path, lossy: bool) -> Result<usize> {
    LineReader::open(path)?.lossy(lossy).count_to_end().map_err(with_lossy_hint)
}

/// An invalid UTF-8 error says how to translate the file anyway.
fn with_lossy_hint(err: DataError) -> anyhow::Error {
    match err {
        DataError::InvalidUtf8 { .. } => {
            anyhow!("{err} (--lossy translates it with the invalid bytes replaced by U+FFFD)")
        }
        other => other.into(),
    }
}

/// Warnings about input lines, on stderr (above the progress bar): the first
/// [`WARNINGS_PER_KIND`] of each kind one by one, then a count at the end.
struct Warnings<'a> {
    /// The input's name in messages.
    input: &'a str,
    bar: &'a ProgressBar,
    /// Lines cropped, and lines with invalid UTF-8 replaced.
    cropped: usize,
    replaced: usize,
}

impl Warnings<'_> {
    fn warn(&self, count: usize, message: impl FnOnce() -> String) {
        if count <= WARNINGS_PER_KIND {
            let message = message();
            self.bar.suspend(|| eprintln!("warning: {message}"));
        }
    }

    /// Warns about line `line` (from 1) of the input, as read and as translated.
    fn check(&mut self, line: usize, input: &Line, translated: &LineTranslation, source_limit: usize) {
        if input.replaced {
            self.replaced += 1;
            self.warn(self.replaced, || {
                format!("{}:{line}: invalid UTF-8 replaced by U+FFFD (--lossy)", self.input)
            });
        }
        if translated.cropped {
            self.cropped += 1;
            self.warn(self.cropped, || {
                format!(
                    "{}:{line}: the source is longer than {source_limit} tokens; translating its first \
                     {source_limit} (--max-source-len)",
                    self.input
                )
            });
        }
    }

    /// The counts of the warnings not printed one by one.
    fn finish(&self, source_limit: usize) {
        if self.replaced > WARNINGS_PER_KIND {
            let n = self.replaced;
            self.bar.suspend(|| eprintln!("warning: {n} lines of {} had invalid UTF-8 replaced", self.input));
        }
        if self.cropped > WARNINGS_PER_KIND {
            let n = self.cropped;
            self.bar.suspend(|| {
                eprintln!("warning: {n} lines of {} were cropped to {source_limit} tokens", self.input)
            });
        }
    }
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
                writeln!(sink, "{line}\t{:.4}\t{}", translation.score, one_line(&translation.text))?;
            }
        }
        Format::Text if args.scores => writeln!(sink, "{:.4}\t{}", best.score, one_line(&best.text))?,
        Format::Text => writeln!(sink, "{}", one_line(&best.text))?,
    }
    Ok(())
}

/// `text` on one line: line breaks (`\n`, `\r`) become spaces, so that output lines stay
/// aligned with input lines.
fn one_line(text: &str) -> Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        Cow::Owned(text.replace(['\n', '\r'], " "))
    } else {
        Cow::Borrowed(text)
    }
}

/// Translates every input line, in order, one chunk at a time.
pub fn run(args: TranslateArgs) -> Result<()> {
    args.search.resolve()?;
    let (mut source, bar, input) = match &args.input {
        Some(path) => {
            let lines = count_lines(path, args.lossy)?;
            let reader = LineReader::open(path)?.lossy(args.lossy);
            (LineSource::File(reader), progress_bar(lines), path.display().to_string())
        }
        None => (LineSource::Stdin(stdin_lines(args.lossy)), ProgressBar::hidden(), "<stdin>".to_owned()),
    };
    let device = parse_device(&args.device)?;
    let checkpoint = load_checkpoint(&args.checkpoint, &device)?;
    let model = args.rope.apply(args.quantize.for_inference(&checkpoint.model)?)?;
    let mut translator = Translator::new(&model, &checkpoint.tokenizer);
    translator.batch_size = args.batch_size;
    translator.workers = args.workers.count_on(&device);
    translator.max_tokens = args.max_tokens;
    args.search.configure(&mut translator)?;
    let source_limit = translator.source_limit();
    let mut sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut warnings = Warnings { input: &input, bar: &bar, cropped: 0, replaced: 0 };
    let mut done = 0;
    loop {
        let (chunk, error) = source.next_chunk();
        if !chunk.is_empty() {
            let texts: Vec<&str> = chunk.iter().map(|line| line.text.as_str()).collect();
            let translated = translator.translate_lines(&texts, done).with_context(|| {
                format!("translating lines {}-{} of {input}", done + 1, done + chunk.len())
            })?;
            for (i, (line, translated)) in chunk.iter().zip(&translated).enumerate() {
                warnings.check(done + i + 1, line, translated, source_limit);
                write_translations(sink.as_mut(), done + i + 1, &translated.translations, &args)?;
            }
            sink.flush()?;
            done += chunk.len();
            bar.set_position(done as u64);
        }
        if let Some(err) = error {
            bar.finish_and_clear();
            return Err(with_lossy_hint(err));
        }
        if chunk.is_empty() {
            break;
        }
    }
    bar.finish_and_clear();
    warnings.finish(source_limit);
    Ok(())
}
