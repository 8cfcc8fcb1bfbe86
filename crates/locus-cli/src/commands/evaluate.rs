//! `locus evaluate --checkpoint DIR [--checkpoint DIR ...] --src FILE --ref FILE [--json]
//! [--by-length [BUCKETS]]`
//!
//! Each checkpoint translates the source exactly as `locus translate` would (same search
//! options) and is scored against the reference with sacreBLEU's BLEU and chrF (signatures
//! printed) and the reference's loss and perplexity under the model. Several checkpoints give
//! one table. `--by-length` adds, per checkpoint, BLEU and chrF of each source-length bucket's
//! sentences alone.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use locus_data::LengthBuckets;
use locus_metrics::{bleu_signature, chrf_signature, ter_signature};
use locus_train::evaluate::{evaluate_by_length, BucketEvaluation};
use locus_train::{evaluate, load_checkpoint, Evaluation, Translator};
use serde_json::json;

use crate::commands::translate::RopeScalingArgs;
use crate::device::parse_device;
use crate::pool::WorkerArgs;
use crate::quantize_args::QuantizeArgs;
use crate::search_args::SearchArgs;

/// Arguments of `locus evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// Checkpoint directories, e.g. runs/multi30k-de-en/best (repeat the flag or list several).
    #[arg(long, required = true, num_args = 1..)]
    checkpoint: Vec<PathBuf>,
    /// Source sentences (plain or .gz).
    #[arg(long)]
    src: PathBuf,
    /// Reference translations, line by line with --src (plain or .gz).
    #[arg(long = "ref")]
    reference: PathBuf,
    /// Also write the translations: to this file for one checkpoint; for several, into this
    /// directory as `<position>-step-<update>.txt`.
    #[arg(long)]
    hypotheses: Option<PathBuf>,
    /// Print one JSON object per checkpoint instead of text.
    #[arg(long)]
    json: bool,
    /// Also score each source-length bucket's sentences alone (BLEU, chrF, mean source
    /// length): a table per checkpoint, or a "by_length" list in each JSON object. BUCKETS
    /// are comma-separated inclusive ranges of source length counted in source tokenizer
    /// tokens, without EOS, shortest first; the last may be open ("41-"). Without a value:
    /// 1-10,11-20,21-30,31-40,41-.
    #[arg(long, value_name = "BUCKETS", num_args = 0..=1, default_missing_value = DEFAULT_BUCKETS)]
    by_length: Option<LengthBuckets>,
    /// Sentences decoded together.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[command(flatten)]
    pub(crate) workers: WorkerArgs,
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

/// The buckets of `--by-length` without a value.
const DEFAULT_BUCKETS: &str = "1-10,11-20,21-30,31-40,41-";

/// One checkpoint's scores.
struct Row {
    checkpoint: PathBuf,
    step: usize,
    result: Evaluation,
    /// Per-bucket scores, with `--by-length`.
    by_length: Option<Vec<BucketEvaluation>>,
    seconds: f64,
}

/// Where the hypotheses of checkpoint `index` (from 0) go, if anywhere.
fn hypotheses_path(args: &EvaluateArgs, index: usize, step: usize) -> Result<Option<PathBuf>> {
    let Some(path) = &args.hypotheses else { return Ok(None) };
    if args.checkpoint.len() == 1 {
        return Ok(Some(path.clone()));
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Some(path.join(format!("{}-step-{step:08}.txt", index + 1))))
}

fn evaluate_one(args: &EvaluateArgs, index: usize, sources: &[String], references: &[String]) -> Result<Row> {
    args.search.resolve()?;
    let device = parse_device(&args.device)?;
    let path = &args.checkpoint[index];
    let checkpoint = load_checkpoint(path, &device)?;
    let model = args.rope.apply(args.quantize.for_inference(&checkpoint.model)?)?;
    let mut translator = Translator::new(&model, &checkpoint.tokenizer);
    translator.batch_size = args.batch_size;
    translator.workers = args.workers.count_on(&device);
    args.search.configure(&mut translator)?;
    let max_tokens = checkpoint.config.data.max_tokens;
    let started = std::time::Instant::now();
    let result = evaluate(&translator, &model, &checkpoint.tokenizer, sources, references, max_tokens)
        .with_context(|| format!("evaluating {}", path.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(out) = hypotheses_path(args, index, checkpoint.state.step)? {
        std::fs::write(&out, result.hypotheses.join("\n") + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let by_length = args
        .by_length
        .as_ref()
        .map(|buckets| {
            evaluate_by_length(&checkpoint.tokenizer, sources, &result.hypotheses, references, buckets)
        })
        .transpose()
        .with_context(|| format!("scoring {} by source length", path.display()))?;
    Ok(Row { checkpoint: path.clone(), step: checkpoint.state.step, result, by_length, seconds })
}

/// The `by_length` list of the JSON output.
fn by_length_json(buckets: &[BucketEvaluation]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = buckets
        .iter()
        .map(|b| {
            json!({
                "bucket": b.bucket.to_string(), "sentences": b.sentences,
                "bleu": b.bleu.as_ref().map(|s| s.score), "chrf": b.chrf.as_ref().map(|s| s.score),
                "mean_src_len": b.mean_src_len,
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

fn print_json(row: &Row) {
    let r = &row.result;
    let mut record = json!({
        "checkpoint": row.checkpoint, "step": row.step, "sentences": r.sentences,
        "bleu": r.bleu.score, "chrf": r.chrf.score, "ter": r.ter.score, "loss": r.loss.nll,
        "ppl": r.loss.ppl(), "bleu_signature": bleu_signature(1), "chrf_signature": chrf_signature(1),
        "ter_signature": ter_signature(1),
        "bleu_detail": r.bleu.to_string(), "seconds": row.seconds,
        "sentences_per_s": r.sentences as f64 / row.seconds.max(1e-9),
    });
    if let Some(buckets) = &row.by_length {
        record["by_length"] = by_length_json(buckets);
    }
    println!("{record}");
}

fn print_one(row: &Row) {
    let r = &row.result;
    println!(
        "{} sentences, checkpoint {} (step {}), {:.1} s ({:.0} sentences/s)",
        r.sentences,
        row.checkpoint.display(),
        row.step,
        row.seconds,
        r.sentences as f64 / row.seconds.max(1e-9)
    );
    println!("{}  [{}]", r.bleu, bleu_signature(1));
    println!("{}  [{}]", r.chrf, chrf_signature(1));
    println!("{}  [{}]", r.ter, ter_signature(1));
    println!("loss {:.4} nats/token, ppl {:.2}", r.loss.nll, r.loss.ppl());
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|row| row.checkpoint.display().to_string().len()).max().unwrap_or(10).max(10);
    println!(
        "{:<width$}  {:>8}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  {:>9}",
        "checkpoint", "step", "BLEU", "chrF", "TER", "loss", "ppl", "sent/s"
    );
    for row in rows {
        let r = &row.result;
        println!(
            "{:<width$}  {:>8}  {:>6.2}  {:>6.2}  {:>6.2}  {:>7.4}  {:>7.2}  {:>9.1}",
            row.checkpoint.display(),
            row.step,
            r.bleu.score,
            r.chrf.score,
            r.ter.score,
            r.loss.nll,
            r.loss.ppl(),
            r.sentences as f64 / row.seconds.max(1e-9)
        );
    }
    println!("BLEU: {}", bleu_signature(1));
    println!("chrF: {}", chrf_signature(1));
    println!("TER:  {}", ter_signature(1));
}

/// `value` with `decimals` decimals right-aligned in `width`, or `-` when there is none.
fn cell(value: Option<f64>, width: usize, decimals: usize) -> String {
    match value {
        Some(value) => format!("{value:>width$.decimals$}"),
        None => format!("{:>width$}", "-"),
    }
}

/// One checkpoint's `--by-length` table.
fn print_by_length(row: &Row, buckets: &[BucketEvaluation]) {
    println!();
    println!(
        "by source length (source tokenizer tokens, without EOS): {} (step {})",
        row.checkpoint.display(),
        row.step
    );
    let width = buckets.iter().map(|b| b.bucket.to_string().len()).max().unwrap_or(6).max(6);
    println!("{:<width$}  {:>9}  {:>6}  {:>6}  {:>7}", "bucket", "sentences", "BLEU", "chrF", "src len");
    for b in buckets {
        println!(
            "{:<width$}  {:>9}  {}  {}  {}",
            b.bucket.to_string(),
            b.sentences,
            cell(b.bleu.as_ref().map(|s| s.score), 6, 2),
            cell(b.chrf.as_ref().map(|s| s.score), 6, 2),
            cell(b.mean_src_len, 7, 1)
        );
    }
}

fn read_pair(src: &Path, reference: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let sources = locus_data::read_lines_allow_empty(src)?;
    let references = locus_data::read_lines_allow_empty(reference)?;
    if sources.len() != references.len() {
        bail!(
            "{} has {} lines but {} has {} lines",
            src.display(),
            sources.len(),
            reference.display(),
            references.len()
        );
    }
    Ok((sources, references))
}

/// Translates the source with each checkpoint and scores it.
pub fn run(args: EvaluateArgs) -> Result<()> {
    args.search.resolve()?;
    let (sources, references) = read_pair(&args.src, &args.reference)?;
    let mut rows = Vec::new();
    for index in 0..args.checkpoint.len() {
        let row = evaluate_one(&args, index, &sources, &references)?;
        if args.json {
            print_json(&row);
        }
        rows.push(row);
    }
    match rows.as_slice() {
        _ if args.json => return Ok(()),
        [row] => print_one(row),
        rows => print_table(rows),
    }
    for row in &rows {
        if let Some(buckets) = &row.by_length {
            print_by_length(row, buckets);
        }
    }
    Ok(())
}
