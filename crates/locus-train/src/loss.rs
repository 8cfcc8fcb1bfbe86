//! Label-smoothed cross-entropy (Szegedy et al. 2016, <https://arxiv.org/abs/1512.00567>)
//! that ignores padding.
//!
//! candle's `cross_entropy` has neither an ignore index nor smoothing. With smoothing `eps` and
//! vocabulary `V` the target distribution is `(1 - eps) · onehot(y) + eps / V`, so the loss of
//! one token is `(1 - eps) · (-log p_y) + eps · mean_v(-log p_v)`. The per-token losses come
//! from the fused [`smoothed_cross_entropy_rows`].

use candle_core::{DType, Tensor};
use locus_model::ops::{smoothed_cross_entropy_rows, CrossEntropyLoss};

/// Summed losses of a batch, as scalars on its device; divide by the batch's non-padding
/// targets ([`crate::batch::TensorBatch::tgt_tokens`], counted on the host) for per-token values.
#[derive(Debug, Clone)]
pub struct LossSums {
    /// Label-smoothed loss summed over non-padding targets (differentiable).
    pub smoothed: Tensor,
    /// Negative log-likelihood summed over non-padding targets (differentiable).
    pub nll: Tensor,
    /// `[smoothed, nll]`, detached: for reading later without keeping the graph alive.
    pub values: Tensor,
}

/// Adds up `[loss, nll]` rows (read from [`LossSums::values`]) in f64.
pub fn sum_loss_rows(rows: &[Vec<f32>]) -> (f64, f64) {
    rows.iter().fold((0.0, 0.0), |(loss, nll), row| (loss + row[0] as f64, nll + row[1] as f64))
}

/// Label-smoothed cross-entropy of `logits` against `targets`, skipping `pad_id` targets.
///
/// # Shapes
/// `logits`: `(n, vocab)`; `targets`: `(n,)` `u32`.
pub fn label_smoothed_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    pad_id: u32,
    epsilon: f64,
) -> candle_core::Result<LossSums> {
    let loss = CrossEntropyLoss { pad_id, epsilon };
    let sums = smoothed_cross_entropy_rows(&logits.to_dtype(DType::F32)?, targets, loss)?.sum(0)?;
    Ok(LossSums { smoothed: sums.get(0)?, nll: sums.get(1)?, values: sums.detach() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two tokens over a vocabulary of 3, one of them padding (id 0).
    /// Row 0: logits (0, ln 2, ln 1) → p = (1/4, 2/4, 1/4); target 1: nll = ln 2.
    /// Smoothing term: mean(-log p) = (ln 4 + ln 2 + ln 4) / 3 = 5 ln 2 / 3.
    #[test]
    fn hand_computed_loss_ignores_padding() {
        let ln2 = 2f32.ln();
        let logits = Tensor::new(&[[0.0f32, ln2, 0.0], [5.0, 1.0, 2.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let sums = label_smoothed_cross_entropy(&logits, &targets, 0, 0.1).unwrap();
        let ln2 = 2f64.ln();
        let want = 0.9 * ln2 + 0.1 * 5.0 * ln2 / 3.0;
        assert!((sums.nll.to_scalar::<f32>().unwrap() as f64 - ln2).abs() < 1e-6);
        assert!((sums.smoothed.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-6);
        let values = sums.values.to_vec1::<f32>().unwrap();
        assert_eq!(values, [sums.smoothed.to_scalar::<f32>().unwrap(), sums.nll.to_scalar::<f32>().unwrap()]);
        assert!(!sums.values.track_op(), "the values are detached");
    }

    /// d loss / d logit_v = softmax_v - q_v, with q the smoothed target distribution.
    #[test]
    fn gradient_is_softmax_minus_smoothed_target() {
        let logits = candle_core::Var::new(&[[0.3f32, -1.0, 2.0, 0.5]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[2u32], &Device::Cpu).unwrap();
        let sums = label_smoothed_cross_entropy(logits.as_tensor(), &targets, 0, 0.2).unwrap();
        let grads = sums.smoothed.backward().unwrap();
        let grad = grads.get(logits.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let exps: Vec<f64> = [0.3f64, -1.0, 2.0, 0.5].iter().map(|x| x.exp()).collect();
        let total: f64 = exps.iter().sum();
        for (v, g) in grad.iter().enumerate() {
            let q = 0.2 / 4.0 + if v == 2 { 0.8 } else { 0.0 };
            assert!((*g as f64 - (exps[v] / total - q)).abs() < 1e-6, "logit {v}");
        }
    }
}
