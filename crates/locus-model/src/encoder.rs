//! The Transformer encoder: a stack of self-attention and feed-forward layers.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::attention::MultiHeadAttention;
use crate::config::{ModelConfig, NormPosition};
use crate::dropout::{Dropout, DropoutRng};
use crate::feed_forward::FeedForward;
use crate::norm::LayerNorm;
use crate::residual::Residual;

/// Self-attention then feed-forward, each in a residual block.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    self_attn: MultiHeadAttention,
    self_attn_norm: LayerNorm,
    ffn: FeedForward,
    ffn_norm: LayerNorm,
    dropout: Dropout,
    norm_position: NormPosition,
}

impl EncoderLayer {
    /// One encoder layer under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            self_attn: MultiHeadAttention::new(cfg, vb.pp("self_attn"))?,
            self_attn_norm: LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("self_attn_norm"))?,
            ffn: FeedForward::new(cfg, vb.pp("ffn"))?,
            ffn_norm: LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("ffn_norm"))?,
            dropout: Dropout::new(cfg.dropout),
            norm_position: cfg.norm,
        })
    }

    fn residual<'a>(&self, norm: &'a LayerNorm) -> Residual<'a> {
        Residual { norm, position: self.norm_position, dropout: self.dropout }
    }

    /// # Shapes
    /// `xs`: `(b_sz, src_len, d_model)`; `bias` broadcastable to `(b_sz, heads, src_len, src_len)`.
    pub fn forward(
        &self,
        xs: &Tensor,
        bias: Option<&Tensor>,
        mut rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let xs = self.residual(&self.self_attn_norm).apply(xs, rng.as_deref_mut(), |h, rng| {
            let kv = self.self_attn.key_values(h)?;
            self.self_attn.forward(h, &kv, bias, rng)
        })?;
        self.residual(&self.ffn_norm).apply(&xs, rng, |h, rng| self.ffn.forward(h, rng))
    }
}

/// A stack of encoder layers, with a final norm in the pre-norm arrangement.
#[derive(Debug, Clone)]
pub struct Encoder {
    layers: Vec<EncoderLayer>,
    final_norm: Option<LayerNorm>,
}

impl Encoder {
    /// `cfg.encoder_layers` layers under `vb` (`layers.{i}`, `final_norm`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let layers = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::new(cfg, vb.pp(format!("layers.{i}"))))
            .collect::<candle_core::Result<_>>()?;
        let final_norm = match cfg.norm {
            NormPosition::Pre => Some(LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("final_norm"))?),
            NormPosition::Post => None,
        };
        Ok(Self { layers, final_norm })
    }

    /// Encodes embedded source positions.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, src_len, d_model)`; `bias`: the source padding bias; returns `xs`'s shape.
    pub fn forward(
        &self,
        xs: &Tensor,
        bias: Option<&Tensor>,
        mut rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.layers {
            xs = layer.forward(&xs, bias, rng.as_deref_mut())?;
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&xs),
            None => Ok(xs),
        }
    }
}
