//! What the encoder and decoder share: a stack of layers with its positional encoding, the
//! embedding dropout and (pre-norm) a final norm, built the same way, and the same forward
//! prologue (position vectors into the embeddings, embedding dropout, the attention bias, each
//! layer's positional input) around each stack's own layers.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::config::{ModelConfig, NormPosition};
use crate::dropout::{Dropout, DropoutRng};
use crate::error::Result;
use crate::norm::LayerNorm;
use crate::positional::{LayerPositions, PositionalConfig, PositionalEncoding, RopeScaling, Span};

/// Where the sequences of a forward pass start among the positions of the stack's [`Span`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum SequenceStarts<'a> {
    /// At the span's first position; while training, an absolute encoding with
    /// `position_shift` moves each on by a random shift (SHAPE), and an encoding with
    /// `random_positions` places each at its own sorted sample of positions.
    Shiftable,
    /// At the span's first position, never shifted (incremental decoding).
    Span,
    /// Sequence `r` at span position `origins[r]` (a running batch that sentences joined at
    /// different steps; see [`PositionalEncoding::ragged_frame`]).
    Ragged(&'a [usize]),
}

/// A stack of layers `L`: its positional encoding, layers, and a final norm when pre-norm
/// ([`Encoder`](crate::encoder::Encoder) and [`Decoder`](crate::decoder::Decoder) are its two
/// instances).
#[derive(Debug, Clone)]
pub struct Stack<L> {
    positional: PositionalEncoding,
    /// Randomized training positions are drawn from `0..random_positions` (0: off).
    random_positions: usize,
    embed_dropout: Dropout,
    layers: Vec<L>,
    final_norm: Option<LayerNorm>,
}

/// What one layer of a stack gets in a forward pass: its index, the layer, its input, the
/// self-attention bias and its positional share of the pass, and the dropout stream.
pub type LayerCall<'a, L> = (usize, &'a L, &'a Tensor, &'a Tensor, LayerPositions<'a>);

impl<L> Stack<L> {
    /// `n_layers` layers made by `new_layer` under `vb` (`positional`, `layers.{i}`,
    /// `final_norm`), with the encoding `positional`; `causal` for the decoder.
    ///
    /// Weights are created in this order: the encoding's, then for each layer the ones the
    /// encoding owns in it (Shaw's `self_attn.relative`) and the layer's own, then the final
    /// norm; seeded initialisation draws them in that order.
    pub(crate) fn build(
        cfg: &ModelConfig,
        positional: &PositionalConfig,
        causal: bool,
        n_layers: usize,
        vb: VarBuilder,
        new_layer: impl Fn(&ModelConfig, VarBuilder) -> candle_core::Result<L>,
    ) -> Result<Self> {
        let random_positions = positional.random_positions();
        let mut positional =
            PositionalEncoding::new(positional, cfg.d_model, cfg.n_heads, causal, vb.pp("positional"))?;
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let vb = vb.pp(format!("layers.{i}"));
            positional.add_layer(vb.pp("self_attn").pp("relative"))?;
            layers.push(new_layer(cfg, vb)?);
        }
        let final_norm = match cfg.norm {
            NormPosition::Pre => Some(LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("final_norm"))?),
            NormPosition::Post => None,
        };
        Ok(Self {
            positional,
            random_positions,
            embed_dropout: Dropout::new(cfg.dropout),
            layers,
            final_norm,
        })
    }

    /// The stack's positional encoding.
    pub fn positional(&self) -> &PositionalEncoding {
        &self.positional
    }

    /// This stack with its RoPE positions stretched by `scaling`, if its encoding is RoPE.
    pub(crate) fn with_rope_scaling(&self, scaling: RopeScaling) -> Option<Self>
    where
        L: Clone,
    {
        let positional = self.positional.with_rope_scaling(scaling)?;
        Some(Self { positional, ..self.clone() })
    }

    /// The layers.
    pub fn layers(&self) -> &[L] {
        &self.layers
    }

    /// This stack with each layer replaced by `map(layer)`.
    pub(crate) fn map_layers(&self, map: impl Fn(&L) -> candle_core::Result<L>) -> candle_core::Result<Self>
    where
        L: Clone,
    {
        let layers = self.layers.iter().map(map).collect::<candle_core::Result<_>>()?;
        Ok(Self { layers, ..self.clone() })
    }

    /// Runs the stack over scaled token embeddings placed by `span`: the positional frame,
    /// the embeddings with their positions, embedding dropout, `mask` plus the position bias,
    /// then each layer through `layer`, then the final norm. The sequences start where
    /// `starts` says: with [`SequenceStarts::Shiftable`], while training (`rng` is `Some`), an
    /// absolute encoding with `position_shift` first draws each sequence's shift (SHAPE), and
    /// an encoding with `random_positions` each sequence's positions
    /// ([`PositionalEncoding::random_frame`]).
    ///
    /// # Shapes
    /// `tokens`: `(b_sz, q_len, token_width)`; `mask` broadcastable to
    /// `(b_sz, n_heads, q_len, k_len)`; returns `(b_sz, q_len, d_model)`.
    pub(crate) fn run(
        &self,
        tokens: &Tensor,
        span: Span,
        mask: &Tensor,
        starts: SequenceStarts,
        mut rng: Option<&mut DropoutRng>,
        mut layer: impl FnMut(LayerCall<'_, L>, Option<&mut DropoutRng>) -> candle_core::Result<Tensor>,
    ) -> Result<Tensor> {
        let b_sz = tokens.dim(0)?;
        let (dtype, device) = (tokens.dtype(), tokens.device());
        let frame = match starts {
            SequenceStarts::Shiftable => match rng.as_deref_mut() {
                Some(rng) if self.random_positions > 0 => {
                    self.positional.random_frame(b_sz, span, self.random_positions, rng, dtype, device)?
                }
                rng => self.positional.frame(b_sz, span, rng, dtype, device)?,
            },
            SequenceStarts::Span => self.positional.frame(b_sz, span, None, dtype, device)?,
            SequenceStarts::Ragged(origins) => self.positional.ragged_frame(span, origins, dtype, device)?,
        };
        let xs = frame.embed(tokens)?;
        let mut xs = self.embed_dropout.forward(&xs, rng.as_deref_mut())?;
        let bias = frame.attention_bias(mask)?;
        for (i, stack_layer) in self.layers.iter().enumerate() {
            if i > 0 {
                xs = frame.layer_input(&xs)?;
            }
            xs = layer((i, stack_layer, &xs, &bias, frame.layer(i)), rng.as_deref_mut())?;
        }
        Ok(match &self.final_norm {
            Some(norm) => norm.forward(&xs)?,
            None => xs,
        })
    }
}
