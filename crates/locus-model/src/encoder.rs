//! The Transformer encoder: positions, then a stack of self-attention and feed-forward layers.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::attention::MultiHeadAttention;
use crate::config::{ModelConfig, NormPosition};
use crate::dropout::{Dropout, DropoutRng};
use crate::error::Result;
use crate::feed_forward::FeedForward;
use crate::norm::LayerNorm;
use crate::positional::{LayerPositions, PositionalEncoding, Span};
use crate::residual::Residual;
use crate::stack::Stack;

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
        positions: LayerPositions,
        mut rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let xs = self.residual(&self.self_attn_norm).apply(xs, rng.as_deref_mut(), |h, rng| {
            let kv = self.self_attn.key_values(h, positions)?;
            self.self_attn.forward(h, &kv, bias, positions, rng)
        })?;
        self.residual(&self.ffn_norm).apply(&xs, rng, |h, rng| self.ffn.forward(h, rng))
    }
}

/// The encoder stack: its positional encoding, layers, and a final norm when pre-norm.
#[derive(Debug, Clone)]
pub struct Encoder {
    stack: Stack<EncoderLayer>,
}

impl Encoder {
    /// `cfg.encoder_layers` layers under `vb` (`positional`, `layers.{i}`, `final_norm`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let positional = cfg.encoder_positional();
        Ok(Self { stack: Stack::new(cfg, positional, false, cfg.encoder_layers, vb, EncoderLayer::new)? })
    }

    /// The stack's positional encoding.
    pub fn positional(&self) -> &PositionalEncoding {
        self.stack.positional()
    }

    /// The layers.
    pub fn layers(&self) -> &[EncoderLayer] {
        self.stack.layers()
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
    ) -> Result<Tensor> {
        let span = Span::same(tokens.dim(1)?, offset);
        self.stack.forward(tokens, span, padding_bias, true, rng, |(_, layer, xs, bias, positions), rng| {
            layer.forward(xs, Some(bias), positions, rng)
        })
    }
}
