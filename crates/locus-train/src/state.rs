//! What a run needs, beyond weights and optimizer moments, to continue exactly where it
//! stopped: the update count, the position in the data order, the dropout stream and the
//! best-checkpoint bookkeeping, and f16's loss scale. Saved as `state.json` in every checkpoint.

use locus_model::{DropoutRng, DropoutRngState};
use serde::{Deserialize, Serialize};

use crate::early_stopping::{BestMetric, BestTracker};
use crate::loss_scale::LossScaler;

/// Scores of one validation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidScores {
    /// Label-smoothed loss per target token (nats).
    pub loss: f64,
    /// Negative log-likelihood per target token (nats).
    pub nll: f64,
    /// Corpus BLEU of greedy translations, when `train.valid_bleu` is on.
    pub bleu: Option<f64>,
    /// Corpus chrF2 of greedy translations, when `train.valid_bleu` is on.
    pub chrf: Option<f64>,
}

impl ValidScores {
    /// Perplexity, `exp(nll)`.
    pub fn ppl(&self) -> f64 {
        self.nll.exp()
    }

    /// The score `metric` reads, if it was measured.
    pub fn score(&self, metric: BestMetric) -> Option<f64> {
        match metric {
            BestMetric::Nll => Some(self.nll),
            BestMetric::Loss => Some(self.loss),
            BestMetric::Bleu => self.bleu,
            BestMetric::Chrf => self.chrf,
        }
    }
}

/// The trainer's position, written with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Updates taken, including any skipped for an f16 overflow (see `skipped_updates`).
    pub step: usize,
    /// The epoch in progress, from 1.
    pub epoch: usize,
    /// Batches of that epoch's plan already trained on.
    pub epoch_batches_done: usize,
    /// Learning rate of the last update.
    pub lr: f64,
    /// The dropout stream's position (rank 0's in a data-parallel job).
    pub dropout_rng: DropoutRngState,
    /// The ranks of the job that wrote the checkpoint (1: one process).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub world_size: usize,
    /// The dropout streams of ranks 1, 2, ... of that job, for an exact resume with as many.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rank_dropout_rngs: Vec<DropoutRngState>,
    /// The best validation so far, and the validations since.
    pub best: BestTracker,
    /// Scores of the last validation, if any ran.
    pub last_valid: Option<ValidScores>,
    /// Seconds of training so far, over every session of the run.
    pub wall_s: f64,
    /// Updates among `step` that were skipped because a loss-scaled gradient overflowed
    /// (`train.precision = "f16"`): counted by the schedule, not by Adam.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_updates: usize,
    /// The dynamic loss scale of an f16 run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScaler>,
}

impl TrainerState {
    /// The dropout stream of a new run with `seed` (`train.seed`), at its start.
    pub fn first_dropout_rng(seed: u64) -> DropoutRngState {
        DropoutRng::new(seed.wrapping_add(1)).state()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl TrainerState {
    /// Updates Adam applied: `step` less the skipped ones (its bias correction counts these).
    pub fn applied_updates(&self) -> usize {
        self.step.saturating_sub(self.skipped_updates)
    }
}
