//! What a run reports while it goes, for whoever shows it: the library calls an [`Observer`]
//! and prints nothing itself; `locus` draws progress bars on a terminal and prints lines
//! otherwise.

use locus_data::PrepareProgress;

use crate::log::{TrainRecord, ValidRecord};

/// One report of a training run or a lab.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Training starts at update `step` (0, or where a resumed run stopped) of `total_steps`.
    Started {
        /// Updates already applied.
        step: usize,
        /// The last update.
        total_steps: usize,
    },
    /// Update `step` is applied (it may still be running on the device).
    Updated {
        /// Its number.
        step: usize,
    },
    /// The training corpora are being prepared (`locus prepare`, or a run's first start).
    Prepare(PrepareProgress<'a>),
    /// A log window ended: its averages, as written to `metrics.jsonl`.
    Logged(&'a TrainRecord),
    /// A validation ended: its scores, as written to `metrics.jsonl`.
    Validated(&'a ValidRecord),
    /// A line worth reading: the data and model sizes, resuming, early stopping.
    Info(&'a str),
    /// The lab starts on `cells` cells, `finished` of which an earlier run completed.
    LabStarted {
        /// Cells in the grid.
        cells: usize,
        /// Cells already done.
        finished: usize,
    },
    /// A lab cell starts training.
    CellStarted(&'a str),
    /// A lab cell is trained and tested.
    CellFinished(&'a str),
}

/// Receives a run's [`Progress`]; the lab calls it from several threads at once.
pub type Observer<'a> = &'a (dyn Fn(Progress<'_>) + Sync);

/// An observer that shows nothing.
pub fn silent(_: Progress<'_>) {}
