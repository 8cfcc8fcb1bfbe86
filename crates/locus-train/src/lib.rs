//! Training, checkpoints, decoding and evaluation for Locus.
//!
//! - [`config`]: the run config (`[data]`, `[model]`, `[train]`), loaded, overridden and
//!   validated in one step by [`config_file`], the loader every config type uses;
//! - [`loss`], [`optim`], [`schedule`], [`early_stopping`]: label-smoothed cross-entropy,
//!   Adam/AdamW, the learning-rate schedules and the best-checkpoint and patience decisions,
//!   each a small, separately tested piece;
//! - [`batch`]: token ids to padded tensors;
//! - [`bench`](mod@bench): timed training steps, model FLOPs and MFU;
//! - [`setup`]: a session's data, model, optimiser and schedule, shared by training and the
//!   training benchmark;
//! - [`distributed`]: data-parallel training over several processes (MPI) or GPUs (NCCL): the
//!   communicator a rank uses, and the per-update sum of gradients over the ranks;
//! - [`step`] and [`trainer`]: one update (with gradient accumulation), and the training loop,
//!   readable top to bottom, its periodic decisions (log, validate, save, stop) in [`periodic`];
//! - [`log`] and [`progress`]: the typed records of `metrics.jsonl`, written by the trainer and
//!   read by `locus plot`, and the progress reports a caller draws (the library prints nothing);
//! - [`precision`] and [`loss_scale`]: mixed-precision training (`bf16`, `f16`) on f32 master
//!   weights, and f16's dynamic loss scaling;
//! - [`parity`]: the CPU against another device on the same weights and batch;
//! - [`checkpoint`] and [`state`]: atomic checkpoint directories (written by one all-or-nothing
//!   directory writer, `locus_data::atomic_dir`) holding everything an exact resume needs;
//! - [`average`]: the mean of several checkpoints' weights, written as a new checkpoint;
//! - [`translate`](mod@translate) and [`evaluate`](mod@evaluate): batched translation (greedy, beam,
//!   sampling) and sacreBLEU-exact scores ([`locus_metrics`]).
#![warn(missing_docs)]
// Library code returns errors: no unwrap or expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod average;
pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod checkpoint_format;
pub mod config;
pub mod config_file;
pub mod distributed;
pub mod early_stopping;
pub mod error;
pub mod evaluate;
pub mod export;
pub mod lab;
pub mod log;
pub mod loss;
pub mod loss_scale;
pub mod modeling;
pub mod optim;
pub mod parity;
pub mod periodic;
pub mod precision;
pub mod progress;
pub mod run_history;
pub mod run_lock;
pub mod schedule;
pub mod setup;
pub mod state;
pub mod step;
pub mod trainer;
pub mod translate;
pub mod workers;

pub use average::{average_checkpoints, newest_checkpoints, AverageSummary};
pub use checkpoint::{load_checkpoint, resolve_resume, Checkpoint};
pub use config::{RunConfig, TrainConfig};
pub use config_file::ConfigFile;
pub use error::{Result, TrainError};
pub use evaluate::{evaluate, Evaluation};
pub use log::Event;
pub use periodic::StopReason;
pub use progress::{Observer, Progress};
pub use trainer::{train, TrainOptions, TrainSummary};
pub use translate::Translator;
