//! Fully connected layers: `y = x Wᵀ + b`.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::ops::add_bias;

/// A linear layer with a bias, applied to the last dimension.
///
/// candle's `Linear` adds its bias with a broadcast, whose backward sums the gradient over
/// the batch and time dimensions slowly; this one adds it with [`add_bias`].
#[derive(Debug, Clone)]
pub struct Linear {
    /// `(out_dim, in_dim)`.
    weight: Tensor,
    /// `(out_dim,)`.
    bias: Tensor,
}

impl Linear {
    /// A layer `in_dim → out_dim` under `vb` (`weight`, `bias`), initialised as fairseq's
    /// Transformer does: Xavier-uniform weights (Glorot and Bengio 2010, bound
    /// `sqrt(6 / (in + out))`) and zero biases.
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let bound = (6.0 / (in_dim + out_dim) as f64).sqrt();
        let weight =
            vb.get_with_hints((out_dim, in_dim), "weight", Init::Uniform { lo: -bound, up: bound })?;
        let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// # Shapes
    /// `xs`: `(..., in_dim)`; returns `(..., out_dim)`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut dims = xs.dims().to_vec();
        let in_dim = dims.pop().unwrap_or(1);
        let rows = xs.reshape((xs.elem_count() / in_dim.max(1), in_dim))?;
        let ys = add_bias(&rows.matmul(&self.weight.t()?)?, &self.bias)?;
        dims.push(self.bias.elem_count());
        ys.reshape(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{max_diff, random};
    use candle_core::{DType, Device};
    use candle_nn::{Module, VarMap};

    #[test]
    fn matches_candle_linear_on_batched_input() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let ours = Linear::new(4, 3, vb).unwrap();
        let bias = random(3, 9).unwrap();
        let theirs = candle_nn::Linear::new(ours.weight.clone(), Some(bias.clone()));
        let ours = Linear { bias, ..ours };
        let xs = random((2, 5, 4), 1).unwrap();
        assert!(max_diff(&ours.forward(&xs).unwrap(), &theirs.forward(&xs).unwrap()).unwrap() < 1e-12);
    }
}
