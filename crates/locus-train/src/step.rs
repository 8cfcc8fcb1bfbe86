//! One training update: forward, label-smoothed loss, backward, clipping, AdamW.

use locus_model::{DropoutRng, Seq2Seq};

use crate::batch::TensorBatch;
use crate::error::Result;
use crate::loss::label_smoothed_cross_entropy;
use crate::optim::AdamW;

/// The numbers one update produces, for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Label-smoothed loss summed over the batch's target tokens.
    pub loss_sum: f64,
    /// Negative log-likelihood summed over the batch's target tokens.
    pub nll_sum: f64,
    /// Target tokens predicted (EOS included).
    pub target_tokens: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// How one update is taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    /// Learning rate of this update.
    pub lr: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub clip_norm: f64,
    /// Label smoothing of the loss.
    pub label_smoothing: f64,
}

/// Trains `model` on `batch` for one update of `optimizer`; the loss is averaged over target
/// tokens. Dropout draws from `rng`.
pub fn train_step(
    model: &Seq2Seq,
    optimizer: &mut AdamW,
    batch: &TensorBatch,
    options: StepOptions,
    rng: &mut DropoutRng,
) -> Result<StepStats> {
    let logits = model.forward(&batch.src, &batch.tgt_in, Some(rng))?;
    let sums = label_smoothed_cross_entropy(
        &logits.flatten_to(1)?,
        &batch.tgt_out.flatten_all()?,
        model.tokens().pad,
        options.label_smoothing,
    )?;
    let loss = (&sums.smoothed / sums.tokens.max(1) as f64)?;
    let grads = loss.backward()?;
    let grad_norm = optimizer.grad_norm(&grads)?;
    let clip = options.clip_norm;
    let scale = if clip > 0.0 && grad_norm > clip { clip / grad_norm } else { 1.0 };
    optimizer.step(&grads, options.lr, scale)?;
    Ok(StepStats {
        loss_sum: sums.smoothed.to_scalar::<f32>()? as f64,
        nll_sum: sums.nll.to_scalar::<f32>()? as f64,
        target_tokens: sums.tokens,
        grad_norm,
    })
}
