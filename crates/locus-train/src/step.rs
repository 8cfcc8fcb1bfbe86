//! One training update: forward and backward over one or more micro-batches (gradient
//! accumulation, `train.update_freq`), normalisation by the target tokens of them all,
//! clipping by global norm, then Adam.
//!
//! As in fairseq, each micro-batch contributes its summed loss, and the summed gradient is
//! divided by the target tokens of the whole update: `update_freq = 2` over two halves of a
//! batch gives the gradient of the whole batch.

use locus_model::{DropoutRng, Seq2Seq};

use crate::batch::TensorBatch;
use crate::error::Result;
use crate::loss::label_smoothed_cross_entropy;
use crate::optim::{Adam, Gradients};

/// The numbers one update produces, for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Label-smoothed loss summed over the update's target tokens.
    pub loss_sum: f64,
    /// Negative log-likelihood summed over the update's target tokens.
    pub nll_sum: f64,
    /// Target tokens predicted (EOS included).
    pub target_tokens: usize,
    /// Global norm of the per-token gradient, before clipping.
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

/// Sums the gradients of the summed label-smoothed loss over `batches` into `grads`.
/// Returns the summed losses and target tokens (`grad_norm` is left at 0).
pub fn accumulate_gradients(
    model: &Seq2Seq,
    optimizer: &Adam,
    batches: &[TensorBatch],
    label_smoothing: f64,
    rng: &mut DropoutRng,
    grads: &mut Gradients,
) -> Result<StepStats> {
    let mut stats = StepStats { loss_sum: 0.0, nll_sum: 0.0, target_tokens: 0, grad_norm: 0.0 };
    for batch in batches {
        let logits = model.forward(&batch.src, &batch.tgt_in, Some(rng))?;
        let sums = label_smoothed_cross_entropy(
            &logits.flatten_to(1)?,
            &batch.tgt_out.flatten_all()?,
            model.tokens().pad,
            label_smoothing,
        )?;
        optimizer.accumulate(grads, &sums.smoothed.backward()?)?;
        stats.loss_sum += sums.smoothed.to_scalar::<f32>()? as f64;
        stats.nll_sum += sums.nll.to_scalar::<f32>()? as f64;
        stats.target_tokens += sums.tokens;
    }
    Ok(stats)
}

/// Trains `model` for one update of `optimizer` on the micro-batches `batches`; the loss is
/// averaged over all their target tokens. Dropout draws from `rng`.
pub fn train_step(
    model: &Seq2Seq,
    optimizer: &mut Adam,
    batches: &[TensorBatch],
    options: StepOptions,
    rng: &mut DropoutRng,
) -> Result<StepStats> {
    let mut grads = optimizer.zero_gradients();
    let mut stats =
        accumulate_gradients(model, optimizer, batches, options.label_smoothing, rng, &mut grads)?;
    let per_token = 1.0 / stats.target_tokens.max(1) as f64;
    stats.grad_norm = optimizer.grad_norm(&grads)? * per_token;
    let clip = options.clip_norm;
    let clip_scale = if clip > 0.0 && stats.grad_norm > clip { clip / stats.grad_norm } else { 1.0 };
    optimizer.step(&grads, options.lr, per_token * clip_scale)?;
    Ok(stats)
}
