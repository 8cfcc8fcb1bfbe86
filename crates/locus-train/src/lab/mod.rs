//! The positional-encoding lab: a grid of small models (encodings × synthetic tasks × seeds),
//! each trained on short sequences and tested on longer ones, scored by exact match and
//! per-token accuracy per test-length bucket.
//!
//! Layout of the lab directory (`out_dir`):
//! - `data/<task>-seed<seed>/`: `train`, `valid` and `test-<min>-<max>` source/target files,
//!   generated once per task and seed and shared by every encoding (a fair comparison);
//! - `cells/<encoding>-<task>-seed<seed>/`: the cell's training run (`run/`) and `result.json`,
//!   written last and atomically: a cell with `result.json` is done and is skipped on a re-run;
//! - `results.md`, `results.json` (and the plot the CLI draws).

pub mod config;
pub mod results;
pub mod score;

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use locus_data::read_lines;
use locus_data::synthetic::{generate, write_examples, TaskSpec};
use locus_model::{LengthLimits, Quantization};

use crate::checkpoint::load_checkpoint;
use crate::distributed::SingleProcess;
use crate::error::{Result, TrainError};
use crate::progress::{Observer, Progress};
use crate::trainer::{train, TrainOptions};
use crate::translate::Translator;
pub use config::{Cell, DataFiles, LabConfig};
pub use results::{markdown, summarize, CellResult, SummaryRow};
pub use score::{score, BucketScore};

/// Outputs may run at most 4 tokens past their source's length: every task's target is at
/// most as long as its source, and a learned table (sized by [`LabConfig::max_sequence_len`]
/// plus [`config::OUTPUT_MARGIN`]) must cover every position an output can reach.
const OUTPUT_LIMITS: LengthLimits = LengthLimits { max_len_a: 1.0, max_len_b: 4, min_len: 0 };

/// Name of the marker that says a (task, seed) data directory is complete.
const DATA_DONE: &str = "complete";

/// A seed for one split of a (task, seed) pair's data, so splits never share examples' draws.
fn split_seed(seed: u64, split: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(split)
}

/// Writes the data of `task` and `seed` unless it is already complete.
fn ensure_data(cfg: &LabConfig, cell: &Cell) -> Result<()> {
    let files = DataFiles::new(&cfg.out_dir, cell.task, cell.seed);
    if files.dir.join(DATA_DONE).exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&files.dir).map_err(|e| TrainError::io(&files.dir, e))?;
    let spec = TaskSpec { task: cell.task, symbols: cfg.symbols };
    let (lo, hi) = cfg.train_lengths;
    let mut splits = vec![
        ("train".to_string(), (lo, hi), cfg.train_examples),
        ("valid".to_string(), (lo, hi), cfg.valid_examples),
    ];
    splits.extend(
        cfg.test_lengths.iter().map(|&range| (DataFiles::test_split(range), range, cfg.test_examples)),
    );
    for (index, (split, (lo, hi), count)) in splits.into_iter().enumerate() {
        let examples = generate(&spec, lo..=hi, count, split_seed(cell.seed, index as u64))?;
        write_examples(&examples, &files.file(&split, "src"), &files.file(&split, "tgt"))?;
    }
    let marker = files.dir.join(DATA_DONE);
    std::fs::write(&marker, "").map_err(|e| TrainError::io(&marker, e))
}

/// Trains and tests one cell on its data (written by [`ensure_data`]), and writes its
/// `result.json`. The training run's lines (data, validations) go to `progress`.
fn run_cell(cfg: &LabConfig, cell: &Cell, device: &Device, progress: Observer) -> Result<CellResult> {
    let started = Instant::now();
    let files = DataFiles::new(&cfg.out_dir, cell.task, cell.seed);
    let run = cfg.run_config(cell)?;
    // No result yet: whatever an interrupted attempt left is started over.
    if run.train.out_dir.exists() {
        std::fs::remove_dir_all(&run.train.out_dir).map_err(|e| TrainError::io(&run.train.out_dir, e))?;
    }
    let lines = |event: Progress| match event {
        Progress::Info(_) | Progress::Validated(_) => progress(event),
        Progress::Started { .. }
        | Progress::Updated { .. }
        | Progress::Prepare(_)
        | Progress::Logged(_)
        | Progress::LabStarted { .. }
        | Progress::CellStarted(_)
        | Progress::CellFinished(_) => {}
    };
    let options =
        TrainOptions { progress: &lines, resume: None, should_stop: &|_| false, comm: &SingleProcess };
    let summary = train(&run, device, options)?;
    let checkpoint = load_checkpoint(&run.train.out_dir.join("best"), device)?;
    let mut model = checkpoint.model.for_inference(Quantization::None)?;
    if let Some(scaling) = cfg.rope_scaling(&cell.encoding)? {
        model = model.with_rope_scaling(scaling)?;
    }
    let mut translator = Translator::new(&model, &checkpoint.tokenizer);
    translator.limits = OUTPUT_LIMITS;
    let mut buckets = Vec::with_capacity(cfg.test_lengths.len());
    for &range in &cfg.test_lengths {
        let split = DataFiles::test_split(range);
        let sources = read_lines(&files.file(&split, "src"))?;
        let references = read_lines(&files.file(&split, "tgt"))?;
        buckets.push((range, score(&translator.translate(&sources)?, &references)?));
    }
    let result = CellResult {
        encoding: cell.encoding.clone(),
        task: cell.task,
        seed: cell.seed,
        steps: summary.steps,
        seconds: started.elapsed().as_secs_f64(),
        buckets,
    };
    write_result(&cfg.cell_dir(cell), &result)?;
    Ok(result)
}

/// Writes `result.json` into `dir` through a temporary file and a rename.
fn write_result(dir: &Path, result: &CellResult) -> Result<()> {
    let (tmp, path) = (dir.join("result.json.tmp"), dir.join("result.json"));
    let text =
        serde_json::to_string_pretty(result).map_err(|e| TrainError::Config(format!("result: {e}")))?;
    std::fs::write(&tmp, text).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| TrainError::io(&path, e))
}

/// The saved result of `cell`, if it finished in an earlier run.
fn finished(cfg: &LabConfig, cell: &Cell) -> Result<Option<CellResult>> {
    let path = cfg.cell_dir(cell).join("result.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let result = serde_json::from_str(&text).map_err(|e| {
        TrainError::Config(format!(
            "{}: not a cell result ({e}); delete it to rerun the cell",
            path.display()
        ))
    })?;
    Ok(Some(result))
}

/// Trains `cells[i]` for every `i` in `todo`, `cfg.jobs` at a time, reporting each cell's
/// start and end to `progress`; returns `(i, result)` pairs in the order of `todo`.
fn train_cells(
    cfg: &LabConfig,
    cells: &[Cell],
    todo: &[usize],
    device: &Device,
    progress: Observer,
) -> Result<Vec<(usize, CellResult)>> {
    let run_one = |index: usize| -> Result<(usize, CellResult)> {
        let name = cells[index].name();
        progress(Progress::CellStarted(&name));
        let result = run_cell(cfg, &cells[index], device, progress)?;
        progress(Progress::CellFinished(&name));
        Ok((index, result))
    };
    crate::workers::map_on_workers(todo.len(), cfg.jobs, |k| run_one(todo[k]))
}

/// What [`run_lab`] did.
#[derive(Debug, Clone)]
pub struct LabRun {
    /// Every cell's result, in grid order.
    pub results: Vec<CellResult>,
    /// How many cells were trained now (the rest were finished before).
    pub trained: usize,
    /// The summary rows (see [`summarize`]).
    pub rows: Vec<SummaryRow>,
}

/// Runs every unfinished cell of the grid, then writes `results.md` and `results.json`.
///
/// With `cfg.jobs` above 1, that many cells train at once, each on a thread of its own that
/// runs the cell's parallel work in a rayon pool of its own, sized by
/// [`candle_core::utils::get_num_threads`] (the caller sizes it, e.g. one thread a cell: tiny
/// models use two threads poorly, so two cells on one thread each finish sooner than two cells
/// one after the other on two threads). The first failing cell stops the grid once the cells
/// in progress end. Progress (the cells, and each cell's data and validation lines) goes to
/// `progress`.
pub fn run_lab(cfg: &LabConfig, device: &Device, progress: Observer) -> Result<LabRun> {
    let cells = cfg.cells();
    let mut slots = Vec::with_capacity(cells.len());
    for cell in &cells {
        slots.push(finished(cfg, cell)?);
    }
    let todo: Vec<usize> = (0..cells.len()).filter(|&i| slots[i].is_none()).collect();
    // Written before any cell trains: cells sharing a (task, seed) may train at once.
    for &index in &todo {
        ensure_data(cfg, &cells[index])?;
    }
    progress(Progress::LabStarted { cells: cells.len(), finished: cells.len() - todo.len() });
    for (index, result) in train_cells(cfg, &cells, &todo, device, progress)? {
        slots[index] = Some(result);
    }
    let trained = todo.len();
    let results: Vec<CellResult> = slots.into_iter().collect::<Option<_>>().ok_or_else(|| {
        TrainError::Config("lab: a cell of the grid was neither finished nor trained".into())
    })?;
    let rows = summarize(&results, &cfg.encodings, &cfg.tasks, &cfg.test_lengths);
    let table = markdown(&rows, &cfg.tasks, &cfg.encodings, &cfg.test_lengths);
    let md = cfg.out_dir.join("results.md");
    std::fs::write(&md, table).map_err(|e| TrainError::io(&md, e))?;
    let json = cfg.out_dir.join("results.json");
    let text = serde_json::to_string_pretty(&serde_json::json!({ "rows": rows, "cells": results }))
        .map_err(|e| TrainError::Config(format!("results: {e}")))?;
    std::fs::write(&json, text).map_err(|e| TrainError::io(&json, e))?;
    Ok(LabRun { results, trained, rows })
}
