//! One training update: forward and backward over one or more micro-batches (gradient
//! accumulation, `train.update_freq`), normalisation by the target tokens of them all,
//! clipping by global norm, then Adam.
//!
//! As in fairseq, each micro-batch contributes its summed loss, and the summed gradient is
//! divided by the target tokens of the whole update: `update_freq = 2` over two halves of a
//! batch gives the gradient of the whole batch.
//!
//! In mixed precision ([`crate::precision`]) the model given is the low-precision copy, and
//! f16's [`LossScaler`] multiplies the loss before each backward pass; the division by the
//! scale is folded into the optimiser's gradient scale, and an update whose gradients overflow
//! is skipped.

use locus_model::{DropoutRng, Seq2Seq};

use crate::batch::TensorBatch;
use crate::error::Result;
use crate::loss::label_smoothed_cross_entropy;
use crate::loss_scale::LossScaler;
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
    /// Global norm of the per-token gradient, before clipping (not finite when skipped).
    pub grad_norm: f64,
    /// Whether the update was skipped because a loss-scaled gradient overflowed.
    pub skipped: bool,
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

/// Sums the gradients of the summed label-smoothed loss over `batches` into `grads`, the loss
/// multiplied by `loss_scale` first when given (f16's [`LossScaler`]): the gradients summed are
/// then scaled, the losses returned are not. Returns the summed losses and target tokens
/// (`grad_norm` is left at 0).
pub fn accumulate_gradients(
    model: &Seq2Seq,
    optimizer: &Adam,
    batches: &[TensorBatch],
    label_smoothing: f64,
    loss_scale: Option<f64>,
    rng: &mut DropoutRng,
    grads: &mut Gradients,
) -> Result<StepStats> {
    let mut stats =
        StepStats { loss_sum: 0.0, nll_sum: 0.0, target_tokens: 0, grad_norm: 0.0, skipped: false };
    for batch in batches {
        let logits = model.forward(&batch.src, &batch.tgt_in, Some(rng))?;
        let sums = label_smoothed_cross_entropy(
            &logits.flatten_to(1)?,
            &batch.tgt_out.flatten_all()?,
            model.tokens().pad,
            label_smoothing,
        )?;
        let backward = match loss_scale {
            Some(scale) => (&sums.smoothed * scale)?.backward()?,
            None => sums.smoothed.backward()?,
        };
        optimizer.accumulate(grads, &backward)?;
        stats.loss_sum += sums.smoothed.to_scalar::<f32>()? as f64;
        stats.nll_sum += sums.nll.to_scalar::<f32>()? as f64;
        stats.target_tokens += sums.tokens;
    }
    Ok(stats)
}

/// Trains `model` for one update of `optimizer` on the micro-batches `batches`; the loss is
/// averaged over all their target tokens. Dropout draws from `rng`.
///
/// With dynamic loss scaling (`scaler` given), the loss is multiplied by its scale before the
/// backward pass and the gradients divided by it; if any gradient is not finite, the weights
/// and Adam's moments are left alone, the stats say `skipped`, and the scaler lowers its scale.
pub fn train_step(
    model: &Seq2Seq,
    optimizer: &mut Adam,
    batches: &[TensorBatch],
    options: StepOptions,
    rng: &mut DropoutRng,
    scaler: Option<&mut LossScaler>,
) -> Result<StepStats> {
    let loss_scale = scaler.as_ref().map(|scaler| scaler.scale);
    let mut grads = optimizer.zero_gradients();
    let mut stats = accumulate_gradients(
        model,
        optimizer,
        batches,
        options.label_smoothing,
        loss_scale,
        rng,
        &mut grads,
    )?;
    let mut per_token = 1.0 / stats.target_tokens.max(1) as f64;
    if let Some(scale) = loss_scale {
        per_token /= scale;
    }
    stats.grad_norm = optimizer.grad_norm(&grads)? * per_token;
    if let Some(scaler) = scaler {
        stats.skipped = !scaler.update(stats.grad_norm.is_finite());
        if stats.skipped {
            return Ok(stats);
        }
    }
    let clip = options.clip_norm;
    let clip_scale = if clip > 0.0 && stats.grad_norm > clip { clip / stats.grad_norm } else { 1.0 };
    optimizer.step(&grads, options.lr, per_token * clip_scale)?;
    Ok(stats)
}
