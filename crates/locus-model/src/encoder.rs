//! The Transformer encoder: positions, then a stack of self-attention and feed-forward layers.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::attention::{MultiHeadAttention, Positions};
use crate::config::{ModelConfig, NormPosition};
use crate::dropout::{Dropout, DropoutRng};
use crate::error::Result;
use crate::feed_forward::FeedForward;
use crate::norm::LayerNorm;
use crate::positional::{PositionalEncoding, RelativeSpec};
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
    /// One encoder layer under `vb`; `relative` gives its self-attention Shaw et al.'s vectors.
    pub fn new(
        cfg: &ModelConfig,
        relative: Option<RelativeSpec>,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            self_attn: MultiHeadAttention::new(cfg, relative, vb.pp("self_attn"))?,
            self_attn_norm: LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("self_attn_norm"))?,
            ffn: FeedForward::new(cfg, vb.pp("ffn"))?,
            ffn_norm: LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("ffn_norm"))?,
            dropout: Dropout::new(cfg.dropout),
            norm_position: cfg.norm,
        })
    }

    /// The layer's self-attention.
    pub fn self_attn(&self) -> &MultiHeadAttention {
        &self.self_attn
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
        positions: Positions,
        mut rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let xs = self.residual(&self.self_attn_norm).apply(xs, rng.as_deref_mut(), |h, rng| {
            let kv = self.self_attn.key_values(h, positions.rotary, positions.k_offset)?;
            self.self_attn.forward(h, &kv, bias, positions, rng)
        })?;
        self.residual(&self.ffn_norm).apply(&xs, rng, |h, rng| self.ffn.forward(h, rng))
    }
}

/// The encoder stack: its positional encoding, layers, and a final norm when pre-norm.
#[derive(Debug, Clone)]
pub struct Encoder {
    positional: PositionalEncoding,
    embed_dropout: Dropout,
    layers: Vec<EncoderLayer>,
    final_norm: Option<LayerNorm>,
}

impl Encoder {
    /// `cfg.encoder_layers` layers under `vb` (`positional`, `layers.{i}`, `final_norm`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let positional = PositionalEncoding::new(
            cfg.encoder_positional(),
            cfg.d_model,
            cfg.n_heads,
            false,
            vb.pp("positional"),
        )?;
        let layers = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::new(cfg, positional.relative(), vb.pp(format!("layers.{i}"))))
            .collect::<candle_core::Result<_>>()?;
        let final_norm = match cfg.norm {
            NormPosition::Pre => Some(LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("final_norm"))?),
            NormPosition::Post => None,
        };
        Ok(Self { positional, embed_dropout: Dropout::new(cfg.dropout), layers, final_norm })
    }

    /// The stack's positional encoding.
    pub fn positional(&self) -> &PositionalEncoding {
        &self.positional
    }

    /// The layers.
    pub fn layers(&self) -> &[EncoderLayer] {
        &self.layers
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
        mut rng: Option<&mut DropoutRng>,
    ) -> Result<Tensor> {
        let (b_sz, src_len, _) = tokens.dims3()?;
        let vectors = self.positional.positions(
            b_sz,
            src_len,
            offset,
            rng.as_deref_mut(),
            tokens.dtype(),
            tokens.device(),
        )?;
        let xs = self.positional.embed(tokens, vectors.as_ref())?;
        let mut xs = self.embed_dropout.forward(&xs, rng.as_deref_mut())?;
        let bias = match self.positional.attention_bias(
            src_len,
            src_len,
            offset,
            offset,
            xs.dtype(),
            xs.device(),
        )? {
            Some(position_bias) => padding_bias.broadcast_add(&position_bias)?,
            None => padding_bias.clone(),
        };
        let positions = Positions { rotary: self.positional.rotary(), q_offset: offset, k_offset: offset };
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                xs = self.positional.layer_input(&xs, vectors.as_ref())?;
            }
            xs = layer.forward(&xs, Some(&bias), positions, rng.as_deref_mut())?;
        }
        Ok(match &self.final_norm {
            Some(norm) => norm.forward(&xs)?,
            None => xs,
        })
    }
}
