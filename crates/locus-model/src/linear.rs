//! Fully connected layers: `y = x Wᵀ + b`.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::ops;

/// A linear layer with a bias, applied to the last dimension; it runs as the fused
/// [`linear`](crate::ops::linear) operation.
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

    /// Width of the output.
    pub fn out_dim(&self) -> usize {
        self.bias.elem_count()
    }

    /// # Shapes
    /// `xs`: `(..., in_dim)`; returns `(..., out_dim)`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        ops::linear(xs, &self.weight, &self.bias)
    }

    /// `forward(xs)` split into `heads`: `(b, t, in_dim)` to `(b, heads, t, out_dim / heads)`.
    pub fn forward_heads(&self, xs: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
        ops::linear_heads(xs, &self.weight, &self.bias, heads)
    }

    /// `dropout(relu(forward(xs)))` as one operation, with `dropout` a mask over the output.
    pub fn forward_relu(
        &self,
        xs: &Tensor,
        dropout: Option<&ops::DropoutMask>,
    ) -> candle_core::Result<Tensor> {
        ops::linear_relu(xs, &self.weight, &self.bias, dropout)
    }
}
