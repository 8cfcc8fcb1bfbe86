//! `locus score --hyp FILE --ref FILE [--ref FILE ...] [--metrics bleu,chrf,ter]
//! [--tokenize 13a|none|intl|char|zh] [--lowercase] [--json]`
//!
//! Scores any system's output the way the `sacrebleu` command does (sacreBLEU 2.6.0): the
//! files are read as sacreBLEU reads them, the options mean what sacreBLEU's options of the
//! same names mean (`--lowercase` is BLEU's alone, as there; chrF and TER have their own),
//! and the output is sacreBLEU's text report, or with `--json` its JSON, signatures
//! included. `locus score --hyp h --ref r1 --ref r2 --json` prints what
//! `sacrebleu r1 r2 -i h -m bleu chrf ter` prints.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use locus_data::corpus::open_decompressed;
use locus_metrics::{
    corpus_bleu_with, corpus_chrf_with, corpus_ter_with, json_report, split_segments, text_report,
    BleuParams, BleuTokenizer, ChrfParams, ScoreReport, TerParams,
};

/// A metric `locus score` can compute, in the order sacreBLEU reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Metric {
    /// BLEU (sacreBLEU's `--tokenize` and `--lowercase` apply).
    Bleu,
    /// chrF, or chrF++ with `--chrf-word-order 2`.
    Chrf,
    /// TER, case-insensitive unless `--ter-case-sensitive`.
    Ter,
}

/// Arguments of `locus score`.
#[derive(Args)]
pub struct ScoreArgs {
    /// The system output to score, one segment per line (plain or .gz).
    #[arg(long, value_name = "FILE")]
    hyp: PathBuf,
    /// A reference translation, line by line with --hyp (plain or .gz). Repeat the flag (or
    /// list several files) for several references per segment.
    #[arg(long = "ref", value_name = "FILE", required = true, num_args = 1..)]
    refs: Vec<PathBuf>,
    /// Metrics to compute, comma-separated; reported in sacreBLEU's order (BLEU, chrF, TER).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Metric::Bleu, Metric::Chrf, Metric::Ter])]
    metrics: Vec<Metric>,
    /// BLEU's tokenizer: 13a (mteval-v13a, sacreBLEU's default), none, intl (mteval-v14:
    /// Unicode punctuation and symbols), char (every character) or zh (Chinese characters,
    /// then 13a's rules).
    #[arg(long, value_name = "TOKENIZER", default_value = "13a", value_parser = tokenizer_parser())]
    tokenize: BleuTokenizer,
    /// Lowercase before computing BLEU (sacreBLEU's --lowercase, which applies to BLEU only).
    #[arg(long)]
    lowercase: bool,
    /// Lowercase before computing chrF (sacreBLEU's --chrf-lowercase).
    #[arg(long)]
    chrf_lowercase: bool,
    /// chrF's word n-gram order: 2 gives chrF++ (sacreBLEU's --chrf-word-order).
    #[arg(long, value_name = "N", default_value_t = 0)]
    chrf_word_order: usize,
    /// Compare words in TER as they are instead of lowercased (sacreBLEU's --ter-case-sensitive).
    #[arg(long)]
    ter_case_sensitive: bool,
    /// Decimals of the scores printed (sacreBLEU's --width).
    #[arg(long, value_name = "N", default_value_t = 1)]
    width: usize,
    /// Print sacreBLEU's JSON (its --format json): one document, or a list of them for
    /// several metrics.
    #[arg(long)]
    json: bool,
}

/// Parses a BLEU tokenizer by its sacreBLEU name, offering every name.
fn tokenizer_parser() -> impl TypedValueParser<Value = BleuTokenizer> {
    PossibleValuesParser::new(BleuTokenizer::ALL.map(BleuTokenizer::name))
        .try_map(|name| name.parse::<BleuTokenizer>())
}

/// Scores the hypotheses against the references and prints sacreBLEU's report.
pub fn run(args: ScoreArgs) -> Result<()> {
    let hyp_text = read_text(&args.hyp)?;
    let hyps = split_segments(&hyp_text);
    if hyps.is_empty() {
        bail!("{} has no lines: there is nothing to score", args.hyp.display());
    }
    let ref_texts = args.refs.iter().map(|path| read_text(path)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<Vec<&str>> = ref_texts.iter().map(|text| split_segments(text)).collect();
    for (path, stream) in args.refs.iter().zip(&refs) {
        if stream.len() != hyps.len() {
            bail!(
                "line counts differ: {} has {} lines but the hypotheses {} have {}",
                path.display(),
                stream.len(),
                args.hyp.display(),
                hyps.len()
            );
        }
    }

    let reports = score(&args, &hyps, &refs).with_context(|| format!("scoring {}", args.hyp.display()))?;
    if args.json {
        print!("{}", json_report(&reports, args.width));
    } else {
        print!("{}", text_report(&reports, args.width));
    }
    Ok(())
}

/// The report of each metric asked for, once each, in sacreBLEU's order.
fn score(args: &ScoreArgs, hyps: &[&str], refs: &[Vec<&str>]) -> Result<Vec<ScoreReport>> {
    let mut metrics = args.metrics.clone();
    metrics.sort();
    metrics.dedup();
    let nrefs = refs.len();
    let mut reports = Vec::with_capacity(metrics.len());
    for metric in metrics {
        reports.push(match metric {
            Metric::Bleu => {
                let params = BleuParams { tokenizer: args.tokenize, lowercase: args.lowercase };
                ScoreReport::bleu(&corpus_bleu_with(hyps, refs, params)?, &params, nrefs)
            }
            Metric::Chrf => {
                let params = ChrfParams {
                    word_order: args.chrf_word_order,
                    lowercase: args.chrf_lowercase,
                    ..ChrfParams::default()
                };
                ScoreReport::chrf(&corpus_chrf_with(hyps, refs, params)?, &params, nrefs)
            }
            Metric::Ter => {
                let params = TerParams { case_sensitive: args.ter_case_sensitive };
                ScoreReport::ter(&corpus_ter_with(hyps, refs, params)?, &params, nrefs)
            }
        });
    }
    Ok(reports)
}

/// The whole text of `path`, decompressed when its name ends in `.gz` (as sacreBLEU's
/// `smart_open`), which must be UTF-8.
fn read_text(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    let read = |bytes: &mut Vec<u8>| -> Result<usize> { Ok(open_decompressed(path)?.read_to_end(bytes)?) };
    read(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!("{} is not UTF-8 text: line {line} has invalid bytes", path.display())
    })
}
