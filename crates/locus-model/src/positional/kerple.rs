//! Kerple, kernelized relative positional embedding (Chi, Fan, Ramadge and Rudnicky, NeurIPS
//! 2022, "KERPLE: Kernelized Relative Positional Embedding for Length Extrapolation",
//! <https://arxiv.org/abs/2205.09921>), its logarithmic kernel, the better of the paper's two.
//!
//! No position is embedded anywhere; each head `h` adds to a query-key score a learned,
//! conditionally positive definite function of their distance:
//!
//! `score_hij += -r1_h · log(1 + r2_h · |(q_offset + i) - (k_offset + j)|)`, `r1_h, r2_h > 0`
//!
//! ALiBi's linear penalty is the limit of small `r2`; the logarithm lets a head keep attending far
//! away. As in the authors' `ParallelKerpleLog` (GPT-NeoX, <https://github.com/chijames/KERPLE>):
//! `r1` starts uniform in `[0, 2)`, `r2` uniform in `[0, 1)`, and both are kept at or above
//! `0.01`. The authors clamp the stored parameter in place before each forward pass; here the
//! forward pass reads `max(r, 0.01)`, which gives the same scores (a parameter below `0.01` then
//! gets no gradient until an update lifts it). The distances `|i - j|` are a fixed table
//! ([`TableCache`]); the parameters are read at every pass, so gradients reach them. One pair per
//! head for the whole stack, shared by its layers as T5 shares its table.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};

use super::absolute::Embedding;
use super::cache::{absolute_distances, Span, TableCache};
use super::{Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;
use crate::error::Result;

/// The smallest value either parameter takes in the forward pass (the authors' `eps`).
pub const MIN_PARAMETER: f64 = 0.01;

/// Kerple has no settings to check.
pub(super) fn validate() -> Option<String> {
    None
}

/// A built Kerple (log) bias: a scale `r1` and a rate `r2` per head.
#[derive(Debug, Clone)]
pub struct Kerple {
    /// `r1` of every head, `(n_heads,)`.
    scale: Tensor,
    /// `r2` of every head, `(n_heads,)`.
    rate: Tensor,
    distances: TableCache,
}

impl Kerple {
    /// The parameters of `n_heads` heads, created under `vb` as `bias_p` (`r1`, drawn from
    /// U(0, 2)) and `bias_a` (`r2`, drawn from U(0, 1)), the authors' names and draws.
    pub fn new(n_heads: usize, vb: VarBuilder) -> Result<Self> {
        let scale = vb.get_with_hints(n_heads, "bias_p", Init::Uniform { lo: 0.0, up: 2.0 })?;
        let rate = vb.get_with_hints(n_heads, "bias_a", Init::Uniform { lo: 0.0, up: 1.0 })?;
        Ok(Self { scale, rate, distances: TableCache::new() })
    }

    /// `r1` and `r2` as the forward pass reads them, at least [`MIN_PARAMETER`], each
    /// `(n_heads,)`.
    pub fn parameters(&self) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((self.scale.maximum(MIN_PARAMETER)?, self.rate.maximum(MIN_PARAMETER)?))
    }

    /// The bias for the queries and keys of `span`, in the parameters' dtype (differentiable
    /// w.r.t. them).
    ///
    /// # Shapes
    /// Returns `(1, n_heads, q_len, k_len)`.
    pub fn bias(&self, span: Span) -> candle_core::Result<Tensor> {
        let (dtype, device) = (self.scale.dtype(), self.scale.device());
        let distances =
            self.distances.distances(0, span, dtype, device, |n| absolute_distances(n, dtype, device))?;
        let (scale, rate) = self.parameters()?;
        let n_heads = scale.dim(0)?;
        let per_head = |t: Tensor| t.reshape((1, n_heads, 1, 1));
        let stretched = per_head(rate)?.broadcast_mul(&distances.unsqueeze(0)?.unsqueeze(0)?)?;
        per_head(scale)?.broadcast_mul(&(stretched + 1.0)?.log()?)?.neg()
    }
}

impl Hooks for Kerple {
    fn add_layer(&mut self, _: VarBuilder) -> Result<()> {
        Ok(())
    }

    fn embed(
        &self,
        _: usize,
        _: Span,
        _: Option<&mut DropoutRng>,
        _: DType,
        _: &Device,
    ) -> Result<Option<Embedding>> {
        Ok(None)
    }

    fn rotate(&self, _: Span, _: DType, _: &Device) -> Result<Option<Rotation>> {
        Ok(None)
    }

    fn score_bias(
        &self,
        span: Span,
        _: Option<&[usize]>,
        dtype: DType,
        _: &Device,
    ) -> Result<Option<Tensor>> {
        Ok(Some(self.bias(span)?.to_dtype(dtype)?))
    }

    fn relative(&self, _: Span, _: &Device) -> Result<Option<Relative<'_>>> {
        Ok(None)
    }

    /// Each head's bias, titled with its parameters.
    fn tables(&self, len: usize, weights: Weights) -> Result<Vec<PositionTable>> {
        let bias =
            self.bias(Span::same(len, 0))?.squeeze(0)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let (scale, rate) = self.parameters()?;
        let (scale, rate) =
            (scale.to_dtype(DType::F64)?.to_vec1::<f64>()?, rate.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        PositionTable::per_head(&bias, |head| {
            let (r1, r2) = (scale[head], rate[head]);
            format!("head {head} ({}): -{r1:.3}·log(1 + {r2:.3}·|i - j|)", weights.describe())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, random};
    use candle_core::Var;
    use candle_nn::VarMap;

    /// A Kerple bias whose parameters are set to `scale` and `rate`, and its two variables.
    fn kerple_with(scale: &[f64], rate: &[f64]) -> Result<(Kerple, Var, Var)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let kerple = Kerple::new(scale.len(), vb.pp("kerple"))?;
        let data = varmap.data().lock().unwrap();
        let (p, a) = (data["kerple.bias_p"].clone(), data["kerple.bias_a"].clone());
        p.set(&Tensor::new(scale, &Device::Cpu)?)?;
        a.set(&Tensor::new(rate, &Device::Cpu)?)?;
        Ok((kerple, p, a))
    }

    /// By hand: head 0 (r1 = 2, r2 = 1), head 1 (r1 = 0.5, r2 = 3), and head 2 whose stored
    /// parameters (0.001, -1) are read as 0.01. Queries at positions 4 and 5, keys at 0..6.
    #[test]
    fn bias_is_minus_scale_times_log_of_the_stretched_distance() -> Result<()> {
        let (kerple, _, _) = kerple_with(&[2.0, 0.5, 0.001], &[1.0, 3.0, -1.0])?;
        let bias = kerple.bias(Span { q_len: 2, k_len: 6, q_offset: 4, k_offset: 0 })?;
        assert_eq!(bias.dims(), &[1, 3, 2, 6]);
        let bias = bias.squeeze(0)?.to_vec3::<f64>()?;
        let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        close(bias[0][0][0], -2.0 * 5f64.ln()); // distance 4: -2 log(1 + 4) = -3.2189
        close(bias[0][0][4], 0.0); // same position
        close(bias[0][1][5], 0.0);
        close(bias[0][1][3], -2.0 * 3f64.ln()); // query 5, key 3
        close(bias[1][0][1], -0.5 * 10f64.ln()); // distance 3: -0.5 log(1 + 9) = -1.1513
        close(bias[1][0][5], -0.5 * 4f64.ln()); // key after the query: distance 1
        close(bias[2][1][0], -0.01 * 1.05f64.ln()); // distance 5 at the floor: -0.01 log(1.05)
        Ok(())
    }

    #[test]
    fn draws_lie_in_the_authors_ranges() -> Result<()> {
        let varmap = VarMap::new();
        let kerple = Kerple::new(64, VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu))?;
        let (scale, rate) = (kerple.scale.to_vec1::<f64>()?, kerple.rate.to_vec1::<f64>()?);
        assert!(scale.iter().all(|&r| (0.0..2.0).contains(&r)) && scale.iter().any(|&r| r > 1.0));
        assert!(rate.iter().all(|&r| (0.0..1.0).contains(&r)));
        Ok(())
    }

    #[test]
    fn bias_is_invariant_to_shifting_queries_and_keys_together() -> Result<()> {
        let (kerple, _, _) = kerple_with(&[1.5, 0.2], &[0.7, 0.05])?;
        let at_zero = kerple.bias(Span { q_len: 5, k_len: 90, q_offset: 0, k_offset: 0 })?;
        let shifted = kerple.bias(Span { q_len: 5, k_len: 90, q_offset: 700, k_offset: 700 })?;
        assert_eq!((at_zero - shifted)?.abs()?.max_all()?.to_scalar::<f64>()?, 0.0);
        Ok(())
    }

    /// Central differences (h = 1e-5) of `sum(bias · w)` for a fixed random `w`, against
    /// backprop, for both parameters of every head.
    #[test]
    fn parameter_gradients_match_finite_differences() -> Result<()> {
        let (kerple, p, a) = kerple_with(&[1.3, 0.4, 0.9], &[0.6, 0.02, 2.0])?;
        let w = random((1, 3, 4, 30), 9)?;
        check_gradients(&[&p, &a], || (kerple.bias(Span::after(4, 26))? * &w)?.sum_all())?;
        Ok(())
    }
}
