//! Training, checkpoints, decoding and evaluation for Locus.
//!
//! - [`config`]: the run config (`[data]`, `[model]`, `[train]`), loaded, overridden and
//!   validated in one step;
//! - [`loss`], [`optim`], [`schedule`]: label-smoothed cross-entropy, AdamW and the
//!   learning-rate schedule, each a small, separately tested piece;
//! - [`batch`]: token ids to padded tensors;
//! - [`trainer`]: the training loop, readable top to bottom;
//! - [`checkpoint`]: atomic checkpoint directories;
//! - [`translate`] and [`evaluate`]: batched greedy translation and sacreBLEU-exact scores
//!   ([`metrics`]).
#![warn(missing_docs)]

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod log;
pub mod loss;
pub mod metrics;
pub mod modeling;
pub mod optim;
pub mod schedule;
pub mod step;
pub mod trainer;
pub mod translate;

pub use checkpoint::{load_checkpoint, Checkpoint};
pub use config::{RunConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use evaluate::{evaluate, Evaluation};
pub use trainer::{train, TrainSummary};
pub use translate::Translator;
