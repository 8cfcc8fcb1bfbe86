//! Rotary position embedding, RoPE (Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary
//! Position Embedding", <https://arxiv.org/abs/2104.09864>, section 3.4.2, eq. 34).
//!
//! Queries and keys are rotated, pair by pair, by an angle proportional to their position: at
//! position `m`, the pair `(x_2i, x_2i+1)` of a `d`-wide head turns by `m · θ_i` with
//! `θ_i = theta^(-2i/d)` (`theta = 10000` in the paper):
//!
//! `x'_2i   = x_2i · cos(m θ_i) - x_2i+1 · sin(m θ_i)`
//! `x'_2i+1 = x_2i · sin(m θ_i) + x_2i+1 · cos(m θ_i)`
//!
//! so that `⟨R_m q, R_n k⟩` depends on `m - n` alone. Pairs are adjacent elements as in the paper
//! (candle's `rope_i`), not the two halves of the head (GPT-NeoX, candle's `rope`). Built from
//! differentiable tensor ops, since candle's fused rotary kernels have no backward pass. The
//! cosines and sines are computed once per device and dtype and reused ([`TableCache`]).
//!
//! A trained model can be stretched at inference to lengths past those it saw ([`RopeScaling`],
//! `--rope-scaling` of `locus translate` and `locus evaluate`): position interpolation (Chen et
//! al. 2023), NTK-aware scaling (bloc97 2023) and YaRN (Peng et al. 2023).

use candle_core::{bail, DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::absolute::Embedding;
use super::cache::{Span, TableCache};
use super::{Hooks, PositionTable, Relative, Weights};
use crate::dropout::DropoutRng;
use crate::error::Result;

/// The paper's base of the rotation frequencies.
pub const DEFAULT_THETA: f64 = 10_000.0;

pub(super) fn default_theta() -> f64 {
    DEFAULT_THETA
}

/// The rule `theta` or the head width break, if any.
pub(super) fn validate(field: &str, theta: f64, d_model: usize, n_heads: usize) -> Option<String> {
    if !(theta > 1.0 && theta.is_finite()) {
        return Some(format!("{field}.theta ({theta}) must be greater than 1"));
    }
    (!(d_model / n_heads).is_multiple_of(2)).then(|| {
        format!(
            "{field}: rope rotates pairs of dimensions, so the head width d_model / n_heads \
             ({}) must be even",
            d_model / n_heads
        )
    })
}

/// YaRN's ramp: pairs that turn fewer than `YARN_ALPHA` times over the original length are
/// interpolated, pairs that turn more than `YARN_BETA` times are kept (Peng et al. 2023, the
/// values α = 1 and β = 32 the paper recommends).
const YARN_ALPHA: f64 = 1.0;
const YARN_BETA: f64 = 32.0;

/// How a RoPE model's positions are stretched at inference, by a `factor` `s ≥ 1`, so that a
/// model trained on sequences up to some length reads longer ones with angles it has seen.
/// With `θ_i = theta^(-2i/d)` the frequency of pair `i` of a `d`-wide head:
///
/// | scaling | frequency of pair `i` | magnitude |
/// | --- | --- | --- |
/// | `none` | `θ_i` | 1 |
/// | `linear:s` (position interpolation, Chen et al. 2023) | `θ_i / s` | 1 |
/// | `ntk:s` (NTK-aware, bloc97 2023) | `(theta · s^(d/(d-2)))^(-2i/d)`: the base grows, the fastest pair keeps its frequency and the slowest is divided by `s` | 1 |
/// | `yarn:s:L` (YaRN, Peng et al. 2023: NTK-by-parts and the attention temperature) | `(1 - γ_i) θ_i / s + γ_i θ_i`, `γ_i = clamp((r_i - 1) / (32 - 1), 0, 1)`, `r_i = L θ_i / 2π` the turns of pair `i` over the training length `L` | `0.1 ln s + 1` |
///
/// The magnitude multiplies the cosines and sines, so queries and keys are both scaled by it
/// and the scores by its square (YaRN's attention temperature `1/t`, `√(1/t) = 0.1 ln s + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RopeScaling {
    /// Positions as trained.
    #[default]
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// `s`.
        factor: f64,
    },
    /// NTK-aware scaling: the base `theta` multiplied by `factor^(d/(d-2))`.
    Ntk {
        /// `s`.
        factor: f64,
    },
    /// YaRN: slow pairs interpolated, fast pairs kept, a ramp between, and the scores sharpened.
    Yarn {
        /// `s`.
        factor: f64,
        /// `L`, the length the model was trained on.
        original_len: usize,
    },
}

impl std::str::FromStr for RopeScaling {
    type Err = String;

    /// `none`, `linear:S`, `ntk:S` or `yarn:S:L`, with a factor `S ≥ 1` and a training length
    /// `L ≥ 1`.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let usage = "expected none, linear:S, ntk:S or yarn:S:L (S ≥ 1 the factor, L the training length)";
        let factor = |value: &str| -> std::result::Result<f64, String> {
            match value.parse::<f64>() {
                Ok(factor) if factor >= 1.0 && factor.is_finite() => Ok(factor),
                _ => Err(format!("rope scaling factor {value:?} must be a number ≥ 1 ({usage})")),
            }
        };
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            ["none"] => Ok(Self::None),
            ["linear", s] => Ok(Self::Linear { factor: factor(s)? }),
            ["ntk", s] => Ok(Self::Ntk { factor: factor(s)? }),
            ["yarn", s, len] => match len.parse::<usize>() {
                Ok(original_len) if original_len > 0 => Ok(Self::Yarn { factor: factor(s)?, original_len }),
                _ => Err(format!("yarn's training length {len:?} must be a positive whole number ({usage})")),
            },
            _ => Err(format!("unknown rope scaling {text:?}: {usage}")),
        }
    }
}

impl std::fmt::Display for RopeScaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => write!(f, "none"),
            Self::Linear { factor } => write!(f, "linear:{factor}"),
            Self::Ntk { factor } => write!(f, "ntk:{factor}"),
            Self::Yarn { factor, original_len } => write!(f, "yarn:{factor}:{original_len}"),
        }
    }
}

/// Rotary embedding for heads of width `head_dim`.
#[derive(Debug, Clone)]
pub struct Rotary {
    theta: f64,
    head_dim: usize,
    scaling: RopeScaling,
    cos: TableCache,
    sin: TableCache,
}

impl Rotary {
    /// Rotations with base `theta` (see [`DEFAULT_THETA`]) for heads of width `head_dim`.
    ///
    /// # Errors
    /// When `head_dim` is zero or odd (elements rotate in pairs), or `theta` is not a positive
    /// finite number.
    pub fn new(theta: f64, head_dim: usize) -> candle_core::Result<Self> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            bail!("rotary embedding needs an even, positive head_dim, got {head_dim}");
        }
        if !(theta.is_finite() && theta > 0.0) {
            bail!("rotary embedding needs a positive, finite theta, got {theta}");
        }
        Ok(Self {
            theta,
            head_dim,
            scaling: RopeScaling::None,
            cos: TableCache::new(),
            sin: TableCache::new(),
        })
    }

    /// These rotations with positions stretched by `scaling` (fresh tables).
    pub fn with_scaling(&self, scaling: RopeScaling) -> Self {
        Self { scaling, cos: TableCache::new(), sin: TableCache::new(), ..self.clone() }
    }

    /// Width of the vectors it rotates.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The angle by which pair `pair` (elements `2 · pair` and `2 · pair + 1`) turns per
    /// position, in radians: `theta^(-2 · pair / head_dim)`, stretched by the scaling
    /// ([`RopeScaling`]).
    pub fn frequency(&self, pair: usize) -> f64 {
        let (pair, d) = (pair as f64, self.head_dim as f64);
        let plain = self.theta.powf(-2.0 * pair / d);
        match self.scaling {
            RopeScaling::None => plain,
            RopeScaling::Linear { factor } => plain / factor,
            RopeScaling::Ntk { factor } => (self.theta * factor.powf(d / (d - 2.0))).powf(-2.0 * pair / d),
            RopeScaling::Yarn { factor, original_len } => {
                let turns = original_len as f64 * plain / (2.0 * std::f64::consts::PI);
                let kept = ((turns - YARN_ALPHA) / (YARN_BETA - YARN_ALPHA)).clamp(0.0, 1.0);
                (1.0 - kept) * plain / factor + kept * plain
            }
        }
    }

    /// The factor on every cosine and sine: `0.1 ln s + 1` under YaRN, 1 otherwise.
    pub fn magnitude(&self) -> f64 {
        match self.scaling {
            RopeScaling::Yarn { factor, .. } => 0.1 * factor.ln() + 1.0,
            _ => 1.0,
        }
    }

    /// The angle `position · frequency(pair)` by which pair `pair` turns at `position`, in
    /// radians.
    pub fn angle(&self, position: usize, pair: usize) -> f64 {
        position as f64 * self.frequency(pair)
    }

    /// `f` of every angle at positions `0..len` times the magnitude, computed in `f64` on the
    /// host, then converted to `dtype` and moved to `device`: `(len, head_dim / 2, 1)`.
    fn table(
        &self,
        f: fn(f64) -> f64,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let (half, magnitude) = (self.head_dim / 2, self.magnitude());
        let values: Vec<f64> = (0..len)
            .flat_map(|position| (0..half).map(move |pair| f(self.angle(position, pair)) * magnitude))
            .collect();
        Tensor::from_vec(values, (len, half, 1), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
    }

    /// The rotation of positions `offset..offset + len`, from the cached tables.
    pub fn rotation(
        &self,
        offset: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Rotation> {
        let table = |cache: &TableCache, f: fn(f64) -> f64| {
            cache.rows(0, offset, len, dtype, device, |n| self.table(f, n, dtype, device))
        };
        Ok(Rotation::new(table(&self.cos, f64::cos)?, table(&self.sin, f64::sin)?))
    }

    /// Rotates each vector of `xs` by its position, `offset + t` for sequence index `t`.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, n_heads, seq_len, head_dim)`; returns the same shape.
    pub fn rotate(&self, xs: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let (_, _, seq_len, head_dim) = xs.dims4()?;
        if head_dim != self.head_dim {
            bail!("rotary embedding built for head_dim {}, got {:?}", self.head_dim, xs.shape());
        }
        self.rotation(offset, seq_len, xs.dtype(), xs.device())?.rotate_queries(xs)
    }
}

/// The rotation hook of one forward pass: how the new positions' queries and keys turn.
///
/// RoPE turns both alike; xPos ([`super::xpos`]) also scales them, queries by `ζ^(n / scale_base)` and keys by its inverse.
#[derive(Debug, Clone)]
pub struct Rotation {
    queries: Turn,
    keys: Turn,
}

/// The cosines and sines (times a scale, for xPos) of the new positions' angles, each
/// `(seq_len, head_dim / 2, 1)`, or `(b_sz, 1, seq_len, head_dim / 2, 1)` when each sequence
/// has positions of its own ([`Rotation::select_positions`]).
#[derive(Debug, Clone)]
struct Turn {
    cos: Tensor,
    sin: Tensor,
}

impl Turn {
    fn select_positions(&self, ids: &Tensor, (b_sz, seq_len): (usize, usize)) -> candle_core::Result<Self> {
        let select = |table: &Tensor| -> candle_core::Result<Tensor> {
            let (_, half, one) = table.dims3()?;
            table.index_select(ids, 0)?.reshape((b_sz, 1, seq_len, half, one))
        };
        Ok(Self { cos: select(&self.cos)?, sin: select(&self.sin)? })
    }

    /// `xs`: `(b_sz, n_heads, seq_len, head_dim)`; returns the same shape.
    fn apply(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b_sz, n_heads, seq_len, head_dim) = xs.dims4()?;
        let half = head_dim / 2;
        let pairs = xs.reshape((b_sz, n_heads, seq_len, half, 2))?;
        let (even, odd) = (pairs.narrow(4, 0, 1)?, pairs.narrow(4, 1, 1)?);
        let (cos, sin) = (&self.cos, &self.sin);
        let new_even = (even.broadcast_mul(cos)? - odd.broadcast_mul(sin)?)?;
        let new_odd = (even.broadcast_mul(sin)? + odd.broadcast_mul(cos)?)?;
        Tensor::cat(&[new_even, new_odd], 4)?.reshape((b_sz, n_heads, seq_len, head_dim))
    }
}

impl Rotation {
    /// Queries and keys turned alike by the angles whose cosines and sines are `cos` and `sin`,
    /// each `(seq_len, head_dim / 2, 1)` (RoPE).
    pub fn new(cos: Tensor, sin: Tensor) -> Self {
        let turn = Turn { cos, sin };
        Self { queries: turn.clone(), keys: turn }
    }

    /// Queries turned by `query_cos` and `query_sin`, keys by `key_cos` and `key_sin`, each
    /// `(seq_len, head_dim / 2, 1)`: the same angles with different scales folded in (xPos).
    pub fn scaled(query_cos: Tensor, query_sin: Tensor, key_cos: Tensor, key_sin: Tensor) -> Self {
        Self { queries: Turn { cos: query_cos, sin: query_sin }, keys: Turn { cos: key_cos, sin: key_sin } }
    }

    /// The rotations of positions `ids` (indices into this rotation's positions,
    /// `b_sz × seq_len` of them, sequence by sequence), one sequence per batch row: each
    /// sequence rotated by its own positions. `(b_sz, seq_len)` is `shape`.
    pub fn select_positions(&self, ids: &Tensor, shape: (usize, usize)) -> candle_core::Result<Rotation> {
        Ok(Rotation {
            queries: self.queries.select_positions(ids, shape)?,
            keys: self.keys.select_positions(ids, shape)?,
        })
    }

    /// Rotates each query of `xs` by its position.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, n_heads, seq_len, head_dim)`; returns the same shape.
    pub fn rotate_queries(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.queries.apply(xs)
    }

    /// Rotates each key of `xs` by its position.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, n_heads, seq_len, head_dim)`; returns the same shape.
    pub fn rotate_keys(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.keys.apply(xs)
    }
}

impl Hooks for Rotary {
    fn add_layer(&mut self, _: VarBuilder) -> Result<()> {
        Ok(())
    }

    fn embed(
        &self,
        _: usize,
        _: Span,
        _: Option<&mut DropoutRng>,
        _: DType,
        _: &Device,
    ) -> Result<Option<Embedding>> {
        Ok(None)
    }

    fn rotate(&self, span: Span, dtype: DType, device: &Device) -> Result<Option<Rotation>> {
        Ok(Some(self.rotation(span.q_offset, span.q_len, dtype, device)?))
    }

    fn score_bias(&self, _: Span, _: Option<&[usize]>, _: DType, _: &Device) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn relative(&self, _: Span, _: &Device) -> Result<Option<Relative<'_>>> {
        Ok(None)
    }

    /// The cosine of every rotation angle, and the score between one vector rotated to
    /// positions i and j, which depends only on i - j.
    fn tables(&self, len: usize, _: Weights) -> Result<Vec<PositionTable>> {
        let cosines = self.table(f64::cos, len, DType::F32, &Device::Cpu)?.squeeze(2)?;
        let ones = Tensor::ones((1, 1, len, self.head_dim), DType::F32, &Device::Cpu)?;
        let rotated = Rotary::rotate(self, &ones, 0)?.squeeze(0)?.squeeze(0)?;
        let scores = (rotated.matmul(&rotated.t()?)? / self.head_dim as f64)?;
        Ok(vec![
            PositionTable::new("cos(rotation angle)", "dimension pair", "position", cosines),
            PositionTable::new("<R_i x, R_j x> / d for x = 1", "position j", "position i", scores),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::{Result, Var};

    /// Eq. 14-15 read literally: a 2×2 rotation of each pair by `m · 10000^(-2(i-1)/d)`,
    /// `i = 1..=d/2`, one element at a time.
    fn rotate_by_loops(xs: &Tensor, offset: usize) -> Result<Tensor> {
        let data = xs.to_vec3::<f64>()?;
        let d = data[0][0].len();
        let mut out = data.clone();
        for (b, rows) in data.iter().enumerate() {
            for (t, x) in rows.iter().enumerate() {
                let m = (offset + t) as f64;
                for i in 1..=d / 2 {
                    let angle = m * 10000f64.powf(-2.0 * (i - 1) as f64 / d as f64);
                    let (x1, x2) = (x[2 * i - 2], x[2 * i - 1]);
                    out[b][t][2 * i - 2] = angle.cos() * x1 - angle.sin() * x2;
                    out[b][t][2 * i - 1] = angle.sin() * x1 + angle.cos() * x2;
                }
            }
        }
        Tensor::new(out, &Device::Cpu)
    }

    #[test]
    fn agrees_with_an_explicit_pairwise_rotation() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        let xs = random((2, 3, 5, 8), 1)?;
        let got = rotary.rotate(&xs, 7)?;
        let want = rotate_by_loops(&xs.reshape((6, 5, 8))?, 7)?.reshape((2, 3, 5, 8))?;
        assert!(max_diff(&got, &want)? < 1e-6);
        Ok(())
    }

    /// Forward agreement with candle's fused kernel for interleaved pairs (which has no backward).
    #[test]
    fn agrees_with_candles_fused_interleaved_rope() -> Result<()> {
        let rotary = Rotary::new(500.0, 6)?;
        let xs = random((1, 2, 4, 6), 2)?;
        let rotary_ref = &rotary;
        let angles: Vec<f64> = (3..7).flat_map(|m| (0..3).map(move |i| rotary_ref.angle(m, i))).collect();
        let angles = Tensor::from_vec(angles, (4, 3), &Device::Cpu)?;
        let want = candle_nn::rotary_emb::rope_i(&xs, &angles.cos()?, &angles.sin()?)?;
        assert!(max_diff(&rotary.rotate(&xs, 3)?, &want)? < 1e-12);
        Ok(())
    }

    /// At d = 8 and theta = 10^4, pair 2 turns by 10^(4 · -4/8) = 0.01 rad per position.
    #[test]
    fn angles_at_chosen_positions() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        assert_eq!(rotary.angle(3, 0), 3.0);
        assert!((rotary.angle(100, 2) - 1.0).abs() < 1e-12);
        assert_eq!(rotary.angle(0, 3), 0.0);
        Ok(())
    }

    /// The cached cosines and sines, narrowed, are bit for bit the tables built fresh for those
    /// positions, before and after the cache grows.
    #[test]
    fn cached_rotations_equal_fresh_tables() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        for (offset, len) in [(0, 3), (5, 9), (0, 100), (97, 40), (2, 1)] {
            for dtype in [DType::F32, DType::F64] {
                let rotation = rotary.rotation(offset, len, dtype, &Device::Cpu)?;
                let (queries, keys) = (&rotation.queries, &rotation.keys);
                assert!(
                    max_diff(&queries.cos, &keys.cos)? == 0.0 && max_diff(&queries.sin, &keys.sin)? == 0.0
                );
                for (got, f) in [(&queries.cos, f64::cos as fn(f64) -> f64), (&queries.sin, f64::sin)] {
                    let fresh = rotary.table(f, offset + len, dtype, &Device::Cpu)?.narrow(0, offset, len)?;
                    assert_eq!(got.dims(), &[len, 4, 1]);
                    let got = got.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                    assert_eq!(got, fresh.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn rotation_keeps_every_vectors_norm() -> Result<()> {
        let xs = random((2, 2, 6, 16), 3)?;
        let rotated = Rotary::new(DEFAULT_THETA, 16)?.rotate(&xs, 11)?;
        let norms = |t: &Tensor| t.sqr()?.sum(3)?.sqrt();
        assert!(max_diff(&norms(&xs)?, &norms(&rotated)?)? < 1e-12);
        Ok(())
    }

    #[test]
    fn dot_products_depend_only_on_the_relative_position() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        let (q, k) = (random((1, 1, 1, 8), 4)?, random((1, 1, 1, 8), 5)?);
        let dot = |m: usize, n: usize| -> Result<f64> {
            (rotary.rotate(&q, m)? * rotary.rotate(&k, n)?)?.sum_all()?.to_scalar::<f64>()
        };
        let at_two = dot(2, 0)?;
        for (m, n) in [(3, 1), (12, 10), (1002, 1000)] {
            assert!((dot(m, n)? - at_two).abs() < 1e-10, "({m}, {n})");
        }
        for (m, n) in [(3, 0), (0, 2), (10, 10)] {
            assert!((dot(m, n)? - at_two).abs() > 1e-3, "({m}, {n})");
        }
        Ok(())
    }

    #[test]
    fn rotating_at_an_offset_matches_the_same_rows_of_a_longer_sequence() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 4)?;
        let xs = random((2, 2, 9, 4), 6)?;
        let whole = rotary.rotate(&xs, 0)?;
        for t in [0, 4, 8] {
            let alone = rotary.rotate(&xs.narrow(2, t, 1)?, t)?;
            assert!(max_diff(&alone, &whole.narrow(2, t, 1)?)? < 1e-12, "row {t}");
        }
        Ok(())
    }

    /// Angles are taken in f64 before conversion, so f32 stays accurate at large positions
    /// (an f32 angle near 10^5 would be off by about 4e-3 rad).
    #[test]
    fn f32_input_is_rotated_accurately_far_from_the_origin() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 8)?;
        let xs = random((1, 1, 3, 8), 7)?;
        let got = rotary.rotate(&xs.to_dtype(DType::F32)?, 100_000)?;
        assert_eq!(got.dtype(), DType::F32);
        assert!(max_diff(&got.to_dtype(DType::F64)?, &rotary.rotate(&xs, 100_000)?)? < 1e-6);
        Ok(())
    }

    #[test]
    fn odd_widths_bad_bases_and_mismatched_inputs_are_rejected() -> Result<()> {
        assert!(Rotary::new(DEFAULT_THETA, 7).is_err());
        assert!(Rotary::new(DEFAULT_THETA, 0).is_err());
        assert!(Rotary::new(0.0, 8).is_err());
        assert!(Rotary::new(f64::NAN, 8).is_err());
        let xs = Tensor::zeros((1, 1, 2, 6), DType::F32, &Device::Cpu)?;
        assert!(Rotary::new(DEFAULT_THETA, 4)?.rotate(&xs, 0).is_err());
        Ok(())
    }

    /// At d = 8 and theta = 10^4 the plain frequencies are 1, 0.1, 0.01 and 0.001; each
    /// scaling's, by hand from the formulas of [`RopeScaling`] at s = 4.
    #[test]
    fn scaled_frequencies_by_hand() -> Result<()> {
        let plain = Rotary::new(DEFAULT_THETA, 8)?;
        let frequencies = |scaling: RopeScaling| -> Vec<f64> {
            let rotary = plain.with_scaling(scaling);
            (0..4).map(|pair| rotary.frequency(pair)).collect()
        };
        let close = |got: Vec<f64>, want: [f64; 4]| {
            for (got, want) in got.iter().zip(want) {
                assert!((got - want).abs() < 1e-12 * want.max(1.0), "{got} against {want}");
            }
        };
        close(frequencies(RopeScaling::None), [1.0, 0.1, 0.01, 0.001]);
        close(frequencies(RopeScaling::Linear { factor: 4.0 }), [0.25, 0.025, 0.0025, 0.00025]);
        // The base becomes 10^4 · 4^(8/6): pair i turns by 10^(-i) · 4^(-i/3), so the fastest
        // pair keeps its frequency and the slowest is divided by 4.
        let ntk = [1.0, 0.1 * 4f64.powf(-1.0 / 3.0), 0.01 * 4f64.powf(-2.0 / 3.0), 0.00025];
        close(frequencies(RopeScaling::Ntk { factor: 4.0 }), ntk);
        // L = 256: pair 0 turns 256/2π = 40.7 times (> 32: kept), pair 1 4.07 times
        // (γ = (4.074 - 1)/31 = 0.09917), pairs 2 and 3 under once (interpolated).
        let turns = 25.6 / (2.0 * std::f64::consts::PI);
        let gamma = (turns - 1.0) / 31.0;
        let yarn = [1.0, 0.1 * ((1.0 - gamma) / 4.0 + gamma), 0.0025, 0.00025];
        close(frequencies(RopeScaling::Yarn { factor: 4.0, original_len: 256 }), yarn);
        assert!((yarn[1] - 0.032438).abs() < 1e-6);
        assert!(
            (plain.with_scaling(RopeScaling::Yarn { factor: 4.0, original_len: 256 }).magnitude() - 1.138629)
                .abs()
                < 1e-6
        );
        Ok(())
    }

    /// Position interpolation by 4 turns position 4m as the plain rotation turns position m.
    #[test]
    fn linear_scaling_turns_position_4m_as_plain_turns_m() -> Result<()> {
        let plain = Rotary::new(DEFAULT_THETA, 8)?;
        let scaled = plain.with_scaling(RopeScaling::Linear { factor: 4.0 });
        let xs = random((1, 2, 1, 8), 10)?;
        for m in [0, 1, 5, 250] {
            assert!(max_diff(&scaled.rotate(&xs, 4 * m)?, &plain.rotate(&xs, m)?)? < 1e-12, "m = {m}");
        }
        Ok(())
    }

    /// A factor of 1 is no scaling at all, and YaRN's magnitude scales every rotated vector.
    #[test]
    fn factor_one_is_plain_and_yarn_scales_the_norms() -> Result<()> {
        let plain = Rotary::new(DEFAULT_THETA, 8)?;
        let xs = random((2, 2, 7, 8), 11)?;
        let want = plain.rotate(&xs, 3)?;
        for scaling in [
            RopeScaling::Linear { factor: 1.0 },
            RopeScaling::Ntk { factor: 1.0 },
            RopeScaling::Yarn { factor: 1.0, original_len: 64 },
        ] {
            assert!(max_diff(&plain.with_scaling(scaling).rotate(&xs, 3)?, &want)? < 1e-12, "{scaling}");
        }
        let yarn = plain.with_scaling(RopeScaling::Yarn { factor: 8.0, original_len: 64 });
        let norms = |t: &Tensor| t.sqr()?.sum(3)?.sqrt();
        let scaled_norms = (norms(&xs)? * (0.1 * 8f64.ln() + 1.0))?;
        assert!(max_diff(&norms(&yarn.rotate(&xs, 3)?)?, &scaled_norms)? < 1e-12);
        Ok(())
    }

    #[test]
    fn scalings_parse_and_bad_ones_say_why() {
        let parse = |text: &str| text.parse::<RopeScaling>();
        assert_eq!(parse("none"), Ok(RopeScaling::None));
        assert_eq!(parse("linear:4"), Ok(RopeScaling::Linear { factor: 4.0 }));
        assert_eq!(parse("ntk:2.5"), Ok(RopeScaling::Ntk { factor: 2.5 }));
        assert_eq!(parse("yarn:4:128"), Ok(RopeScaling::Yarn { factor: 4.0, original_len: 128 }));
        for scaling in
            [RopeScaling::Linear { factor: 2.0 }, RopeScaling::Yarn { factor: 4.0, original_len: 128 }]
        {
            assert_eq!(parse(&scaling.to_string()), Ok(scaling));
        }
        for (bad, says) in [
            ("linear", "unknown rope scaling"),
            ("cubic:2", "unknown rope scaling"),
            ("linear:0.5", "must be a number ≥ 1"),
            ("ntk:inf", "must be a number ≥ 1"),
            ("yarn:4", "unknown rope scaling"),
            ("yarn:4:0", "positive whole number"),
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    /// Central differences (h = 1e-5) of `sum(rotate(x) · w)` for a fixed random `w`.
    #[test]
    fn input_gradient_matches_finite_differences() -> Result<()> {
        let rotary = Rotary::new(DEFAULT_THETA, 6)?;
        let x = Var::from_tensor(&random((1, 2, 3, 6), 8)?)?;
        let w = random((1, 2, 3, 6), 9)?;
        check_gradients(&[&x], || (rotary.rotate(x.as_tensor(), 5)? * &w)?.sum_all())?;
        Ok(())
    }
}
