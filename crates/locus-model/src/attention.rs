//! Multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2) with an
//! additive score bias and a key/value cache for incremental decoding.
//!
//! Positional encodings that act inside attention plug in here: an additive score bias
//! (padding and causal masks, T5 and ALiBi biases), rotated queries and keys (RoPE), and
//! relative key and value vectors (Shaw et al.), the last two handed to each self-attention
//! call by the stack's positional frame ([`LayerPositions`]).
//!
//! A pass may also record its attention probabilities ([`AttentionMaps`]): `locus attention`
//! draws them.

use std::f64::consts::FRAC_1_SQRT_2;

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::config::ModelConfig;
use crate::dropout::{Dropout, DropoutRng};
use crate::linear::{Linear, Quantization};
use crate::ops::{attention, softmax_last_dim, KeyRows};
use crate::positional::{LayerPositions, RelativeIds, RelativePositions};

/// Projected keys and values, split into heads: each `(b_sz, n_heads, seq_len, head_dim)`.
///
/// In incremental decoding the decoder keeps the self-attention ones of every position so far
/// in a [`SelfKeyValues`](crate::kv_cache::SelfKeyValues), which grows by one position per
/// step; cross-attention computes them once from the encoder output.
#[derive(Debug, Clone)]
pub struct KeyValues {
    pub(crate) keys: Tensor,
    pub(crate) values: Tensor,
}

impl KeyValues {
    /// Keeps the batch rows `rows` (a `u32` index tensor), in that order: cross-attention
    /// keys and values narrowed to the sources still decoded.
    pub fn select_rows(&self, rows: &Tensor) -> candle_core::Result<KeyValues> {
        Ok(KeyValues { keys: self.keys.index_select(rows, 0)?, values: self.values.index_select(rows, 0)? })
    }

    /// `self`'s rows, then `other`'s (batch axis). The shorter of the two is padded with zero
    /// positions at the end, so that sources of different lengths share one cross-attention
    /// cache; the padding bias hides those positions.
    pub fn cat_rows(&self, other: &KeyValues) -> candle_core::Result<KeyValues> {
        let len = self.len().max(other.len());
        let padded = |kv: &KeyValues| -> candle_core::Result<(Tensor, Tensor)> {
            let extra = len - kv.len();
            Ok((kv.keys.pad_with_zeros(2, 0, extra)?, kv.values.pad_with_zeros(2, 0, extra)?))
        };
        let ((keys, values), (other_keys, other_values)) = (padded(self)?, padded(other)?);
        Ok(KeyValues {
            keys: Tensor::cat(&[keys, other_keys], 0)?,
            values: Tensor::cat(&[values, other_values], 0)?,
        })
    }

    /// The device the keys and values are on.
    pub fn device(&self) -> &candle_core::Device {
        self.keys.device()
    }

    /// Number of batch rows.
    pub fn rows(&self) -> usize {
        self.keys.dims()[0]
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

/// The attention probabilities of one teacher-forced pass, one tensor per layer, each
/// `(b_sz, n_heads, q_len, k_len)` with rows summing to 1 ([`Seq2Seq::attention_maps`]).
///
/// [`Seq2Seq::attention_maps`]: crate::Seq2Seq::attention_maps
#[derive(Debug, Clone, Default)]
pub struct AttentionMaps {
    /// Encoder self-attention: source positions over source positions.
    pub encoder: Vec<Tensor>,
    /// Decoder self-attention: target positions over the target positions up to each.
    pub decoder: Vec<Tensor>,
    /// Cross-attention: target positions over source positions.
    pub cross: Vec<Tensor>,
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
}

impl MultiHeadAttention {
    /// Attention of width `d_model` with `n_heads` heads under `vb`
    /// (`q_proj`, `k_proj`, `v_proj`, `out_proj`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        // fairseq's initialisation (its MultiheadAttention.reset_parameters).
        let d = cfg.d_model;
        let input = |name: &str| Linear::xavier(d, d, FRAC_1_SQRT_2, Linear::pytorch_init(d), vb.pp(name));
        Ok(Self {
            q_proj: input("q_proj")?,
            k_proj: input("k_proj")?,
            v_proj: input("v_proj")?,
            out_proj: Linear::xavier(d, d, 1.0, Init::Const(0.0), vb.pp("out_proj"))?,
            n_heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
            dropout: Dropout::new(cfg.attention_dropout),
        })
    }

    /// This attention with its projections laid out, or quantized, for decoding ([`Linear::for_inference`]).
    pub(crate) fn for_inference(&self, quantization: Quantization) -> candle_core::Result<Self> {
        Ok(Self {
            q_proj: self.q_proj.for_inference(quantization)?,
            k_proj: self.k_proj.for_inference(quantization)?,
            v_proj: self.v_proj.for_inference(quantization)?,
            out_proj: self.out_proj.for_inference(quantization)?,
            ..self.clone()
        })
    }

    /// Projects `xs` into keys and values for this attention; with a rotation in
    /// `positions`, the keys are rotated to their positions (those of the pass's new queries).
    ///
    /// # Shapes
    /// `xs`: `(b_sz, seq_len, d_model)`.
    pub fn key_values(&self, xs: &Tensor, positions: LayerPositions) -> candle_core::Result<KeyValues> {
        let keys = self.k_proj.forward_heads(xs, self.n_heads)?;
        let keys = match positions.rotation {
            Some(rotation) => rotation.rotate_keys(&keys)?,
            None => keys,
        };
        Ok(KeyValues { keys, values: self.v_proj.forward_heads(xs, self.n_heads)? })
    }

    /// Attends from the queries `xs` to `kv`, adding `bias` to the scores before the softmax;
    /// `positions` rotates the queries (RoPE) and adds relative vectors (Shaw et al.). With
    /// `record`, the attention probabilities (before dropout) are pushed onto it; they are then
    /// composed from candle operations, since the fused [`attention`] does not return them.
    /// With `key_rows`, the rows of `xs` attend to other rows of `kv` than their own
    /// ([`KeyRows`]).
    ///
    /// # Shapes
    /// - `xs`: `(b_sz, q_len, d_model)`;
    /// - `kv`: keys and values of `k_len` positions, `b_sz` rows (any number with `key_rows`);
    /// - `bias`: broadcastable to `(b_sz, n_heads, q_len, k_len)`;
    /// - the recorded probabilities: `(b_sz, n_heads, q_len, k_len)`;
    /// - returns `(b_sz, q_len, d_model)`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        xs: &Tensor,
        kv: &KeyValues,
        key_rows: Option<KeyRows>,
        bias: Option<&Tensor>,
        positions: LayerPositions,
        rng: Option<&mut DropoutRng>,
        record: Option<&mut Vec<Tensor>>,
    ) -> candle_core::Result<Tensor> {
        let (b_sz, q_len, d_model) = xs.dims3()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let queries = self.q_proj.forward_heads(xs, self.n_heads)?;
        let queries = match positions.rotation {
            Some(rotation) => rotation.rotate_queries(&queries)?,
            None => queries,
        };
        let context = match (positions.relative, record) {
            (None, None) => {
                let dropout = self.dropout.mask(b_sz * self.n_heads * q_len * kv.len(), xs.device(), rng)?;
                attention(&queries, &kv.keys, &kv.values, scale, bias, dropout.as_ref(), key_rows)?
            }
            (relative, record) => {
                let gathered;
                let kv = match key_rows {
                    Some(key_rows) => {
                        gathered = KeyValues {
                            keys: key_rows.gather(&kv.keys)?,
                            values: key_rows.gather(&kv.values)?,
                        };
                        &gathered
                    }
                    None => kv,
                };
                let context = self.composed_context(relative, &queries, kv, scale, bias, rng, record)?;
                context.transpose(1, 2)?.reshape((b_sz, q_len, d_model))?
            }
        };
        self.out_proj.forward(&context)
    }

    /// Attention composed from candle operations, for what the fused [`attention`] cannot do:
    /// Shaw et al.'s relative vectors, and recording the probabilities into `record`.
    /// Returns `(b_sz, n_heads, q_len, head_dim)`.
    #[allow(clippy::too_many_arguments)]
    fn composed_context(
        &self,
        relative: Option<(&RelativePositions, &RelativeIds)>,
        queries: &Tensor,
        kv: &KeyValues,
        scale: f64,
        bias: Option<&Tensor>,
        rng: Option<&mut DropoutRng>,
        record: Option<&mut Vec<Tensor>>,
    ) -> candle_core::Result<Tensor> {
        let queries = (queries * scale)?;
        let mut scores = queries.matmul(&kv.keys.t()?)?;
        if let Some((relative, ids)) = relative {
            scores = (scores + relative.score_bias(&queries, ids)?)?;
        }
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let probabilities = softmax_last_dim(&scores)?;
        if let Some(record) = record {
            record.push(probabilities.clone());
        }
        let weights = self.dropout.forward(&probabilities, rng)?;
        let context = weights.matmul(&kv.values)?;
        match relative {
            Some((relative, ids)) => match relative.value_term(&weights, ids)? {
                Some(values) => context + values,
                None => Ok(context),
            },
            None => Ok(context),
        }
    }
}
