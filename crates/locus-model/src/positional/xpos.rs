//! xPos, RoPE with exponential decay (Sun et al., ACL 2023, "A Length-Extrapolatable
//! Transformer", <https://arxiv.org/abs/2212.10554>, section 3.2).
//!
//! Queries and keys are rotated as RoPE rotates them ([`super::rope`]), and each pair `j` of a
//! `d`-wide head is also scaled by `ζ_j^(n / scale_base)` at position `n` for queries and by
//! its inverse for keys:
//!
//! `q'_n = R_n q_n · ζ^(n / scale_base)`, `k'_m = R_m k_m · ζ^(-m / scale_base)`,
//! `ζ_j = (2j / d + γ) / (1 + γ)`
//!
//! so that the score of pair `j` is scaled by `ζ_j^((n - m) / scale_base)`: distant keys fade,
//! faster in the pairs that turn fast (small `j`). `γ = 0.4` and `scale_base = 512` as in the
//! authors' torchscale (`XPOS`), where `ζ` is `(arange(0, d, 2) + 0.4 d) / (1.4 d)`.
//!
//! torchscale measures positions from the middle of the sequence, to keep the factors small in
//! long sequences; any common origin gives the same scores, and position 0 keeps the keys of a
//! decoder's cache valid as it grows. The factors are computed in `f64` and stay finite in `f32`
//! up to about `88 · scale_base / -ln ζ_0` positions (36,000 with the defaults). In an encoder,
//! a key after its query is scaled up as much as one before it is scaled down: the paper defines
//! xPos for causal attention, and its formula is applied unchanged.

use candle_core::{bail, DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::absolute::Embedding;
use super::cache::{Span, TableCache};
use super::rope::Rotary;
use super::{Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;
use crate::error::Result;

pub(super) fn default_scale_base() -> f64 {
    512.0
}

pub(super) fn default_gamma() -> f64 {
    0.4
}

/// The rule `scale_base` or `gamma` breaks, if any (`theta` and the head width are RoPE's,
/// [`super::rope::validate`]).
pub(super) fn validate(field: &str, scale_base: f64, gamma: f64) -> Option<String> {
    if !(scale_base > 0.0 && scale_base.is_finite()) {
        return Some(format!("{field}.scale_base ({scale_base}) must be a positive number"));
    }
    (!(gamma > 0.0 && gamma.is_finite()))
        .then(|| format!("{field}.gamma ({gamma}) must be a positive number"))
}

/// Which side of the score a table scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Scaled by `ζ^(n / scale_base)`.
    Queries,
    /// Scaled by `ζ^(-n / scale_base)`.
    Keys,
}

/// xPos for heads of width `head_dim`.
#[derive(Debug, Clone)]
pub struct Xpos {
    rotary: Rotary,
    scale_base: f64,
    gamma: f64,
    /// Cosines and sines times the scale, for queries and for keys.
    query_cos: TableCache,
    query_sin: TableCache,
    key_cos: TableCache,
    key_sin: TableCache,
}

impl Xpos {
    /// xPos with RoPE's base `theta`, `scale_base` and `gamma` for heads of width `head_dim`.
    ///
    /// # Errors
    /// As [`Rotary::new`], or when `scale_base` or `gamma` is not a positive finite number.
    pub fn new(theta: f64, scale_base: f64, gamma: f64, head_dim: usize) -> candle_core::Result<Self> {
        if let Some(message) = validate("xpos", scale_base, gamma) {
            bail!("{message}");
        }
        Ok(Self {
            rotary: Rotary::new(theta, head_dim)?,
            scale_base,
            gamma,
            query_cos: TableCache::new(),
            query_sin: TableCache::new(),
            key_cos: TableCache::new(),
            key_sin: TableCache::new(),
        })
    }

    /// `ζ_pair = (2 · pair / head_dim + γ) / (1 + γ)`.
    pub fn zeta(&self, pair: usize) -> f64 {
        (2.0 * pair as f64 / self.rotary.head_dim() as f64 + self.gamma) / (1.0 + self.gamma)
    }

    /// The factor of pair `pair` of a query at `position`, `ζ^(position / scale_base)`; a key's
    /// is its inverse.
    pub fn query_scale(&self, position: usize, pair: usize) -> f64 {
        self.zeta(pair).powf(position as f64 / self.scale_base)
    }

    /// `f` of every angle times the side's scale, at positions `0..len`, computed in `f64` on
    /// the host, then converted to `dtype` and moved to `device`: `(len, head_dim / 2, 1)`.
    fn table(
        &self,
        f: fn(f64) -> f64,
        side: Side,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let half = self.rotary.head_dim() / 2;
        let values: Vec<f64> = (0..len)
            .flat_map(|position| {
                (0..half).map(move |pair| {
                    let scale = self.query_scale(position, pair);
                    let scale = if side == Side::Queries { scale } else { scale.recip() };
                    f(self.rotary.angle(position, pair)) * scale
                })
            })
            .collect();
        Tensor::from_vec(values, (len, half, 1), &Device::Cpu)?.to_dtype(dtype)?.to_device(device)
    }

    /// The rotation and scales of positions `offset..offset + len`, from the cached tables.
    pub fn rotation(
        &self,
        offset: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Rotation> {
        let table = |cache: &TableCache, f: fn(f64) -> f64, side: Side| {
            cache.rows(0, offset, len, dtype, device, |n| self.table(f, side, n, dtype, device))
        };
        Ok(Rotation::scaled(
            table(&self.query_cos, f64::cos, Side::Queries)?,
            table(&self.query_sin, f64::sin, Side::Queries)?,
            table(&self.key_cos, f64::cos, Side::Keys)?,
            table(&self.key_sin, f64::sin, Side::Keys)?,
        ))
    }
}

impl Hooks for Xpos {
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

    /// Each pair's query scale, and the score between one vector as a query at i and as a key
    /// at j, which depends only on i - j and fades with it.
    fn tables(&self, len: usize, _: Weights) -> Result<Vec<PositionTable>> {
        let half = self.rotary.head_dim() / 2;
        let scales: Vec<f32> =
            (0..len).flat_map(|n| (0..half).map(move |pair| self.query_scale(n, pair) as f32)).collect();
        let scales = Tensor::from_vec(scales, (len, half), &Device::Cpu)?;
        let ones = Tensor::ones((1, 1, len, self.rotary.head_dim()), DType::F32, &Device::Cpu)?;
        let rotation = self.rotation(0, len, DType::F32, &Device::Cpu)?;
        let queries = rotation.rotate_queries(&ones)?.squeeze(0)?.squeeze(0)?;
        let keys = rotation.rotate_keys(&ones)?.squeeze(0)?.squeeze(0)?;
        let scores = (queries.matmul(&keys.t()?)? / self.rotary.head_dim() as f64)?;
        Ok(vec![
            PositionTable::new(
                format!("query scale ζ^(n/{})", self.scale_base),
                "dimension pair",
                "position",
                scales,
            ),
            PositionTable::pairs("<q'_i, k'_j> / d for q = k = 1", scores),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::{Result, Var};

    /// The paper's formula read literally, one element at a time: the pair `(x_2j, x_2j+1)`
    /// of a vector at position `n` turns by `n · 10000^(-2j/d)` and is scaled by
    /// `((2j + 0.4 d) / (1.4 d))^(±n / 512)`.
    fn xpos_by_loops(xs: &Tensor, offset: usize, sign: f64) -> Result<Tensor> {
        let data = xs.to_vec3::<f64>()?;
        let d = data[0][0].len();
        let mut out = data.clone();
        for (b, rows) in data.iter().enumerate() {
            for (t, x) in rows.iter().enumerate() {
                let n = (offset + t) as f64;
                for j in 0..d / 2 {
                    let angle = n * 10000f64.powf(-2.0 * j as f64 / d as f64);
                    let zeta = (2.0 * j as f64 + 0.4 * d as f64) / (1.4 * d as f64);
                    let scale = zeta.powf(sign * n / 512.0);
                    let (x1, x2) = (x[2 * j], x[2 * j + 1]);
                    out[b][t][2 * j] = (angle.cos() * x1 - angle.sin() * x2) * scale;
                    out[b][t][2 * j + 1] = (angle.sin() * x1 + angle.cos() * x2) * scale;
                }
            }
        }
        Tensor::new(out, &Device::Cpu)
    }

    fn defaults(head_dim: usize) -> Result<Xpos> {
        Xpos::new(10_000.0, default_scale_base(), default_gamma(), head_dim)
    }

    #[test]
    fn queries_and_keys_agree_with_the_formula() -> Result<()> {
        let xpos = defaults(8)?;
        let xs = random((2, 3, 5, 8), 1)?;
        let rotation = xpos.rotation(300, 5, DType::F64, &Device::Cpu)?;
        let flat = xs.reshape((6, 5, 8))?;
        let want_queries = xpos_by_loops(&flat, 300, 1.0)?.reshape((2, 3, 5, 8))?;
        let want_keys = xpos_by_loops(&flat, 300, -1.0)?.reshape((2, 3, 5, 8))?;
        assert!(max_diff(&rotation.rotate_queries(&xs)?, &want_queries)? < 1e-12);
        assert!(max_diff(&rotation.rotate_keys(&xs)?, &want_keys)? < 1e-12);
        Ok(())
    }

    /// By hand at d = 4: ζ_0 = 0.4 / 1.4 = 2/7 and ζ_1 = (2/4 + 0.4) / 1.4 = 9/14 (torchscale:
    /// `(arange(0, 4, 2) + 1.6) / 5.6`), so at position 512 a query's pairs are scaled by 2/7 and
    /// 9/14.
    #[test]
    fn zeta_and_scales_at_chosen_pairs() -> Result<()> {
        let xpos = defaults(4)?;
        assert!((xpos.zeta(0) - 2.0 / 7.0).abs() < 1e-15);
        assert!((xpos.zeta(1) - 9.0 / 14.0).abs() < 1e-15);
        assert!((xpos.query_scale(512, 1) - 9.0 / 14.0).abs() < 1e-15);
        assert!((xpos.query_scale(512, 0) - 2.0 / 7.0).abs() < 1e-15);
        assert!((xpos.query_scale(1024, 0) - 4.0 / 49.0).abs() < 1e-15);
        assert_eq!(xpos.query_scale(0, 0), 1.0);
        Ok(())
    }

    /// A query at n and a key at m score as at n + s and m + s (relative), and a key further
    /// back scores less than RoPE would give it by the pair's factor ζ^((n - m)/512).
    #[test]
    fn scores_depend_only_on_the_relative_position() -> Result<()> {
        let xpos = defaults(8)?;
        let (q, k) = (random((1, 1, 1, 8), 4)?, random((1, 1, 1, 8), 5)?);
        let dot = |n: usize, m: usize| -> Result<f64> {
            let queries = xpos.rotation(n, 1, DType::F64, &Device::Cpu)?.rotate_queries(&q)?;
            let keys = xpos.rotation(m, 1, DType::F64, &Device::Cpu)?.rotate_keys(&k)?;
            (queries * keys)?.sum_all()?.to_scalar::<f64>()
        };
        let at_two = dot(2, 0)?;
        for (n, m) in [(3, 1), (12, 10), (1002, 1000)] {
            assert!((dot(n, m)? - at_two).abs() < 1e-10, "({n}, {m})");
        }
        for (n, m) in [(3, 0), (0, 2), (10, 10)] {
            assert!((dot(n, m)? - at_two).abs() > 1e-3, "({n}, {m})");
        }
        Ok(())
    }

    /// The cached tables, narrowed, are bit for bit the tables built fresh for those positions,
    /// before and after the cache grows.
    #[test]
    fn cached_tables_equal_fresh_tables() -> Result<()> {
        let xpos = defaults(8)?;
        for (offset, len) in [(0, 3), (5, 9), (0, 100), (97, 40), (2, 1)] {
            for dtype in [DType::F32, DType::F64] {
                let rotation = xpos.rotation(offset, len, dtype, &Device::Cpu)?;
                let xs = random((1, 1, len, 8), 6)?.to_dtype(dtype)?;
                for side in [Side::Queries, Side::Keys] {
                    let fresh = |f| -> Result<Tensor> {
                        xpos.table(f, side, offset + len, dtype, &Device::Cpu)?.narrow(0, offset, len)
                    };
                    let want = Rotation::new(fresh(f64::cos)?, fresh(f64::sin)?).rotate_queries(&xs)?;
                    let got = match side {
                        Side::Queries => rotation.rotate_queries(&xs)?,
                        Side::Keys => rotation.rotate_keys(&xs)?,
                    };
                    assert_eq!(max_diff(&got.to_dtype(DType::F64)?, &want.to_dtype(DType::F64)?)?, 0.0);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(Xpos::new(10_000.0, 0.0, 0.4, 8).is_err());
        assert!(Xpos::new(10_000.0, 512.0, -1.0, 8).is_err());
        assert!(Xpos::new(10_000.0, 512.0, 0.4, 7).is_err());
    }

    /// Central differences (h = 1e-5) of `sum(rotate(x) · w)` for queries and keys.
    #[test]
    fn input_gradients_match_finite_differences() -> Result<()> {
        let xpos = defaults(6)?;
        let x = Var::from_tensor(&random((1, 2, 3, 6), 8)?)?;
        let w = random((1, 2, 3, 6), 9)?;
        let rotation = xpos.rotation(700, 3, DType::F64, &Device::Cpu)?;
        check_gradients(&[&x], || (rotation.rotate_queries(x.as_tensor())? * &w)?.sum_all())?;
        check_gradients(&[&x], || (rotation.rotate_keys(x.as_tensor())? * &w)?.sum_all())?;
        Ok(())
    }
}
