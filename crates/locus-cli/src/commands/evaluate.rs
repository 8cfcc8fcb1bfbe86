//! `locus evaluate --checkpoint DIR --src FILE --ref FILE [--json]`

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use locus_train::metrics::{bleu_signature, chrf_signature};
use locus_train::{evaluate, load_checkpoint, Translator};
use serde_json::json;

use crate::device::parse_device;

/// Arguments of `locus evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// A checkpoint directory, e.g. runs/multi30k-de-en/best.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Source sentences (plain or .gz).
    #[arg(long)]
    src: PathBuf,
    /// Reference translations, line by line with --src (plain or .gz).
    #[arg(long = "ref")]
    reference: PathBuf,
    /// Also write the translations here.
    #[arg(long)]
    hypotheses: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Sentences decoded together.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Translates the source as `locus translate` would and scores it.
pub fn run(args: EvaluateArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let checkpoint = load_checkpoint(&args.checkpoint, &device)?;
    let sources = locus_data::read_lines_allow_empty(&args.src)?;
    let references = locus_data::read_lines_allow_empty(&args.reference)?;
    if sources.len() != references.len() {
        bail!(
            "{} has {} lines but {} has {} lines",
            args.src.display(),
            sources.len(),
            args.reference.display(),
            references.len()
        );
    }
    let mut translator = Translator::new(&checkpoint.model, &checkpoint.tokenizer);
    translator.batch_size = args.batch_size;
    let max_tokens = checkpoint.config.data.max_tokens;
    let result =
        evaluate(&translator, &checkpoint.model, &checkpoint.tokenizer, &sources, &references, max_tokens)
            .context("evaluating")?;
    if let Some(path) = &args.hypotheses {
        std::fs::write(path, result.hypotheses.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let record = json!({
            "checkpoint": args.checkpoint, "step": checkpoint.state.step, "sentences": result.sentences,
            "bleu": result.bleu.score, "chrf": result.chrf.score,
            "loss": result.loss.nll, "ppl": result.loss.ppl(),
            "bleu_signature": bleu_signature(1), "chrf_signature": chrf_signature(1),
            "bleu_detail": result.bleu.to_string(),
        });
        println!("{record}");
    } else {
        println!(
            "{} sentences, checkpoint {} (step {})",
            result.sentences,
            args.checkpoint.display(),
            checkpoint.state.step
        );
        println!("{}  [{}]", result.bleu, bleu_signature(1));
        println!("{}  [{}]", result.chrf, chrf_signature(1));
        println!("loss {:.4} nats/token, ppl {:.2}", result.loss.nll, result.loss.ppl());
    }
    Ok(())
}
