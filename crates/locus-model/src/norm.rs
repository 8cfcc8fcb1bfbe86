//! Layer normalisation (Ba et al. 2016, <https://arxiv.org/abs/1607.06450>).
//!
//! candle's fused `layer_norm` kernel has no backward pass; [`layer_norm`] is fused with a
//! hand-written one.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::ops::{add_layer_norm, layer_norm, DropoutMask};

/// `y = (x - mean) / sqrt(var + eps) * weight + bias` over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// A layer norm of width `dim`, weight 1 and bias 0, under `vb` (`weight`, `bias`).
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    /// Normalises over the last dimension.
    ///
    /// # Shapes
    /// `xs`: `(..., dim)`; returns the same shape.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        layer_norm(xs, &self.weight, &self.bias, self.eps)
    }

    /// `forward(residual + dropout(update))` as one operation: post-norm's residual connection.
    ///
    /// # Shapes
    /// `residual`, `update`: `(..., dim)`; `dropout`: a mask over `update`'s elements.
    pub fn forward_residual(
        &self,
        residual: &Tensor,
        update: &Tensor,
        dropout: Option<&DropoutMask>,
    ) -> candle_core::Result<Tensor> {
        add_layer_norm(residual, update, dropout, &self.weight, &self.bias, self.eps)
    }
}
