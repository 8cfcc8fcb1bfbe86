//! The Transformer decoder: masked self-attention, cross-attention to the encoder output and
//! feed-forward layers, with a per-layer key/value cache for incremental decoding.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::attention::{KeyValues, MultiHeadAttention};
use crate::config::{ModelConfig, NormPosition};
use crate::dropout::{Dropout, DropoutRng};
use crate::feed_forward::FeedForward;
use crate::norm::LayerNorm;
use crate::residual::Residual;

/// What one decoder layer remembers between incremental steps.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// Self-attention keys and values of every position decoded so far.
    self_kv: Option<KeyValues>,
    /// Cross-attention keys and values of the encoder output, computed at the first step.
    cross_kv: Option<KeyValues>,
}

/// The decoder's key/value cache: one [`LayerCache`] per layer and the next position.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    offset: usize,
}

impl DecoderCache {
    /// An empty cache for a decoder of `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self { layers: vec![LayerCache::default(); n_layers], offset: 0 }
    }

    /// Number of target positions already decoded (the position of the next token).
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// Self-attention, cross-attention and feed-forward, each in a residual block.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    self_attn: MultiHeadAttention,
    self_attn_norm: LayerNorm,
    cross_attn: MultiHeadAttention,
    cross_attn_norm: LayerNorm,
    ffn: FeedForward,
    ffn_norm: LayerNorm,
    dropout: Dropout,
    norm_position: NormPosition,
}

impl DecoderLayer {
    /// One decoder layer under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let norm = |name: &str| LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp(name));
        Ok(Self {
            self_attn: MultiHeadAttention::new(cfg, vb.pp("self_attn"))?,
            self_attn_norm: norm("self_attn_norm")?,
            cross_attn: MultiHeadAttention::new(cfg, vb.pp("cross_attn"))?,
            cross_attn_norm: norm("cross_attn_norm")?,
            ffn: FeedForward::new(cfg, vb.pp("ffn"))?,
            ffn_norm: norm("ffn_norm")?,
            dropout: Dropout::new(cfg.dropout),
            norm_position: cfg.norm,
        })
    }

    fn residual<'a>(&self, norm: &'a LayerNorm) -> Residual<'a> {
        Residual { norm, position: self.norm_position, dropout: self.dropout }
    }

    /// Decodes `xs` attending to itself (through `self_bias`, and to the cached past when
    /// `cache` is given) and to `memory`.
    ///
    /// # Shapes
    /// - `xs`: `(b_sz, tgt_len, d_model)`, the new positions only when decoding incrementally;
    /// - `memory`: `(b_sz, src_len, d_model)`; `memory_bias`: its padding bias;
    /// - `self_bias`: broadcastable to `(b_sz, heads, tgt_len, past + tgt_len)`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        xs: &Tensor,
        self_bias: Option<&Tensor>,
        memory: &Tensor,
        memory_bias: Option<&Tensor>,
        mut cache: Option<&mut LayerCache>,
        mut rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let xs = self.residual(&self.self_attn_norm).apply(xs, rng.as_deref_mut(), |h, rng| {
            let mut kv = self.self_attn.key_values(h)?;
            if let Some(cache) = cache.as_deref_mut() {
                if let Some(past) = &cache.self_kv {
                    kv = past.append(&kv)?;
                }
                cache.self_kv = Some(kv.clone());
            }
            self.self_attn.forward(h, &kv, self_bias, rng)
        })?;
        let xs = self.residual(&self.cross_attn_norm).apply(&xs, rng.as_deref_mut(), |h, rng| {
            let kv = match cache {
                Some(LayerCache { cross_kv: Some(kv), .. }) => kv.clone(),
                Some(cache) => {
                    let kv = self.cross_attn.key_values(memory)?;
                    cache.cross_kv = Some(kv.clone());
                    kv
                }
                None => self.cross_attn.key_values(memory)?,
            };
            self.cross_attn.forward(h, &kv, memory_bias, rng)
        })?;
        self.residual(&self.ffn_norm).apply(&xs, rng, |h, rng| self.ffn.forward(h, rng))
    }
}

/// A stack of decoder layers, with a final norm in the pre-norm arrangement.
#[derive(Debug, Clone)]
pub struct Decoder {
    layers: Vec<DecoderLayer>,
    final_norm: Option<LayerNorm>,
}

impl Decoder {
    /// `cfg.decoder_layers` layers under `vb` (`layers.{i}`, `final_norm`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let layers = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::new(cfg, vb.pp(format!("layers.{i}"))))
            .collect::<candle_core::Result<_>>()?;
        let final_norm = match cfg.norm {
            NormPosition::Pre => Some(LayerNorm::new(cfg.d_model, cfg.layer_norm_eps, vb.pp("final_norm"))?),
            NormPosition::Post => None,
        };
        Ok(Self { layers, final_norm })
    }

    /// Number of layers (the size of a [`DecoderCache`]).
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Runs the stack over embedded target positions; with `cache`, the positions continue
    /// those decoded before and the cache grows by `tgt_len`.
    ///
    /// # Shapes
    /// As [`DecoderLayer::forward`]; returns `(b_sz, tgt_len, d_model)`.
    pub fn forward(
        &self,
        xs: &Tensor,
        self_bias: Option<&Tensor>,
        memory: &Tensor,
        memory_bias: Option<&Tensor>,
        mut cache: Option<&mut DecoderCache>,
        mut rng: Option<&mut DropoutRng>,
    ) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            xs = layer.forward(&xs, self_bias, memory, memory_bias, layer_cache, rng.as_deref_mut())?;
        }
        if let Some(cache) = cache {
            cache.offset += xs.dim(1)?;
        }
        match &self.final_norm {
            Some(norm) => norm.forward(&xs),
            None => Ok(xs),
        }
    }
}
