//! Multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2) with an
//! additive score bias and a key/value cache for incremental decoding.
//!
//! Positional encodings that act inside attention plug in here: an additive score bias
//! (padding and causal masks, T5 and ALiBi biases), rotated queries and keys (RoPE), and
//! relative key and value vectors (Shaw et al.), which each self-attention layer owns.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::dropout::{Dropout, DropoutRng};
use crate::linear::Linear;
use crate::ops::{attention, softmax_last_dim};
use crate::positional::{RelativePositions, RelativeSpec, Rotary};

/// Where the queries and keys of one attention call sit, for the encodings that act inside
/// attention: query `i` is at position `q_offset + i`, key `j` at `k_offset + j`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Positions<'a> {
    /// The rotation of RoPE, if the stack uses it.
    pub rotary: Option<&'a Rotary>,
    /// Position of the first query.
    pub q_offset: usize,
    /// Position of the first key.
    pub k_offset: usize,
}

/// Projected keys and values, split into heads: each `(b_sz, n_heads, seq_len, head_dim)`.
///
/// In incremental decoding the decoder keeps one per layer and grows it by one position per
/// step ([`KeyValues::append`]); cross-attention computes it once from the encoder output.
#[derive(Debug, Clone)]
pub struct KeyValues {
    keys: Tensor,
    values: Tensor,
}

impl KeyValues {
    /// Concatenates `new` after `self` along the sequence axis.
    pub fn append(&self, new: &KeyValues) -> candle_core::Result<KeyValues> {
        Ok(KeyValues {
            keys: Tensor::cat(&[&self.keys, &new.keys], 2)?,
            values: Tensor::cat(&[&self.values, &new.values], 2)?,
        })
    }

    /// Keeps the batch rows `rows` (a `u32` index tensor), in that order: beam search's
    /// reordering, and finished sentences leaving the batch.
    pub fn select_rows(&self, rows: &Tensor) -> candle_core::Result<KeyValues> {
        Ok(KeyValues { keys: self.keys.index_select(rows, 0)?, values: self.values.index_select(rows, 0)? })
    }

    /// The same keys and values, cut from the autograd graph that produced them. A cache must
    /// hold detached tensors: the weights are variables, so every tensor computed from them
    /// keeps its inputs alive for backprop, and a cache that does not let go would keep every
    /// intermediate of every decoding step of the batch in memory (gigabytes for a batch of 100).
    pub fn detach(&self) -> KeyValues {
        KeyValues { keys: self.keys.detach(), values: self.values.detach() }
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.keys.dims()[2]
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Multi-head attention with separate query, key, value and output projections.
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    n_heads: usize,
    head_dim: usize,
    dropout: Dropout,
    relative: Option<RelativePositions>,
}

impl MultiHeadAttention {
    /// Attention of width `d_model` with `n_heads` heads under `vb`
    /// (`q_proj`, `k_proj`, `v_proj`, `out_proj`, and `relative` with Shaw et al.'s vectors).
    pub fn new(
        cfg: &ModelConfig,
        relative: Option<RelativeSpec>,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let d = cfg.d_model;
        let relative = relative
            .map(|spec| {
                RelativePositions::new(spec.max_distance, cfg.head_dim(), spec.values, vb.pp("relative"))
            })
            .transpose()?;
        Ok(Self {
            relative,
            q_proj: Linear::new(d, d, vb.pp("q_proj"))?,
            k_proj: Linear::new(d, d, vb.pp("k_proj"))?,
            v_proj: Linear::new(d, d, vb.pp("v_proj"))?,
            out_proj: Linear::new(d, d, vb.pp("out_proj"))?,
            n_heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
            dropout: Dropout::new(cfg.attention_dropout),
        })
    }

    /// The relative vectors of Shaw et al., if this attention has them.
    pub fn relative(&self) -> Option<&RelativePositions> {
        self.relative.as_ref()
    }

    /// Projects `xs` into keys and values for this attention; with `rotary`, the keys are
    /// rotated to their positions `offset..`.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, seq_len, d_model)`.
    pub fn key_values(
        &self,
        xs: &Tensor,
        rotary: Option<&Rotary>,
        offset: usize,
    ) -> candle_core::Result<KeyValues> {
        let keys = self.k_proj.forward_heads(xs, self.n_heads)?;
        let keys = match rotary {
            Some(rotary) => rotary.rotate(&keys, offset)?,
            None => keys,
        };
        Ok(KeyValues { keys, values: self.v_proj.forward_heads(xs, self.n_heads)? })
    }

    /// Attends from the queries `xs` to `kv`, adding `bias` to the scores before the softmax;
    /// `positions` places queries and keys for RoPE and relative vectors.
    ///
    /// # Shapes
    /// - `xs`: `(b_sz, q_len, d_model)`;
    /// - `kv`: keys and values of `k_len` positions;
    /// - `bias`: broadcastable to `(b_sz, n_heads, q_len, k_len)`;
    /// - returns `(b_sz, q_len, d_model)`.
    pub fn forward(
        &self,
        xs: &Tensor,
        kv: &KeyValues,
        bias: Option<&Tensor>,
        positions: Positions,
        rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let (b_sz, q_len, d_model) = xs.dims3()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let queries = self.q_proj.forward_heads(xs, self.n_heads)?;
        let queries = match positions.rotary {
            Some(rotary) => rotary.rotate(&queries, positions.q_offset)?,
            None => queries,
        };
        let context = match &self.relative {
            None => {
                let dropout = self.dropout.mask(b_sz * self.n_heads * q_len * kv.len(), xs.device(), rng)?;
                attention(&queries, &kv.keys, &kv.values, scale, bias, dropout.as_ref())?
            }
            Some(relative) => {
                let context = self.relative_context(relative, &queries, kv, scale, bias, positions, rng)?;
                context.transpose(1, 2)?.reshape((b_sz, q_len, d_model))?
            }
        };
        self.out_proj.forward(&context)
    }

    /// Attention with Shaw et al.'s relative vectors, composed from candle operations (the
    /// fused [`attention`] has no relative terms): `(b_sz, n_heads, q_len, head_dim)`.
    #[allow(clippy::too_many_arguments)]
    fn relative_context(
        &self,
        relative: &RelativePositions,
        queries: &Tensor,
        kv: &KeyValues,
        scale: f64,
        bias: Option<&Tensor>,
        positions: Positions,
        rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let queries = (queries * scale)?;
        let score_bias = relative.score_bias(&queries, kv.len(), positions.q_offset, positions.k_offset)?;
        let scores = (queries.matmul(&kv.keys.t()?)? + score_bias)?;
        let scores = match bias {
            Some(bias) => scores.broadcast_add(bias)?,
            None => scores,
        };
        let weights = self.dropout.forward(&softmax_last_dim(&scores)?, rng)?;
        let context = weights.matmul(&kv.values)?;
        match relative.value_term(&weights, positions.q_offset, positions.k_offset)? {
            Some(values) => context + values,
            None => Ok(context),
        }
    }
}
