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
    /// A layer `in_dim → out_dim` under `vb` (`weight`, `bias`) initialised as PyTorch's
    /// `nn.Linear`, which is how fairseq leaves its feed-forward layers: weights and biases
    /// [`Linear::pytorch_init`].
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Self::with_init(in_dim, out_dim, Self::pytorch_init(in_dim), Self::pytorch_init(in_dim), vb)
    }

    /// A layer whose weights are Xavier-uniform times `gain` (Glorot and Bengio 2010, bound
    /// `gain · sqrt(6 / (in + out))`) and whose bias is drawn by `bias`, as fairseq's attention
    /// projections: gain 1/√2 and PyTorch's bias for queries, keys and values, gain 1 and a
    /// zero bias for the output projection.
    pub fn xavier(
        in_dim: usize,
        out_dim: usize,
        gain: f64,
        bias: Init,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let bound = gain * (6.0 / (in_dim + out_dim) as f64).sqrt();
        Self::with_init(in_dim, out_dim, Init::Uniform { lo: -bound, up: bound }, bias, vb)
    }

    /// PyTorch's `nn.Linear` initialisation of a layer with `in_dim` inputs: uniform in
    /// `±1/sqrt(in_dim)`, for its weights and its bias alike.
    pub fn pytorch_init(in_dim: usize) -> Init {
        let bound = (in_dim as f64).powf(-0.5);
        Init::Uniform { lo: -bound, up: bound }
    }

    fn with_init(
        in_dim: usize,
        out_dim: usize,
        weight: Init,
        bias: Init,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", weight)?;
        let bias = vb.get_with_hints(out_dim, "bias", bias)?;
        Ok(Self { weight, bias })
    }

    /// This layer with its weight in the layout the fused op reads fastest when decoding
    /// ([`ops::decoding_layout`]: a column-major copy on the CPU). The copy does not follow
    /// later updates of the weight.
    pub(crate) fn for_inference(&self) -> candle_core::Result<Self> {
        Ok(Self { weight: ops::decoding_layout(&self.weight)?, bias: self.bias.clone() })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::random;

    /// The copy for inference holds the same weight in column-major storage, and the same bias.
    #[test]
    fn the_inference_copy_stores_the_weight_by_columns() {
        let layer = Linear { weight: random((3, 4), 1).unwrap(), bias: random(3, 2).unwrap() };
        let copy = layer.for_inference().unwrap();
        assert!(layer.weight.is_contiguous());
        assert!(!copy.weight.is_contiguous() && copy.weight.t().unwrap().is_contiguous());
        assert_eq!(copy.weight.to_vec2::<f64>().unwrap(), layer.weight.to_vec2::<f64>().unwrap());
        assert_eq!(copy.bias.to_vec1::<f64>().unwrap(), layer.bias.to_vec1::<f64>().unwrap());
    }
}
