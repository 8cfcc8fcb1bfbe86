//! How the model learns position: a closed set of encodings, chosen per stack by
//! `[model.positional]` (both stacks) or `[model.encoder.positional]` /
//! `[model.decoder.positional]`, tagged by `kind` ([`PositionalConfig`]; the list of kinds is
//! [`PositionalKind`]).
//!
//! Each kind lives in its own file and implements the [`Hooks`], one per seam of the model:
//!
//! | kind | paper | hook that acts |
//! | --- | --- | --- |
//! | `none` ([`none`]) | — | none (the decoder still has its causal mask) |
//! | `sinusoidal` ([`sinusoidal`]) | Vaswani et al. 2017 | [`Hooks::embed`]: added to (or concatenated with) the embeddings ([`absolute`]) |
//! | `learned` ([`learned`]) | BERT, GPT | [`Hooks::embed`], up to `max_len` positions |
//! | `relative` ([`relative`]) | Shaw et al. 2018 | [`Hooks::relative`]: learned key (and value) vectors per clipped distance, one set per self-attention layer |
//! | `t5` ([`t5`]) | Raffel et al. 2020 | [`Hooks::score_bias`]: a learned bias per head and distance bucket, one table per stack |
//! | `rope` ([`rope`]) | Su et al. 2021 | [`Hooks::rotate`]: queries and keys rotated by their positions |
//! | `alibi` ([`alibi`]) | Press et al. 2022 | [`Hooks::score_bias`]: `-slope_h · |i - j|` |
//! | `fire` ([`fire`]) | Li et al. 2024 | [`Hooks::score_bias`]: a learned MLP of `ψ(i - j) / ψ(max(L, i))` |
//! | `kerple` ([`kerple`]) | Chi et al. 2022 | [`Hooks::score_bias`]: `-r1_h · log(1 + r2_h · |i - j|)`, learned per head |
//! | `xpos` ([`xpos`]) | Sun et al. 2023 | [`Hooks::rotate`]: RoPE, queries scaled by `ζ^(n / scale_base)` and keys by `ζ^(-n / scale_base)` |
//!
//! A stack asks its [`PositionalEncoding`] for a [`Frame`] once per forward pass: every hook's
//! share of the pass (position vectors, the rotation, the score bias, Shaw's distance ids),
//! cut from tables cached per device and length ([`cache`]), so no table is rebuilt on the host
//! per call. Each layer then gets its [`LayerPositions`] from the frame. Cross-attention carries
//! no positional signal. The absolute kinds can be trained with randomly shifted positions,
//! `position_shift = K` (SHAPE, Kiyono et al. 2021; see [`absolute`]).
//!
//! Adding a kind: docs/adding-a-positional-encoding.md.

pub mod absolute;
pub mod alibi;
pub mod cache;
mod config;
pub mod fire;
pub mod kerple;
pub mod learned;
pub mod none;
pub mod relative;
pub mod rope;
pub mod sinusoidal;
pub mod t5;
pub mod xpos;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

use crate::dropout::DropoutRng;
use crate::error::Result;
pub use absolute::{Absolute, Combine, Embedding};
pub use alibi::Alibi;
pub use cache::{Span, TableCache};
pub use config::{PositionalConfig, PositionalKind};
pub use fire::Fire;
pub use kerple::Kerple;
pub use learned::Learned;
pub use none::NoPositions;
pub use relative::{RelativeIds, RelativePositions, Shaw};
pub use rope::{RopeScaling, Rotary, Rotation};
pub use sinusoidal::{Sinusoidal, SinusoidalLayout};
pub use t5::T5Bias;
pub use xpos::Xpos;

/// What a kind does at each seam of the model. No hook has a default, so a new kind does not
/// compile until it says what each one does (`Ok(None)` where it does nothing).
pub trait Hooks {
    /// Creates the weights a self-attention layer of the stack owns for this kind under `vb`
    /// (Shaw's relative vectors), called for each layer as the stack creates it, just before
    /// the layer's own weights.
    fn add_layer(&mut self, vb: VarBuilder) -> Result<()>;

    /// Embed: the position vectors added to (or concatenated with) the embeddings of `b_sz`
    /// sequences at the query positions of `span`, drawing SHAPE's shifts from `rng` while
    /// training.
    fn embed(
        &self,
        b_sz: usize,
        span: Span,
        rng: Option<&mut DropoutRng>,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Embedding>>;

    /// Rotate queries and keys: the rotation of the new positions of `span` (RoPE, xPos).
    fn rotate(&self, span: Span, dtype: DType, device: &Device) -> Result<Option<Rotation>>;

    /// Attention score bias: added to every self-attention score of the stack (T5, ALiBi,
    /// FIRE, Kerple), `(1, n_heads, q_len, k_len)`. When the sequences of a batch start at
    /// different positions of `span` (a decoder that sentences joined at different steps),
    /// `firsts` holds each one's own position of its first query; a bias that depends on more
    /// than distances (FIRE) then gives `(b_sz, n_heads, q_len, k_len)`, one per sequence, and
    /// the others ignore it.
    fn score_bias(
        &self,
        span: Span,
        firsts: Option<&[usize]>,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Tensor>>;

    /// Inside attention: Shaw et al.'s per-layer relative vectors and the rows the pairs of
    /// `span` read.
    fn relative(&self, span: Span, device: &Device) -> Result<Option<Relative<'_>>>;

    /// The matrices `locus pe show` draws for the first `len` positions, on the CPU;
    /// `weights` says whether the learned ones are trained, for the titles.
    fn tables(&self, len: usize, weights: Weights) -> Result<Vec<PositionTable>>;
}

/// A built positional encoding of one stack, with its weights where it has any.
#[derive(Debug, Clone)]
pub enum PositionalEncoding {
    /// No position signal.
    None(NoPositions),
    /// Fixed sinusoids at the embeddings.
    Sinusoidal(Sinusoidal),
    /// A learned table at the embeddings.
    Learned(Learned),
    /// Relative vectors inside self-attention, one set per layer.
    Relative(Shaw),
    /// A learned bias per head and distance bucket.
    T5(T5Bias),
    /// Rotation of queries and keys.
    Rope(Rotary),
    /// Fixed linear biases, one slope per head.
    Alibi(Alibi),
    /// A learned function of normalised distances.
    Fire(Fire),
    /// A learned logarithmic bias per head.
    Kerple(Kerple),
    /// Rotation of queries and keys with exponential decay.
    Xpos(Xpos),
}

impl PositionalEncoding {
    /// Builds the encoding of a stack of width `d_model` with `n_heads` heads; `causal` is true
    /// for the decoder (T5's buckets then only look back). Weights are created under `vb`; a
    /// layer's own ones come with [`PositionalEncoding::add_layer`].
    pub fn new(
        cfg: &PositionalConfig,
        d_model: usize,
        n_heads: usize,
        causal: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(match *cfg {
            PositionalConfig::None {} => Self::None(NoPositions),
            PositionalConfig::Sinusoidal { layout, combine, d_pos, every_layer, position_shift, .. } => {
                let absolute = Absolute::new(d_model, combine, d_pos, every_layer, position_shift);
                Self::Sinusoidal(Sinusoidal::new(layout, absolute))
            }
            PositionalConfig::Learned { max_len, combine, d_pos, every_layer, position_shift, .. } => {
                let absolute = Absolute::new(d_model, combine, d_pos, every_layer, position_shift);
                Self::Learned(Learned::new(max_len, absolute, vb)?)
            }
            PositionalConfig::Relative { max_distance, values } => {
                Self::Relative(Shaw::new(max_distance, values, d_model / n_heads))
            }
            PositionalConfig::T5 { num_buckets, max_distance } => {
                Self::T5(T5Bias::new(num_buckets, max_distance, n_heads, !causal, vb)?)
            }
            PositionalConfig::Rope { theta, .. } => Self::Rope(Rotary::new(theta, d_model / n_heads)?),
            PositionalConfig::Alibi {} => Self::Alibi(Alibi::new(n_heads, causal)),
            PositionalConfig::Fire { mlp_width, init_c, init_threshold } => {
                Self::Fire(Fire::new(n_heads, mlp_width, init_c, init_threshold, vb)?)
            }
            PositionalConfig::Kerple {} => Self::Kerple(Kerple::new(n_heads, vb)?),
            PositionalConfig::Xpos { theta, scale_base, gamma, .. } => {
                Self::Xpos(Xpos::new(theta, scale_base, gamma, d_model / n_heads)?)
            }
        })
    }

    /// Which kind this is.
    pub fn kind(&self) -> PositionalKind {
        match self {
            Self::None(_) => PositionalKind::None,
            Self::Sinusoidal(_) => PositionalKind::Sinusoidal,
            Self::Learned(_) => PositionalKind::Learned,
            Self::Relative(_) => PositionalKind::Relative,
            Self::T5(_) => PositionalKind::T5,
            Self::Rope(_) => PositionalKind::Rope,
            Self::Alibi(_) => PositionalKind::Alibi,
            Self::Fire(_) => PositionalKind::Fire,
            Self::Kerple(_) => PositionalKind::Kerple,
            Self::Xpos(_) => PositionalKind::Xpos,
        }
    }

    /// The kind's hooks.
    pub fn hooks(&self) -> &dyn Hooks {
        match self {
            Self::None(kind) => kind,
            Self::Sinusoidal(kind) => kind,
            Self::Learned(kind) => kind,
            Self::Relative(kind) => kind,
            Self::T5(kind) => kind,
            Self::Rope(kind) => kind,
            Self::Alibi(kind) => kind,
            Self::Fire(kind) => kind,
            Self::Kerple(kind) => kind,
            Self::Xpos(kind) => kind,
        }
    }

    /// Creates the weights the next self-attention layer owns for this encoding (see
    /// [`Hooks::add_layer`]).
    pub fn add_layer(&mut self, vb: VarBuilder) -> Result<()> {
        match self {
            Self::None(kind) => kind.add_layer(vb),
            Self::Sinusoidal(kind) => kind.add_layer(vb),
            Self::Learned(kind) => kind.add_layer(vb),
            Self::Relative(kind) => kind.add_layer(vb),
            Self::T5(kind) => kind.add_layer(vb),
            Self::Rope(kind) => kind.add_layer(vb),
            Self::Alibi(kind) => kind.add_layer(vb),
            Self::Fire(kind) => kind.add_layer(vb),
            Self::Kerple(kind) => kind.add_layer(vb),
            Self::Xpos(kind) => kind.add_layer(vb),
        }
    }

    /// This encoding with its positions stretched by `scaling` at inference, if it is RoPE
    /// ([`RopeScaling`]); `None` for the other kinds.
    pub fn with_rope_scaling(&self, scaling: RopeScaling) -> Option<Self> {
        match self {
            Self::Rope(rotary) => Some(Self::Rope(rotary.with_scaling(scaling))),
            _ => None,
        }
    }

    /// Everything the hooks contribute to one forward pass of a stack over `b_sz` sequences
    /// placed by `span`. While training (`rng` is `Some`), an absolute encoding with
    /// `position_shift` draws one shift per sequence (SHAPE); nothing else draws.
    ///
    /// # Errors
    /// [`ModelError::PositionOutOfRange`](crate::ModelError::PositionOutOfRange) past the end
    /// of a learned table, or [`ModelError::Config`](crate::ModelError::Config) when it cannot
    /// hold the largest shift while training.
    pub fn frame(
        &self,
        b_sz: usize,
        span: Span,
        rng: Option<&mut DropoutRng>,
        dtype: DType,
        device: &Device,
    ) -> Result<Frame<'_>> {
        let hooks = self.hooks();
        Ok(Frame {
            embedding: hooks.embed(b_sz, span, rng, dtype, device)?,
            rotation: hooks.rotate(span, dtype, device)?,
            score_bias: hooks.score_bias(span, None, dtype, device)?,
            relative: hooks.relative(span, device)?,
        })
    }

    /// [`frame`](Self::frame) while training with randomized positions (Ruoss et al. 2023,
    /// <https://arxiv.org/abs/2305.16843>): each of the `b_sz` sequences of a whole-sequence
    /// pass (queries and keys at the same `q_len` positions from 0) is placed at its own sorted
    /// sample of `q_len` distinct positions from `0..range`, drawn from `rng`
    /// ([`DropoutRng::sorted_positions`]), so that a model trained on short sequences has seen
    /// the positions of long ones. The kinds that read absolute positions (position vectors,
    /// RoPE's and xPos's rotations) read the sampled ones; no other hook takes part.
    ///
    /// # Errors
    /// [`ModelError::Config`](crate::ModelError::Config) when a sequence has more positions
    /// than `range`, or the pass does not start at position 0 with queries and keys alike.
    pub fn random_frame(
        &self,
        b_sz: usize,
        span: Span,
        range: usize,
        rng: &mut DropoutRng,
        dtype: DType,
        device: &Device,
    ) -> Result<Frame<'_>> {
        if span != Span::same(span.q_len, 0) {
            let message = format!("randomized positions take whole sequences from position 0, got {span:?}");
            return Err(crate::ModelError::Config(message));
        }
        if span.q_len > range {
            return Err(crate::ModelError::Config(format!(
                "random_positions ({range}) must be at least the longest training sequence ({} positions, \
                 with EOS or BOS)",
                span.q_len
            )));
        }
        let ids: Vec<u32> =
            rng.sorted_positions(b_sz, span.q_len, range).into_iter().flatten().map(|id| id as u32).collect();
        let ids = Tensor::from_vec(ids, b_sz * span.q_len, device)?;
        let (embedding, rotation) =
            self.gathered(Span::same(range, 0), &ids, (b_sz, span.q_len), dtype, device)?;
        let hooks = self.hooks();
        Ok(Frame {
            embedding,
            rotation,
            score_bias: hooks.score_bias(span, None, dtype, device)?,
            relative: hooks.relative(span, device)?,
        })
    }

    /// The position vectors and rotation of `covering`'s positions, gathered at `ids` (rows of
    /// that span, `b_sz × q_len` of them, sequence by sequence): each sequence of a batch
    /// `shape = (b_sz, q_len)` at positions of its own.
    fn gathered(
        &self,
        covering: Span,
        ids: &Tensor,
        shape: (usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<(Option<Embedding>, Option<Rotation>)> {
        let hooks = self.hooks();
        let embedding = match hooks.embed(1, covering, None, dtype, device)? {
            Some(embedding) => Some(embedding.select_positions(ids, shape)?),
            None => None,
        };
        let rotation = match hooks.rotate(covering, dtype, device)? {
            Some(rotation) => Some(rotation.select_positions(ids, shape)?),
            None => None,
        };
        Ok((embedding, rotation))
    }

    /// [`frame`](Self::frame) for sequences that start at different positions of `span`
    /// (inference only): sequence `r`'s first token sits at span position `origins[r]`, so its
    /// queries are at its own positions `span.q_offset - origins[r]..`. The encodings that read
    /// absolute positions (the absolute kinds' vectors, RoPE's and xPos's rotations, FIRE's
    /// normaliser) get each sequence's own positions, exactly as if it were decoded alone; the
    /// distance-based ones (T5, ALiBi, Kerple, Shaw) are computed from `span`, since distances
    /// do not depend on where a sequence starts.
    ///
    /// # Errors
    /// As [`frame`](Self::frame); a `origins[r]` after `span.q_offset` is an error.
    pub fn ragged_frame(
        &self,
        span: Span,
        origins: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Frame<'_>> {
        let hooks = self.hooks();
        let mut firsts = Vec::with_capacity(origins.len());
        for &origin in origins {
            match span.q_offset.checked_sub(origin) {
                Some(first) => firsts.push(first),
                None => {
                    let message =
                        format!("a sequence starts at {origin}, after the queries at {}", span.q_offset);
                    return Err(candle_core::Error::Msg(message).into());
                }
            }
        }
        let lowest = firsts.iter().copied().min().unwrap_or(0);
        let highest = firsts.iter().copied().max().unwrap_or(0);
        // One table over every sequence's positions, and the row of it each query reads.
        let covering = Span::same(highest - lowest + span.q_len, lowest);
        let ids: Vec<u32> = firsts
            .iter()
            .flat_map(|&first| (first - lowest..first - lowest + span.q_len).map(|id| id as u32))
            .collect();
        let ids = Tensor::from_vec(ids, origins.len() * span.q_len, device)?;
        let (embedding, rotation) =
            self.gathered(covering, &ids, (origins.len(), span.q_len), dtype, device)?;
        Ok(Frame {
            embedding,
            rotation,
            score_bias: hooks.score_bias(span, Some(&firsts), dtype, device)?,
            relative: hooks.relative(span, device)?,
        })
    }

    /// The matrices `locus pe show` draws for the first `len` positions (none for `none`).
    pub fn tables(&self, len: usize, weights: Weights) -> Result<Vec<PositionTable>> {
        self.hooks().tables(len, weights)
    }
}

/// Shaw et al.'s share of a forward pass: every layer's vectors and the rows its pairs read.
#[derive(Debug, Clone)]
pub struct Relative<'a> {
    /// Each self-attention layer's vectors.
    pub layers: &'a [RelativePositions],
    /// The table row of every (query, key) pair.
    pub ids: RelativeIds,
}

/// What the positional encoding contributes to one forward pass of a stack, prepared once.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    embedding: Option<Embedding>,
    rotation: Option<Rotation>,
    score_bias: Option<Tensor>,
    relative: Option<Relative<'a>>,
}

impl Frame<'_> {
    /// The (scaled) token embeddings with the position vectors put in; `tokens` unchanged for
    /// encodings that act inside attention.
    ///
    /// # Shapes
    /// `tokens`: `(b_sz, seq_len, token_width)`; returns `(b_sz, seq_len, d_model)`.
    pub fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        match &self.embedding {
            Some(embedding) => embedding.embed(tokens),
            None => Ok(tokens.clone()),
        }
    }

    /// The input of a layer after the first: with `every_layer`, the same position vectors are
    /// added again; otherwise `xs` unchanged.
    pub fn layer_input(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.embedding {
            Some(embedding) => embedding.layer_input(xs),
            None => Ok(xs.clone()),
        }
    }

    /// `mask` (padding or causal) plus the position bias of every self-attention score, if
    /// the encoding has one.
    ///
    /// # Shapes
    /// `mask` broadcastable to `(b_sz, n_heads, q_len, k_len)`, and so is the result.
    pub fn attention_bias(&self, mask: &Tensor) -> Result<Tensor> {
        Ok(match &self.score_bias {
            Some(position_bias) => mask.broadcast_add(position_bias)?,
            None => mask.clone(),
        })
    }

    /// What self-attention layer `layer` needs of the pass.
    pub fn layer(&self, layer: usize) -> LayerPositions<'_> {
        LayerPositions {
            rotation: self.rotation.as_ref(),
            relative: self
                .relative
                .as_ref()
                .and_then(|relative| relative.layers.get(layer).map(|positions| (positions, &relative.ids))),
        }
    }
}

/// What the encodings that act inside attention give one self-attention layer; nothing (the
/// default) for cross-attention.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerPositions<'a> {
    /// RoPE's (or xPos's) rotation of the new queries and keys.
    pub rotation: Option<&'a Rotation>,
    /// Shaw et al.'s vectors of this layer, and the rows each (query, key) pair reads.
    pub relative: Option<(&'a RelativePositions, &'a RelativeIds)>,
}

/// Whether a model's weights were trained, for the titles of [`PositionTable`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// Read from a checkpoint.
    Trained,
    /// As initialised.
    Untrained,
}

impl Weights {
    /// `learned` or `untrained`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Trained => "learned",
            Self::Untrained => "untrained",
        }
    }
}

/// A matrix that shows an encoding, with its title and axis names.
#[derive(Debug, Clone)]
pub struct PositionTable {
    /// What it shows.
    pub title: String,
    /// What the columns are.
    pub x_label: &'static str,
    /// What the rows are.
    pub y_label: &'static str,
    /// `(rows, columns)`.
    pub values: Tensor,
}

impl PositionTable {
    fn new(title: impl Into<String>, x_label: &'static str, y_label: &'static str, values: Tensor) -> Self {
        Self { title: title.into(), x_label, y_label, values }
    }

    /// A value per (query position i, key position j): `values` is `(len, len)`.
    fn pairs(title: impl Into<String>, values: Tensor) -> Self {
        Self::new(title, "key position j", "query position i", values)
    }

    /// One [`pairs`](Self::pairs) table per head of `bias`, `(n_heads, len, len)`, titled
    /// `title(head)`.
    fn per_head(bias: &Tensor, title: impl Fn(usize) -> String) -> Result<Vec<Self>> {
        (0..bias.dim(0)?).map(|head| Ok(Self::pairs(title(head), bias.get(head)?))).collect()
    }
}

/// Cosine similarity between the rows of `vectors`: `(n, n)`.
fn cosine_similarity(vectors: &Tensor) -> Result<Tensor> {
    let norms = vectors.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    let unit = vectors.broadcast_div(&(norms + 1e-12)?)?;
    Ok(unit.matmul(&unit.t()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    /// In a decoder step at batch position 7 whose rows started at 0, 5 and 7, each row's score
    /// bias over its own keys is the bias of the same step decoded alone (its first query at
    /// 7 - origin), for every kind with a bias, and for FIRE past its threshold, where the bias
    /// depends on the query's own position.
    #[test]
    fn ragged_frames_give_each_row_the_bias_of_its_own_positions() -> Result<()> {
        let mut configs: Vec<PositionalConfig> =
            PositionalKind::all().map(|kind| PositionalConfig::default_for(kind, 64)).collect();
        configs.push(PositionalConfig::Fire { mlp_width: 8, init_c: 0.5, init_threshold: 2.0 });
        let (span, origins) = (Span::after(1, 7), [0, 5, 7]);
        for cfg in configs {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let encoding = PositionalEncoding::new(&cfg, 16, 4, true, vb)?;
            let ragged = encoding.ragged_frame(span, &origins, DType::F32, &Device::Cpu)?;
            let Some(bias) = ragged.score_bias else { continue };
            for (row, &origin) in origins.iter().enumerate() {
                let alone = encoding.frame(1, Span::after(1, 7 - origin), None, DType::F32, &Device::Cpu)?;
                let alone = alone.score_bias.expect("a bias alone too");
                let own = bias.get(row.min(bias.dim(0)? - 1))?.narrow(2, origin, 8 - origin)?;
                let diff = (own - alone.squeeze(0)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-6, "{:?}, row {row}: {diff}", cfg.kind());
            }
        }
        Ok(())
    }

    /// With randomized positions, token t of sequence b reads exactly what it would read alone
    /// at its sampled position: the same position vector (sinusoidal, learned), the same
    /// rotation of queries and keys (RoPE, xPos). The samples are the stream's.
    #[test]
    fn random_frames_place_each_token_at_its_sampled_position() -> Result<()> {
        let (b_sz, len, range, d) = (3, 5, 40, 16);
        let configs = [
            PositionalConfig::Sinusoidal {
                layout: SinusoidalLayout::Interleaved,
                combine: Combine::Add,
                d_pos: None,
                every_layer: false,
                position_shift: 0,
                random_positions: range,
            },
            PositionalConfig::Learned {
                max_len: range,
                combine: Combine::Add,
                d_pos: None,
                every_layer: false,
                position_shift: 0,
                random_positions: range,
            },
            PositionalConfig::Rope { theta: 10000.0, random_positions: range },
            PositionalConfig::Xpos { theta: 10000.0, scale_base: 8.0, gamma: 0.4, random_positions: range },
        ];
        let (cpu, f32) = (&Device::Cpu, DType::F32);
        let xs = Tensor::randn(0f32, 1.0, (b_sz, 2, len, d / 2), cpu)?;
        let tokens = Tensor::zeros((b_sz, len, d), f32, cpu)?;
        for cfg in configs {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, f32, cpu);
            let encoding = PositionalEncoding::new(&cfg, d, 2, false, vb)?;
            let mut rng = DropoutRng::new(9);
            let positions = rng.clone().sorted_positions(b_sz, len, range);
            let frame = encoding.random_frame(b_sz, Span::same(len, 0), range, &mut rng, f32, cpu)?;
            assert_eq!(rng.state(), {
                let mut drawn = DropoutRng::new(9);
                drawn.sorted_positions(b_sz, len, range);
                drawn.state()
            });
            let embedded = frame.embed(&tokens)?;
            let (queries, keys) = match &frame.rotation {
                Some(rotation) => (Some(rotation.rotate_queries(&xs)?), Some(rotation.rotate_keys(&xs)?)),
                None => (None, None),
            };
            assert!(positions.iter().any(|sample| sample != &(0..len).collect::<Vec<_>>()));
            for (b, sample) in positions.iter().enumerate() {
                for (t, &position) in sample.iter().enumerate() {
                    let alone = encoding.frame(1, Span::same(1, position), None, f32, cpu)?;
                    let token = tokens.narrow(0, b, 1)?.narrow(1, t, 1)?;
                    let diff = |got: &Tensor, want: &Tensor| -> Result<f32> {
                        Ok((got - want)?.abs()?.max_all()?.to_scalar::<f32>()?)
                    };
                    let got = embedded.narrow(0, b, 1)?.narrow(1, t, 1)?;
                    assert!(diff(&got, &alone.embed(&token)?)? < 1e-6, "{:?} ({b}, {t})", cfg.kind());
                    if let (Some(queries), Some(keys), Some(rotation)) = (&queries, &keys, &alone.rotation) {
                        let x = xs.narrow(0, b, 1)?.narrow(2, t, 1)?;
                        let got = queries.narrow(0, b, 1)?.narrow(2, t, 1)?;
                        assert!(
                            diff(&got, &rotation.rotate_queries(&x)?)? < 1e-6,
                            "{:?} ({b}, {t})",
                            cfg.kind()
                        );
                        let got = keys.narrow(0, b, 1)?.narrow(2, t, 1)?;
                        assert!(
                            diff(&got, &rotation.rotate_keys(&x)?)? < 1e-6,
                            "{:?} ({b}, {t})",
                            cfg.kind()
                        );
                    }
                }
            }
            assert!(encoding
                .random_frame(b_sz, Span::same(range + 1, 0), range, &mut rng, f32, cpu)
                .is_err());
            assert!(encoding.random_frame(b_sz, Span::after(1, 3), range, &mut rng, f32, cpu).is_err());
        }
        Ok(())
    }
}
