//! The Transformer decoder: positions, then masked self-attention, cross-attention to the
//! encoder output and feed-forward layers, with a per-layer key/value cache for incremental
//! decoding.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::attention::{AttentionMaps, KeyValues, MultiHeadAttention};
use crate::config::ModelConfig;
use crate::dropout::DropoutRng;
use crate::error::Result;
use crate::feed_forward::FeedForward;
use crate::kv_cache::{HeldKeyValues, SelfKeyValues};
use crate::linear::Quantization;
use crate::mask::{causal_bias, start_bias};
use crate::norm::LayerNorm;
use crate::ops::KeyRows;
use crate::positional::{LayerPositions, Span};
use crate::residual::Residual;
use crate::stack::{SequenceStarts, Stack};

/// What one decoder layer remembers between incremental steps.
#[derive(Debug, Default)]
pub struct LayerCache {
    /// Self-attention keys (already rotated, with RoPE) and values of every position so far.
    self_kv: Option<SelfKeyValues>,
    /// Cross-attention keys and values of the encoder output, computed at the first step.
    cross_kv: Option<KeyValues>,
}

/// The decoder's key/value cache: one [`LayerCache`] per layer and the next position.
///
/// The batch rows need not be the memory's (the encoded sources'): beam search decodes several
/// hypotheses of each source, and finished sentences leave the batch. The cache keeps the
/// memory row each batch row reads; the cross-attention keys and values stay in memory rows,
/// shared by every row decoding that source, and move only when fewer than half of them are
/// still read ([`DecoderCache::select_rows`]).
///
/// Sentences may join a batch that has already decoded some steps ([`DecoderCache::join`]):
/// the cache then keeps, for every row, the cache position of its first token (its
/// *origin*). A row attends to its own positions only, and the encodings that read absolute
/// positions see its own ones ([`PositionalEncoding::ragged_frame`]), so that it decodes as it
/// would alone.
///
/// [`PositionalEncoding::ragged_frame`]: crate::positional::PositionalEncoding::ragged_frame
#[derive(Debug)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    offset: usize,
    /// Each row's origin; empty while every row starts at 0.
    origins: Vec<usize>,
    /// The memory row each batch row reads; `None` while row `i` reads memory row `i`.
    memory_rows: Option<Vec<u32>>,
}

impl DecoderCache {
    /// An empty cache for a decoder of `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: (0..n_layers).map(|_| LayerCache::default()).collect(),
            offset: 0,
            origins: Vec::new(),
            memory_rows: None,
        }
    }

    /// Number of cached positions (the position of the next token of a row that started at 0).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Each row's origin (the cache position of its first token) if some row started later
    /// than position 0; `None` when every row started at 0.
    pub fn origins(&self) -> Option<&[usize]> {
        self.origins.iter().any(|&origin| origin > 0).then_some(self.origins.as_slice())
    }

    /// The memory row each batch row reads, once rows have been selected; `None` until then,
    /// while row `i` reads memory row `i`.
    pub fn memory_rows(&self) -> Option<&[u32]> {
        self.memory_rows.as_deref()
    }

    /// Keeps the batch rows `rows` (repeats allowed), in that order. The self-attention keys
    /// and values are gathered; the cross-attention ones, which depend on the source alone,
    /// stay where they are: each kept row reads the memory row it read before. Positions that
    /// no kept row attends to any more (before every kept row's origin) are dropped once they
    /// are half of those held.
    ///
    /// When fewer than half of the memory rows are still read, the cross-attention keys and
    /// values are narrowed to those, and their indices (in increasing order) are returned:
    /// the caller narrows its [`Memory`](crate::Memory) to the same rows
    /// ([`Seq2Seq::select_rows`](crate::Seq2Seq::select_rows) does both).
    pub fn select_rows(&mut self, rows: &[u32]) -> candle_core::Result<Option<Vec<u32>>> {
        let held = self.layers.first().and_then(|layer| layer.self_kv.as_ref()).map(SelfKeyValues::rows);
        if let (Some(held), Some(&row)) =
            (held.or(self.memory_rows.as_ref().map(Vec::len)), rows.iter().max())
        {
            if row as usize >= held {
                candle_core::bail!("decoder cache: row {row} of {held}")
            }
        }
        let memory_rows: Vec<u32> = rows
            .iter()
            .map(|&row| self.memory_rows.as_ref().map_or(row, |read| read[row as usize]))
            .collect();
        let dropped = self.select_origins(rows);
        for kv in self.layers.iter_mut().filter_map(|layer| layer.self_kv.as_mut()) {
            kv.select(rows, dropped)?;
        }
        self.memory_rows = Some(memory_rows);
        self.narrow_memory()
    }

    /// Narrows the cross-attention keys and values to the memory rows still read, if that is
    /// fewer than half of them; returns the rows kept.
    fn narrow_memory(&mut self) -> candle_core::Result<Option<Vec<u32>>> {
        let (Some(memory_rows), Some(cross)) =
            (&self.memory_rows, self.layers.first().and_then(|layer| layer.cross_kv.as_ref()))
        else {
            return Ok(None);
        };
        let (held, device) = (cross.rows(), cross.device().clone());
        let mut read = memory_rows.clone();
        read.sort_unstable();
        read.dedup();
        if read.is_empty() || 2 * read.len() >= held {
            return Ok(None);
        }
        let mut renumbered = vec![0; held];
        read.iter().enumerate().for_each(|(new, &old)| renumbered[old as usize] = new as u32);
        self.memory_rows = Some(memory_rows.iter().map(|&old| renumbered[old as usize]).collect());
        let kept = Tensor::new(read.as_slice(), &device)?;
        for kv in self.layers.iter_mut().filter_map(|layer| layer.cross_kv.as_mut()) {
            *kv = kv.select_rows(&kept)?;
        }
        Ok(Some(read))
    }

    /// Adds `joining` rows that have decoded nothing yet after the batch's rows, reading the
    /// `joining` memory rows added after the `held` ones. In a cache that has decoded at least
    /// one step, their first token goes at the next position ([`offset`](Self::offset)), the
    /// positions before it are hidden from them, and `cross` must hold each layer's
    /// cross-attention keys and values of their sources. (Before the first step, rows simply
    /// join the batch: that step computes the cache of every row.)
    pub fn join(
        &mut self,
        held: usize,
        joining: usize,
        cross: Option<Vec<KeyValues>>,
    ) -> candle_core::Result<()> {
        if let Some(memory_rows) = &mut self.memory_rows {
            memory_rows.extend((held..held + joining).map(|row| row as u32));
        }
        if self.offset == 0 {
            return Ok(());
        }
        let Some(cross) = cross else {
            candle_core::bail!(
                "joining a cache that has decoded a step needs the cross-attention keys and values"
            )
        };
        let rows =
            self.layers.first().and_then(|layer| layer.self_kv.as_ref()).map_or(0, SelfKeyValues::rows);
        for (layer, cross) in self.layers.iter_mut().zip(cross) {
            if let Some(kv) = &mut layer.self_kv {
                kv.add_rows(joining)?;
            }
            if let Some(kv) = &mut layer.cross_kv {
                *kv = kv.cat_rows(&cross)?;
            }
        }
        self.origins.resize(rows, 0);
        self.origins.resize(rows + joining, self.offset);
        Ok(())
    }

    /// Keeps the origins of `rows`; returns how many leading positions the caller drops:
    /// those no kept row attends to any more, once they are at least half of the positions
    /// held (dropping moves the whole cache, while keeping them costs only their share of each
    /// step's attention). The origins are then counted from the first position kept.
    fn select_origins(&mut self, rows: &[u32]) -> usize {
        if self.origins.is_empty() {
            return 0;
        }
        self.origins = rows.iter().map(|&row| self.origins[row as usize]).collect();
        let earliest = self.origins.iter().copied().min().unwrap_or(0);
        if 2 * earliest < self.offset {
            return 0;
        }
        self.offset -= earliest;
        self.origins.iter_mut().for_each(|origin| *origin -= earliest);
        earliest
    }
}

/// The encoder output a decoder layer attends to.
#[derive(Debug, Clone, Copy)]
pub struct MemoryRef<'a> {
    /// `(memory_rows, src_len, d_model)`.
    pub hidden: &'a Tensor,
    /// `(b_sz, 1, 1, src_len)`: hides source padding, per batch row.
    pub padding_bias: &'a Tensor,
    /// The memory row each batch row reads; `None`: its own (`memory_rows == b_sz`).
    pub rows: Option<&'a [u32]>,
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
    residual: Residual,
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
            residual: Residual::new(cfg),
        })
    }

    /// This layer with its linear layers laid out, or quantized, for decoding ([`Linear::for_inference`]).
    pub(crate) fn for_inference(&self, quantization: Quantization) -> candle_core::Result<Self> {
        Ok(Self {
            self_attn: self.self_attn.for_inference(quantization)?,
            cross_attn: self.cross_attn.for_inference(quantization)?,
            ffn: self.ffn.for_inference(quantization)?,
            ..self.clone()
        })
    }

    /// Decodes `xs` attending to itself (through `self_bias`, and to the cached past when
    /// `cache` is given) and to `memory`. With `maps`, the self-attention and cross-attention
    /// probabilities are pushed onto `maps.decoder` and `maps.cross`.
    ///
    /// # Shapes
    /// - `xs`: `(b_sz, tgt_len, d_model)`, the new positions only when decoding incrementally;
    /// - `self_bias`: broadcastable to `(b_sz, heads, tgt_len, past + tgt_len)`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        xs: &Tensor,
        self_bias: &Tensor,
        positions: LayerPositions,
        memory: MemoryRef,
        mut cache: Option<&mut LayerCache>,
        mut rng: Option<&mut DropoutRng>,
        mut maps: Option<&mut AttentionMaps>,
    ) -> candle_core::Result<Tensor> {
        let xs = self.residual.apply(&self.self_attn_norm, xs, rng.as_deref_mut(), |h, rng| {
            let new = self.self_attn.key_values(h, positions)?;
            let record = maps.as_deref_mut().map(|maps| &mut maps.decoder);
            let held = match cache.as_deref_mut().map(|cache| &mut cache.self_kv) {
                Some(Some(past)) => past.append(&new)?,
                Some(empty) => {
                    *empty = Some(SelfKeyValues::new(&new)?);
                    HeldKeyValues { kv: new, key_rows: None }
                }
                None => HeldKeyValues { kv: new, key_rows: None },
            };
            self.self_attn.forward(h, &held.kv, held.key_rows, Some(self_bias), positions, rng, record)
        })?;
        let xs = self.residual.apply(&self.cross_attn_norm, &xs, rng.as_deref_mut(), |h, rng| {
            let kv = match cache {
                Some(LayerCache { cross_kv: Some(kv), .. }) => kv.clone(),
                Some(cache) => {
                    let kv = self.cross_attn.key_values(memory.hidden, LayerPositions::default())?;
                    cache.cross_kv = Some(kv.detach());
                    kv
                }
                None => self.cross_attn.key_values(memory.hidden, LayerPositions::default())?,
            };
            let record = maps.map(|maps| &mut maps.cross);
            let bias = Some(memory.padding_bias);
            let key_rows = memory.rows.map(KeyRows::PerRow);
            self.cross_attn.forward(h, &kv, key_rows, bias, LayerPositions::default(), rng, record)
        })?;
        self.residual.apply(&self.ffn_norm, &xs, rng, |h, rng| self.ffn.forward(h, rng))
    }
}

/// The decoder stack: its positional encoding, layers, and a final norm when pre-norm.
pub type Decoder = Stack<DecoderLayer>;

impl Decoder {
    /// `cfg.decoder_layers` layers under `vb` (`positional`, `layers.{i}`, `final_norm`).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Stack::build(cfg, cfg.decoder_positional(), true, cfg.decoder_layers, vb, DecoderLayer::new)
    }

    /// Every layer's cross-attention keys and values of the encoder output `memory`
    /// (`(b_sz, src_len, d_model)`), detached for a cache.
    pub fn cross_key_values(&self, memory: &Tensor) -> candle_core::Result<Vec<KeyValues>> {
        self.layers()
            .iter()
            .map(|layer| Ok(layer.cross_attn.key_values(memory, LayerPositions::default())?.detach()))
            .collect()
    }

    /// Runs the stack over scaled target token embeddings; with `cache`, they continue the
    /// positions decoded before and the cache grows by `tgt_len`. Without `cache`, while
    /// training (`rng` is `Some`), an absolute encoding with `position_shift` moves each
    /// sequence on by its own random shift (SHAPE); with `cache` positions are never shifted.
    /// With `maps`, each layer's attention probabilities are pushed onto it.
    ///
    /// # Shapes
    /// `tokens`: `(b_sz, tgt_len, token_width)`; returns `(b_sz, tgt_len, d_model)`.
    pub fn forward(
        &self,
        tokens: &Tensor,
        memory: MemoryRef,
        mut cache: Option<&mut DecoderCache>,
        rng: Option<&mut DropoutRng>,
        mut maps: Option<&mut AttentionMaps>,
    ) -> Result<Tensor> {
        let past = cache.as_deref().map_or(0, DecoderCache::offset);
        let tgt_len = tokens.dim(1)?;
        let (dtype, device) = (tokens.dtype(), tokens.device());
        let mut mask = causal_bias(tgt_len, past, dtype, device)?;
        let origins = cache.as_deref().and_then(DecoderCache::origins).map(<[usize]>::to_vec);
        // Incremental decoding is inference: cached positions are never shifted.
        let starts = match (&origins, &cache) {
            (Some(origins), _) => {
                mask = mask.broadcast_add(&start_bias(origins, past + tgt_len, dtype, device)?)?;
                SequenceStarts::Ragged(origins)
            }
            (None, Some(_)) => SequenceStarts::Span,
            (None, None) => SequenceStarts::Shiftable,
        };
        // Rows reading other memory rows than their own take those rows' padding bias.
        let memory_rows = cache.as_deref().and_then(DecoderCache::memory_rows).map(<[u32]>::to_vec);
        let gathered_bias;
        let memory = match &memory_rows {
            Some(rows) => {
                gathered_bias =
                    memory.padding_bias.index_select(&Tensor::new(rows.as_slice(), device)?, 0)?;
                MemoryRef { padding_bias: &gathered_bias, rows: Some(rows), ..memory }
            }
            None => memory,
        };
        let xs = self.run(
            tokens,
            Span::after(tgt_len, past),
            &mask,
            starts,
            rng,
            |(i, layer, xs, bias, positions), rng| {
                let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
                layer.forward(xs, bias, positions, memory, layer_cache, rng, maps.as_deref_mut())
            },
        )?;
        if let Some(cache) = cache {
            cache.offset += tgt_len;
        }
        Ok(xs)
    }
}
