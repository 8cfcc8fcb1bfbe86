//! `locus plot --run DIR --out FILE`: a run's curves at a glance, from its `metrics.jsonl`:
//! training and validation loss, validation BLEU and chrF, and the learning rate, against steps.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::plot::colormap::Rgb;
use crate::plot::{draw_line_charts, LinePanel, Series};
use locus_train::run_history::{RunHistory, TrainPoint, ValidPoint};

/// Arguments of `locus plot`.
#[derive(Args)]
pub struct PlotArgs {
    /// The run directory (train.out_dir), which holds metrics.jsonl.
    #[arg(long)]
    run: PathBuf,
    /// Output file, .svg or .png.
    #[arg(long)]
    out: PathBuf,
}

/// Series colours (Tableau 10): training curves are blue and cyan, validation curves red, orange,
/// green and purple, the learning rate brown.
const TRAIN_LOSS: Rgb = [31, 119, 180];
const TRAIN_NLL: Rgb = [23, 190, 207];
const VALID_LOSS: Rgb = [214, 39, 40];
const VALID_NLL: Rgb = [255, 127, 14];
const BLEU: Rgb = [44, 160, 44];
const CHRF: Rgb = [148, 103, 189];
const LR: Rgb = [140, 86, 75];

/// Draws the run's curves: three panels stacked, sharing the step axis.
pub fn run(args: PlotArgs) -> Result<()> {
    let history = RunHistory::read(&args.run)?;
    draw_line_charts(&panels(&history), 1, &args.out)?;
    eprintln!(
        "wrote {} ({} training and {} validation records)",
        args.out.display(),
        history.train.len(),
        history.valid.len()
    );
    Ok(())
}

/// Loss, scores and learning rate: the panels, top to bottom.
fn panels(history: &RunHistory) -> Vec<LinePanel> {
    let train = |f: fn(&TrainPoint) -> Option<f64>| history.train.iter().map(move |p| (p.step, f(p)));
    let valid = |f: fn(&ValidPoint) -> Option<f64>| history.valid.iter().map(move |p| (p.step, f(p)));
    let panel = |title: &str, y_label: &str, series| LinePanel {
        title: title.to_string(),
        x_label: "step".to_string(),
        y_label: y_label.to_string(),
        series,
    };
    vec![
        panel(
            "Loss (label-smoothed) and negative log-likelihood",
            "nats per token",
            vec![
                series("train loss", TRAIN_LOSS, false, train(|p| p.loss)),
                series("train nll", TRAIN_NLL, false, train(|p| p.nll)),
                series("valid loss", VALID_LOSS, true, valid(|p| p.loss)),
                series("valid nll", VALID_NLL, true, valid(|p| p.nll)),
            ],
        ),
        panel(
            "Validation BLEU and chrF",
            "score",
            vec![
                series("BLEU", BLEU, true, valid(|p| p.bleu)),
                series("chrF", CHRF, true, valid(|p| p.chrf)),
            ],
        ),
        panel("Learning rate", "learning rate", vec![series("learning rate", LR, false, train(|p| p.lr))]),
    ]
}

/// A series of the values that are present, against their steps.
fn series(name: &str, color: Rgb, markers: bool, values: impl Iterator<Item = (u64, Option<f64>)>) -> Series {
    let points = values.filter_map(|(step, v)| Some((step as f64, v?))).collect();
    Series { name: name.to_string(), color, markers, points }
}
