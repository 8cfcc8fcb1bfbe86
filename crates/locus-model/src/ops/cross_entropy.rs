//! Label-smoothed cross-entropy (Szegedy et al. 2016, <https://arxiv.org/abs/1512.00567>)
//! straight from the logits, one row per target token.
//!
//! Composed, the loss materialises the log-probabilities and half a dozen more tensors of the
//! logits' size (batch positions × vocabulary, the largest tensors of a training step) forward
//! and backward. This op reads the logits twice forward, writes one gradient backward, and
//! keeps nothing in between.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::rows::{contiguous, is_fused, row_len, with_elements, Real};

/// Which loss [`smoothed_cross_entropy_rows`] computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyLoss {
    /// Targets with this id are padding: their rows lose 0 and get no gradient.
    pub pad_id: u32,
    /// Label smoothing: the target distribution is `(1 - epsilon) · onehot(y) + epsilon / V`.
    pub epsilon: f64,
}

/// Per-token losses of `logits` against `targets`: `(n, 2)`, column 0 the label-smoothed
/// loss `(1 - ε) · (-log p_y) + ε · mean_v(-log p_v)`, column 1 the negative log-likelihood
/// `-log p_y`; both 0 on padding rows.
///
/// # Shapes
/// `logits`: `(n, vocab)`; `targets`: `(n,)` `u32`.
pub fn smoothed_cross_entropy_rows(
    logits: &Tensor,
    targets: &Tensor,
    loss: CrossEntropyLoss,
) -> Result<Tensor> {
    let (n, _) = logits.dims2()?;
    if targets.dims() != [n] || targets.dtype() != DType::U32 {
        bail!("cross-entropy: {:?} {:?} targets for {n} rows of logits", targets.dims(), targets.dtype())
    }
    if is_fused(logits) && targets.device().is_cpu() {
        logits.contiguous()?.apply_op2(&targets.contiguous()?, loss)
    } else {
        composed(logits, targets, loss)
    }
}

/// The same losses from candle operations, for devices and dtypes without the fused kernel.
fn composed(logits: &Tensor, targets: &Tensor, loss: CrossEntropyLoss) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    let smooth = log_probs.mean(D::Minus1)?.neg()?;
    let keep = targets.ne(loss.pad_id)?.to_dtype(logits.dtype())?;
    let smoothed = ((&nll * (1.0 - loss.epsilon))? + (smooth * loss.epsilon)?)?;
    Tensor::stack(&[(smoothed * &keep)?, (nll * keep)?], 1)
}

/// `(max, log Σ exp(x - max))` of one row: its log-sum-exp is their sum.
fn log_sum_exp<T: Real>(row: &[T]) -> (T, T) {
    let max = row.iter().fold(T::neg_infinity(), |m, &x| num_traits::Float::max(m, x));
    let sum = row.iter().fold(T::zero(), |acc, &x| acc + (x - max).exp());
    (max, sum.ln())
}

fn forward<T: Real>(logits: &[T], targets: &[u32], width: usize, loss: CrossEntropyLoss) -> Vec<T> {
    let mut rows = vec![T::zero(); 2 * targets.len()];
    let epsilon = T::from_f64(loss.epsilon);
    let n = T::from_f64(width as f64);
    rows.par_chunks_mut(2).zip(logits.par_chunks(width).zip(targets.par_iter())).for_each(
        |(out, (logits, &target))| {
            if target == loss.pad_id {
                return;
            }
            let (max, log_sum) = log_sum_exp(logits);
            let lse = max + log_sum;
            let mean = logits.iter().fold(T::zero(), |acc, &x| acc + x) / n;
            let nll = lse - logits[target as usize];
            out[0] = (T::one() - epsilon) * nll + epsilon * (lse - mean);
            out[1] = nll;
        },
    );
    rows
}

/// `d/dx_v = (g₀ + g₁) · p_v - (g₀ (1 - ε) + g₁) · [v = y] - g₀ ε / V` for a row with the
/// gradients `g₀` (smoothed) and `g₁` (nll) of its two losses.
fn backward<T: Real>(
    logits: &[T],
    targets: &[u32],
    grads: &[T],
    width: usize,
    loss: CrossEntropyLoss,
) -> Vec<T> {
    let mut dlogits = vec![T::zero(); logits.len()];
    let epsilon = T::from_f64(loss.epsilon);
    let uniform = epsilon / T::from_f64(width as f64);
    dlogits
        .par_chunks_mut(width)
        .zip(logits.par_chunks(width))
        .zip(targets.par_iter().zip(grads.par_chunks(2)))
        .for_each(|((dx, logits), (&target, g))| {
            if target == loss.pad_id {
                return;
            }
            let (max, log_sum) = log_sum_exp(logits);
            let (both, constant) = (g[0] + g[1], g[0] * uniform);
            let inv_sum = (-log_sum).exp();
            for (d, &x) in dx.iter_mut().zip(logits) {
                *d = both * (x - max).exp() * inv_sum - constant;
            }
            dx[target as usize] -= g[0] * (T::one() - epsilon) + g[1];
        });
    dlogits
}

fn check_targets(targets: &[u32], width: usize) -> Result<()> {
    match targets.iter().find(|&&t| t as usize >= width) {
        Some(t) => bail!("cross-entropy: target id {t} outside a vocabulary of {width}"),
        None => Ok(()),
    }
}

fn backward_tensor<T: Real>(
    logits: &Tensor,
    targets: &Tensor,
    grad: &Tensor,
    loss: CrossEntropyLoss,
) -> Result<Tensor> {
    let width = row_len(logits.shape())?;
    let dlogits = with_elements::<T, _>(logits, |logits| {
        with_elements::<u32, _>(targets, |targets| {
            with_elements::<T, _>(grad, |grads| backward(logits, targets, grads, width, loss))
        })
    })???;
    Tensor::from_vec(dlogits, logits.shape(), logits.device())
}

impl CustomOp2 for CrossEntropyLoss {
    fn name(&self) -> &'static str {
        "locus-smoothed-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        logits: &CpuStorage,
        logits_l: &Layout,
        targets: &CpuStorage,
        targets_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let width = row_len(logits_l.shape())?;
        let targets: &[u32] = contiguous(targets, targets_l)?;
        check_targets(targets, width)?;
        let rows = match logits {
            CpuStorage::F32(_) => {
                CpuStorage::F32(forward(contiguous(logits, logits_l)?, targets, width, *self))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(forward(contiguous(logits, logits_l)?, targets, width, *self))
            }
            other => bail!("cross-entropy: unsupported dtype {:?}", other.dtype()),
        };
        Ok((rows, Shape::from((targets.len(), 2))))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _rows: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dlogits = match logits.dtype() {
            DType::F32 => backward_tensor::<f32>(logits, targets, grad, *self)?,
            DType::F64 => backward_tensor::<f64>(logits, targets, grad, *self)?,
            other => bail!("cross-entropy: unsupported dtype {other:?}"),
        };
        Ok((Some(dlogits), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::{Device, Var};

    const LOSS: CrossEntropyLoss = CrossEntropyLoss { pad_id: 0, epsilon: 0.1 };

    /// Row 0: logits (0, ln 2, 0) → p = (1/4, 2/4, 1/4); target 1: nll = ln 2, and
    /// mean(-log p) = (ln 4 + ln 2 + ln 4) / 3 = 5 ln 2 / 3. Row 1 is padding.
    #[test]
    fn hand_computed_rows() {
        let ln2 = 2f64.ln();
        let logits = Tensor::new(&[[0.0f64, ln2, 0.0], [5.0, 1.0, 2.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let rows = smoothed_cross_entropy_rows(&logits, &targets, LOSS).unwrap().to_vec2::<f64>().unwrap();
        let want = [[0.9 * ln2 + 0.1 * 5.0 * ln2 / 3.0, ln2], [0.0, 0.0]];
        for (got, want) in rows.iter().flatten().zip(want.iter().flatten()) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn matches_the_composed_loss() {
        let logits = (random((6, 9), 1).unwrap() * 4.0).unwrap();
        let targets = Tensor::new(&[3u32, 0, 8, 1, 0, 5], &Device::Cpu).unwrap();
        let fused = smoothed_cross_entropy_rows(&logits, &targets, LOSS).unwrap();
        assert!(max_diff(&fused, &composed(&logits, &targets, LOSS).unwrap()).unwrap() < 1e-12);
    }

    /// Both columns carry gradient: the probe weights them differently.
    #[test]
    fn gradient_matches_finite_differences() {
        let logits = Var::from_tensor(&(random((5, 7), 2).unwrap() * 3.0).unwrap()).unwrap();
        let targets = Tensor::new(&[3u32, 0, 6, 1, 2], &Device::Cpu).unwrap();
        let probe = Tensor::new(&[0.7f64, -1.3], &Device::Cpu).unwrap();
        check_gradients(&[&logits], || {
            smoothed_cross_entropy_rows(logits.as_tensor(), &targets, LOSS)?.broadcast_mul(&probe)?.sum_all()
        })
        .unwrap();
    }

    #[test]
    fn a_target_outside_the_vocabulary_is_an_error() {
        let logits = random((1, 4), 1).unwrap();
        let targets = Tensor::new(&[4u32], &Device::Cpu).unwrap();
        let err = smoothed_cross_entropy_rows(&logits, &targets, LOSS).unwrap_err();
        assert!(err.to_string().contains("target id 4 outside a vocabulary of 4"), "{err}");
    }
}
