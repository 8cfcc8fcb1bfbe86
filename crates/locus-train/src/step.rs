//! One training update: forward and backward over one or more micro-batches (gradient
//! accumulation, `train.update_freq`), normalisation by the target tokens of them all,
//! clipping by global norm, then Adam.
//!
//! As in fairseq, each micro-batch contributes its summed loss, and the summed gradient is
//! divided by the target tokens of the whole update: `update_freq = 2` over two halves of a
//! batch gives the gradient of the whole batch.
//!
//! With several ranks ([`crate::distributed`]) each runs the micro-batches' shares it was
//! dealt, and the summed gradients, losses and target tokens are summed over the ranks before
//! the normalisation, once per update: every rank then applies the same update.
//!
//! In mixed precision ([`crate::precision`]) the model given is the low-precision copy, and
//! f16's [`LossScaler`] multiplies the loss before each backward pass; the division by the
//! scale is folded into the optimiser's gradient scale, and an update whose gradients overflow
//! is skipped.

use candle_core::{DType, Tensor};
use locus_model::{DropoutRng, Seq2Seq};

use crate::batch::TensorBatch;
use crate::distributed::{reduce_update, Communicator};
use crate::error::Result;
use crate::loss::{label_smoothed_cross_entropy, sum_loss_rows};
use crate::loss_scale::LossScaler;
use crate::optim::{Adam, Gradients};

/// The summed losses of an update's micro-batches, left on the model's device: reading them
/// waits for the device, so the trainer reads them once per log line, not once per update.
#[derive(Debug, Clone)]
pub struct LossTotals {
    /// `(micro-batches, 2)` f32, detached: each micro-batch's label-smoothed loss and
    /// negative log-likelihood, summed over its target tokens.
    pub sums: Tensor,
    /// Target tokens predicted (EOS included), counted on the host.
    pub target_tokens: usize,
}

impl LossTotals {
    /// The label-smoothed loss and the negative log-likelihood summed over all the update's
    /// target tokens, in f64 (copies them from the device).
    pub fn read(&self) -> Result<(f64, f64)> {
        Ok(sum_loss_rows(&self.sums.to_vec2::<f32>()?))
    }
}

/// The numbers one update produces, for logging; both tensors stay on the model's device.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// The update's summed losses.
    pub losses: LossTotals,
    /// Scalar: global norm of the per-token gradient, before clipping (not finite when
    /// skipped).
    pub grad_norm: Tensor,
    /// Whether the update was skipped because a loss-scaled gradient overflowed.
    pub skipped: bool,
    /// Seconds spent summing the update over the ranks (0 in one process).
    pub comm_seconds: f64,
}

impl StepStats {
    /// The gradient norm, copied from the device.
    pub fn read_grad_norm(&self) -> Result<f64> {
        Ok(self.grad_norm.to_dtype(DType::F64)?.to_scalar::<f64>()?)
    }
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
/// then scaled, the losses returned are not. Nothing is read back from the device.
pub fn accumulate_gradients(
    model: &Seq2Seq,
    optimizer: &Adam,
    batches: &[TensorBatch],
    label_smoothing: f64,
    loss_scale: Option<f64>,
    rng: &mut DropoutRng,
    grads: &mut Gradients,
) -> Result<LossTotals> {
    let mut sums = Vec::with_capacity(batches.len());
    let mut target_tokens = 0;
    for batch in batches {
        let logits = model.forward(&batch.src, &batch.tgt_in, Some(rng))?;
        let batch_sums = label_smoothed_cross_entropy(
            &logits.flatten_to(1)?,
            &batch.tgt_out.flatten_all()?,
            model.tokens().pad,
            label_smoothing,
        )?;
        let backward = match loss_scale {
            Some(scale) => (&batch_sums.smoothed * scale)?.backward()?,
            None => batch_sums.smoothed.backward()?,
        };
        optimizer.accumulate(grads, &backward)?;
        sums.push(batch_sums.values);
        target_tokens += batch.tgt_tokens;
    }
    let sums = if sums.is_empty() {
        Tensor::zeros((0, 2), DType::F32, model.device())?
    } else {
        Tensor::stack(&sums, 0)?
    };
    Ok(LossTotals { sums, target_tokens })
}

/// Trains `model` for one update of `optimizer` on the micro-batches `batches`; the loss is
/// averaged over all their target tokens, over every rank of `comm`. Dropout draws from `rng`.
///
/// The gradient norm and the clipping factor are computed on the model's device and applied
/// there: in f32 and bf16 an update reads nothing back. With dynamic loss scaling (`scaler`
/// given) the loss is multiplied by its scale before the backward pass and the gradients
/// divided by it, and the gradient norm is read to decide the update: if it is not finite,
/// the weights and Adam's moments are left alone, the stats say `skipped`, and the scaler
/// lowers its scale.
pub fn train_step(
    comm: &dyn Communicator,
    model: &Seq2Seq,
    optimizer: &mut Adam,
    batches: &[TensorBatch],
    options: StepOptions,
    rng: &mut DropoutRng,
    scaler: Option<&mut LossScaler>,
) -> Result<StepStats> {
    let loss_scale = scaler.as_ref().map(|scaler| scaler.scale);
    let mut grads = optimizer.zero_gradients();
    let mut losses = accumulate_gradients(
        model,
        optimizer,
        batches,
        options.label_smoothing,
        loss_scale,
        rng,
        &mut grads,
    )?;
    let comm_seconds =
        if comm.is_distributed() { reduce_update(comm, optimizer, &mut grads, &mut losses)? } else { 0.0 };
    let per_token = 1.0 / losses.target_tokens.max(1) as f64 / loss_scale.unwrap_or(1.0);
    let grad_norm = (optimizer.grad_norm(&grads)? * per_token)?;
    let mut stats = StepStats { losses, grad_norm, skipped: false, comm_seconds };
    if let Some(scaler) = scaler {
        stats.skipped = !scaler.update(stats.read_grad_norm()?.is_finite());
        if stats.skipped {
            return Ok(stats);
        }
    }
    // `min(1, clip / norm)`: 1 when the norm is within the limit (or 0).
    let clip = options.clip_norm;
    let grad_scale = if clip > 0.0 {
        let limit = stats.grad_norm.ones_like()?.affine(clip, 0.0)?;
        ((limit / &stats.grad_norm)?.minimum(1.0)? * per_token)?
    } else {
        stats.grad_norm.ones_like()?.affine(per_token, 0.0)?
    };
    optimizer.step(&grads, options.lr, &grad_scale)?;
    Ok(stats)
}
