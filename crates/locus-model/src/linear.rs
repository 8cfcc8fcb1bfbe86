//! Fully connected layers: `y = x Wᵀ + b`.

use std::sync::Arc;

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::ops;

/// How a model for decoding stores its linear layers ([`Seq2Seq::for_inference`]).
///
/// [`Seq2Seq::for_inference`]: crate::Seq2Seq::for_inference
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumString, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum Quantization {
    /// The weights as trained.
    #[default]
    None,
    /// Weights in 8 bits per output channel, inputs quantized per row at each product, on the
    /// CPU ([`ops::Int8Linear`]).
    Int8,
}

/// A linear layer with a bias, applied to the last dimension; it runs as the fused
/// [`linear`](crate::ops::linear) operation, or as an [`ops::Int8Linear`].
#[derive(Debug, Clone)]
pub struct Linear {
    weights: Weights,
}

/// A linear layer's parameters.
#[derive(Debug, Clone)]
enum Weights {
    Float {
        /// `(out_dim, in_dim)`.
        weight: Tensor,
        /// `(out_dim,)`.
        bias: Tensor,
    },
    Int8(Arc<ops::Int8Linear>),
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
        Ok(Self { weights: Weights::Float { weight, bias } })
    }

    /// This layer for decoding: with [`Quantization::None`], its weight in the layout the fused
    /// op reads fastest when decoding ([`ops::decoding_layout`]: packed in panels on the CPU);
    /// with [`Quantization::Int8`], quantized. The copy does not follow later updates of
    /// the weight.
    ///
    /// # Errors
    /// Int8 on a device other than the CPU.
    pub(crate) fn for_inference(&self, quantization: Quantization) -> candle_core::Result<Self> {
        let Weights::Float { weight, bias } = &self.weights else {
            return Ok(self.clone());
        };
        let weights = match quantization {
            Quantization::None => {
                Weights::Float { weight: ops::decoding_layout(weight)?, bias: bias.clone() }
            }
            Quantization::Int8 => Weights::Int8(Arc::new(ops::Int8Linear::quantize(weight, Some(bias))?)),
        };
        Ok(Self { weights })
    }

    /// Width of the output.
    pub fn out_dim(&self) -> usize {
        match &self.weights {
            Weights::Float { bias, .. } => bias.elem_count(),
            Weights::Int8(layer) => layer.out_dim(),
        }
    }

    /// # Shapes
    /// `xs`: `(..., in_dim)`; returns `(..., out_dim)`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weights {
            Weights::Float { weight, bias } => ops::linear(xs, weight, bias),
            Weights::Int8(layer) => layer.forward(xs, false),
        }
    }

    /// `forward(xs)` split into `heads`: `(b, t, in_dim)` to `(b, heads, t, out_dim / heads)`.
    pub fn forward_heads(&self, xs: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
        match &self.weights {
            Weights::Float { weight, bias } => ops::linear_heads(xs, weight, bias, heads),
            Weights::Int8(layer) => {
                let (b, time, _) = xs.dims3()?;
                layer.forward(xs, false)?.reshape((b, time, heads, ()))?.transpose(1, 2)?.contiguous()
            }
        }
    }

    /// `dropout(relu(forward(xs)))` as one operation, with `dropout` a mask over the output
    /// (an int8 layer decodes, so it has no dropout).
    pub fn forward_relu(
        &self,
        xs: &Tensor,
        dropout: Option<&ops::DropoutMask>,
    ) -> candle_core::Result<Tensor> {
        match &self.weights {
            Weights::Float { weight, bias } => ops::linear_relu(xs, weight, bias, dropout),
            Weights::Int8(_) if dropout.is_some() => {
                candle_core::bail!("an int8 linear layer is for decoding, not for training with dropout")
            }
            Weights::Int8(layer) => layer.forward(xs, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::random;

    fn float(layer: &Linear) -> (&Tensor, &Tensor) {
        match &layer.weights {
            Weights::Float { weight, bias } => (weight, bias),
            Weights::Int8(_) => panic!("an int8 layer"),
        }
    }

    /// The copy for inference holds the weight packed for decoding, and the same bias, and
    /// computes the same layer in every form (plain, split into heads, with ReLU).
    #[test]
    fn the_inference_copy_packs_the_weight_and_computes_the_same_layer() -> candle_core::Result<()> {
        let layer = Linear { weights: Weights::Float { weight: random((4, 3), 1)?, bias: random(4, 2)? } };
        let copy = layer.for_inference(Quantization::None)?;
        let ((weight, bias), (copy_weight, copy_bias)) = (float(&layer), float(&copy));
        assert_eq!((weight.dims(), copy_weight.dims()), (&[4, 3][..], &[1, 3, 64][..]));
        assert_eq!(copy_bias.to_vec1::<f64>()?, bias.to_vec1::<f64>()?);
        let xs = random((2, 5, 3), 3)?;
        let same = |a: Tensor, b: Tensor| -> candle_core::Result<()> {
            assert!(crate::testing::max_diff(&a, &b)? < 1e-12);
            Ok(())
        };
        same(layer.forward(&xs)?, copy.forward(&xs)?)?;
        same(layer.forward_heads(&xs, 2)?, copy.forward_heads(&xs, 2)?)?;
        same(layer.forward_relu(&xs, None)?, copy.forward_relu(&xs, None)?)
    }

    /// The int8 copy gives the float layer's outputs within quantization error, in every
    /// form (plain, split into heads, with ReLU).
    #[test]
    fn the_int8_copy_computes_the_same_layer() -> candle_core::Result<()> {
        let layer = Linear {
            weights: Weights::Float {
                weight: random((8, 16), 1)?.to_dtype(candle_core::DType::F32)?,
                bias: random(8, 2)?.to_dtype(candle_core::DType::F32)?,
            },
        };
        let int8 = layer.for_inference(Quantization::Int8)?;
        assert!(matches!(int8.weights, Weights::Int8(_)) && int8.out_dim() == 8);
        let xs = random((2, 3, 16), 3)?.to_dtype(candle_core::DType::F32)?;
        let close = |a: Tensor, b: Tensor| -> candle_core::Result<()> {
            let diff = crate::testing::max_diff(&a, &b)?;
            assert!(diff > 0.0 && diff < 0.05, "{diff}");
            Ok(())
        };
        close(layer.forward(&xs)?, int8.forward(&xs)?)?;
        close(layer.forward_heads(&xs, 2)?, int8.forward_heads(&xs, 2)?)?;
        close(layer.forward_relu(&xs, None)?, int8.forward_relu(&xs, None)?)?;
        Ok(())
    }
}
