//! Multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2) with an
//! additive score bias and a key/value cache for incremental decoding.
//!
//! The bias is the seam for everything that shapes *which* keys a query may see or prefer:
//! padding and causal masks today, and relative-position biases for the encodings that act
//! inside attention.

use candle_core::{Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};

use crate::config::ModelConfig;
use crate::dropout::{Dropout, DropoutRng};
use crate::init::linear;

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
}

impl MultiHeadAttention {
    /// Attention of width `d_model` with `n_heads` heads under `vb`
    /// (`q_proj`, `k_proj`, `v_proj`, `out_proj`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.d_model;
        Ok(Self {
            q_proj: linear(d, d, vb.pp("q_proj"))?,
            k_proj: linear(d, d, vb.pp("k_proj"))?,
            v_proj: linear(d, d, vb.pp("v_proj"))?,
            out_proj: linear(d, d, vb.pp("out_proj"))?,
            n_heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
            dropout: Dropout::new(cfg.attention_dropout),
        })
    }

    /// `(b, t, d_model)` to `(b, n_heads, t, head_dim)`.
    fn split_heads(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b_sz, seq_len, _) = xs.dims3()?;
        xs.reshape((b_sz, seq_len, self.n_heads, self.head_dim))?.transpose(1, 2)?.contiguous()
    }

    /// Projects `xs` into keys and values for this attention.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, seq_len, d_model)`.
    pub fn key_values(&self, xs: &Tensor) -> candle_core::Result<KeyValues> {
        Ok(KeyValues {
            keys: self.split_heads(&self.k_proj.forward(xs)?)?,
            values: self.split_heads(&self.v_proj.forward(xs)?)?,
        })
    }

    /// Attends from the queries `xs` to `kv`, adding `bias` to the scores before the softmax.
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
        rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let (b_sz, q_len, d_model) = xs.dims3()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let queries = (self.split_heads(&self.q_proj.forward(xs)?)? * scale)?;
        let scores = queries.matmul(&kv.keys.t()?)?;
        let scores = match bias {
            Some(bias) => scores.broadcast_add(bias)?,
            None => scores,
        };
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let weights = self.dropout.forward(&weights, rng)?;
        let context = weights.matmul(&kv.values)?;
        let context = context.transpose(1, 2)?.reshape((b_sz, q_len, d_model))?;
        self.out_proj.forward(&context)
    }
}
