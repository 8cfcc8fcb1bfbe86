//! The position-wise feed-forward block: `fc2(dropout(act(fc1(x))))`.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use crate::config::{Activation, ModelConfig};
use crate::dropout::{Dropout, DropoutRng};
use crate::linear::{Linear, Quantization};

/// Two linear maps around a non-linearity, applied to every position independently.
#[derive(Debug, Clone)]
pub struct FeedForward {
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
    activation_dropout: Dropout,
}

impl FeedForward {
    /// A block `d_model → d_ff → d_model` under `vb` (`fc1`, `fc2`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            fc1: Linear::new(cfg.d_model, cfg.d_ff, vb.pp("fc1"))?,
            fc2: Linear::new(cfg.d_ff, cfg.d_model, vb.pp("fc2"))?,
            activation: cfg.activation,
            activation_dropout: Dropout::new(cfg.activation_dropout),
        })
    }

    /// This block with its layers laid out, or quantized, for decoding ([`Linear::for_inference`]).
    pub(crate) fn for_inference(&self, quantization: Quantization) -> candle_core::Result<Self> {
        Ok(Self {
            fc1: self.fc1.for_inference(quantization)?,
            fc2: self.fc2.for_inference(quantization)?,
            ..self.clone()
        })
    }

    /// # Shapes
    /// `xs`: `(b_sz, seq_len, d_model)`; returns the same shape.
    pub fn forward(&self, xs: &Tensor, rng: Option<&mut DropoutRng>) -> candle_core::Result<Tensor> {
        let hidden = match self.activation {
            Activation::Relu => {
                let hidden_size = xs.elem_count() / xs.dim(D::Minus1)? * self.fc1.out_dim();
                self.fc1
                    .forward_relu(xs, self.activation_dropout.mask(hidden_size, xs.device(), rng)?.as_ref())?
            }
            Activation::Gelu => self.activation_dropout.forward(&self.fc1.forward(xs)?.gelu_erf()?, rng)?,
        };
        self.fc2.forward(&hidden)
    }
}
