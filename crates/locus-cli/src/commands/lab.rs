//! `locus lab --config FILE [--set KEY=VALUE ...]`: the positional-encoding lab.
//!
//! Trains the grid of the config (encodings × tasks × seeds, cells already finished are
//! skipped), then prints the results table and writes `results.md`, `results.json` and
//! `results.svg` (exact match against test length, one line per encoding, a panel per task)
//! into the lab directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use locus_train::lab::{run_lab, LabConfig, SummaryRow};

use crate::device::parse_device;
use crate::plot::colormap::Rgb;
use crate::plot::{draw_line_charts, LinePanel, Series};
use crate::progress::ProgressDisplay;

/// Arguments of `locus lab`.
#[derive(Args)]
pub struct LabArgs {
    /// The lab config (TOML), e.g. configs/lab/length-extrapolation.toml.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value (repeatable): `seeds=[1]`, `run.train.max_steps=200`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Line colours, one per encoding in config order (matplotlib's tab10).
const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Runs `locus lab`.
pub fn run(args: LabArgs) -> Result<()> {
    let cfg = LabConfig::load(&args.config, &args.overrides)?;
    if cfg.jobs > 1 {
        // Each of the cells trained at once gets an equal share of the threads (`--threads`,
        // or one per physical core); set before any pool starts.
        let per_cell = (candle_core::utils::get_num_threads() / cfg.jobs).max(1);
        crate::set_thread_count(u16::try_from(per_cell).unwrap_or(u16::MAX));
    }
    let device = parse_device(&args.device)?;
    std::fs::create_dir_all(&cfg.out_dir).with_context(|| format!("creating {}", cfg.out_dir.display()))?;
    let started = Instant::now();
    let display = ProgressDisplay::new();
    let lab = run_lab(&cfg, &device, &|event| display.show(event))?;
    drop(display);
    let plot = cfg.out_dir.join("results.svg");
    draw(&cfg, &lab.rows, &plot)?;
    let table = cfg.out_dir.join("results.md");
    print!("{}", std::fs::read_to_string(&table).with_context(|| format!("reading {}", table.display()))?);
    println!(
        "{} cells ({} trained now) in {:.0} s; {}, {} and {}",
        lab.results.len(),
        lab.trained,
        started.elapsed().as_secs_f64(),
        table.display(),
        cfg.out_dir.join("results.json").display(),
        plot.display()
    );
    Ok(())
}

/// Exact match (%) against the middle of each test bucket: a panel per task, a line per encoding.
fn draw(cfg: &LabConfig, rows: &[SummaryRow], out: &Path) -> Result<()> {
    let panels: Vec<LinePanel> = cfg
        .tasks
        .iter()
        .map(|&task| LinePanel {
            title: format!(
                "{task}: exact match by test length (trained on {}–{})",
                cfg.train_lengths.0, cfg.train_lengths.1
            ),
            x_label: "test length (middle of bucket)".into(),
            y_label: "exact match (%)".into(),
            series: cfg
                .encodings
                .iter()
                .enumerate()
                .map(|(i, encoding)| Series {
                    name: encoding.clone(),
                    color: PALETTE[i % PALETTE.len()],
                    markers: true,
                    points: rows
                        .iter()
                        .filter(|r| r.task == task && &r.encoding == encoding)
                        .map(|r| ((r.bucket.0 + r.bucket.1) as f64 / 2.0, 100.0 * r.exact_match.0))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    draw_line_charts(&panels, 1, out)
}
