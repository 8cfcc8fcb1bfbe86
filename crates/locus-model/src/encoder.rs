//! The Transformer encoder: positions, then a stack of self-attention and feed-forward layers.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::attention::{AttentionMaps, MultiHeadAttention};
use crate::config::ModelConfig;
use crate::dropout::DropoutRng;
use crate::error::Result;
use crate::feed_forward::FeedForward;
use crate::linear::Quantization;
use crate::norm::LayerNorm;
use crate::positional::{LayerPositions, Span};
use crate::residual::Residual;
use crate::stack::{SequenceStarts, Stack};

/// Self-attention then feed-forward, each in a residual block.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    self_attn: MultiHeadAttention,
    self_attn_norm: LayerNorm,
    ffn: FeedForward,
    ffn_norm: LayerNorm,
    residual: Residual,
}

impl EncoderLayer {
    /// One encoder layer under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            self_attn: MultiHeadAttention::new(cfg, vb.pp("self_attn"))?,
            self_attn_norm: LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("self_attn_norm"))?,
            ffn: FeedForward::new(cfg, vb.pp("ffn"))?,
            ffn_norm: LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("ffn_norm"))?,
            residual: Residual::new(cfg),
        })
    }

    /// This layer with its linear layers laid out, or quantized, for decoding ([`Linear::for_inference`]).
    pub(crate) fn for_inference(&self, quantization: Quantization) -> candle_core::Result<Self> {
        Ok(Self {
            self_attn: self.self_attn.for_inference(quantization)?,
            ffn: self.ffn.for_inference(quantization)?,
            ..self.clone()
        })
    }

    /// The layer's output; with `maps`, its attention probabilities are pushed onto
    /// `maps.encoder`.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, src_len, d_model)`; `bias` broadcastable to `(b_sz, heads, src_len, src_len)`.
    pub fn forward(
        &self,
        xs: &Tensor,
        bias: Option<&Tensor>,
        positions: LayerPositions,
        mut rng: Option<&mut DropoutRng>,
        maps: Option<&mut AttentionMaps>,
    ) -> candle_core::Result<Tensor> {
        let xs = self.residual.apply(&self.self_attn_norm, xs, rng.as_deref_mut(), |h, rng| {
            let kv = self.self_attn.key_values(h, positions)?;
            self.self_attn.forward(h, &kv, None, bias, positions, rng, maps.map(|maps| &mut maps.encoder))
        })?;
        self.residual.apply(&self.ffn_norm, &xs, rng, |h, rng| self.ffn.forward(h, rng))
    }
}

/// The encoder stack: its positional encoding, layers, and a final norm when pre-norm.
pub type Encoder = Stack<EncoderLayer>;

impl Encoder {
    /// `cfg.encoder_layers` layers under `vb` (`positional`, `layers.{i}`, `final_norm`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Stack::build(cfg, cfg.encoder_positional(), false, cfg.encoder_layers, vb, EncoderLayer::new)
    }

    /// Encodes scaled token embeddings whose first token sits at position `offset` (0, unless
    /// positions are deliberately shifted). While training (`rng` is `Some`), an absolute
    /// encoding with `position_shift` moves each sequence on by its own random shift (SHAPE).
    ///
    /// # Shapes
    /// `tokens`: `(b_sz, src_len, token_width)`; `padding_bias`: `(b_sz, 1, 1, src_len)`;
    /// returns `(b_sz, src_len, d_model)`.
    pub fn forward(
        &self,
        tokens: &Tensor,
        padding_bias: &Tensor,
        offset: usize,
        rng: Option<&mut DropoutRng>,
        mut maps: Option<&mut AttentionMaps>,
    ) -> Result<Tensor> {
        let span = Span::same(tokens.dim(1)?, offset);
        self.run(
            tokens,
            span,
            padding_bias,
            SequenceStarts::Shiftable,
            rng,
            |(_, layer, xs, bias, positions), rng| {
                layer.forward(xs, Some(bias), positions, rng, maps.as_deref_mut())
            },
        )
    }
}
