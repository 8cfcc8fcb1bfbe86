//! The training crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// Errors raised while configuring, training, saving, loading or evaluating.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A config file or override is malformed or breaks a rule.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written (the I/O error is the source, shown in the chain).
    #[error("{}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint is missing, incomplete or incompatible.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The training loss became NaN or infinite.
    #[error("training diverged at step {step}: loss is {loss}; lower train.lr or raise train.warmup_steps")]
    Diverged {
        /// The update at which it happened.
        step: usize,
        /// The offending loss.
        loss: f64,
    },
    /// f16 gradients kept overflowing until the loss scale fell below its minimum.
    #[error(
        "training diverged at step {step}: f16 gradients overflow even with the loss scale at {scale}; \
         lower train.lr or use train.precision = \"bf16\""
    )]
    LossScaleExhausted {
        /// The update at which it happened.
        step: usize,
        /// The loss scale reached.
        scale: f64,
    },
    /// Lists that pair up line by line (sources, hypotheses, references) differ in length.
    #[error("{op}: {expected} {expected_what} but {got} {got_what}")]
    Mismatch {
        /// What was being done.
        op: &'static str,
        /// The list whose length the other must match, and its length.
        expected_what: &'static str,
        /// Its length.
        expected: usize,
        /// The list that differs.
        got_what: &'static str,
        /// Its length.
        got: usize,
    },
    /// A run's `metrics.jsonl` is missing or malformed (the message names the file and line).
    #[error("{0}")]
    Metrics(String),
    /// The ranks of a distributed job could not set up a collective (NCCL between GPUs).
    #[error("communication: {0}")]
    Communication(String),
    /// A model cannot be exported as asked (the message names the setting and why).
    #[error("export: {0}")]
    Export(String),
    /// A data error (corpus, tokenizer, batching).
    #[error(transparent)]
    Data(#[from] locus_data::DataError),
    /// A model error (config, shapes, positions).
    #[error(transparent)]
    Model(#[from] locus_model::ModelError),
    /// A metric error (mismatched hypothesis and reference counts).
    #[error(transparent)]
    Metric(#[from] locus_metrics::MetricError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    /// `Ok` if `got` equals `expected`, else a [`TrainError::Mismatch`] naming both lists.
    pub fn check_same_len(
        op: &'static str,
        (expected_what, expected): (&'static str, usize),
        (got_what, got): (&'static str, usize),
    ) -> Result<()> {
        if expected == got {
            Ok(())
        } else {
            Err(Self::Mismatch { op, expected_what, expected, got_what, got })
        }
    }

    /// An [`TrainError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Result with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
