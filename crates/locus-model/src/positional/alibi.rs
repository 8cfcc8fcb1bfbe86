//! ALiBi, attention with linear biases (Press, Smith and Lewis 2022, "Train Short, Test Long",
//! <https://arxiv.org/abs/2108.12409>).
//!
//! No position is embedded anywhere; instead each head `h` penalises a query-key score in
//! proportion to their distance, with a fixed head-specific slope `m_h`:
//!
//! `score_hij += -m_h · |(q_offset + i) - (k_offset + j)|`
//!
//! The paper states the causal form `-m_h · (i - j)` for `j ≤ i`; the absolute distance gives the
//! same values there (the decoder's causal mask hides `j > i`) and a symmetric bias for the
//! encoder. The slopes are a geometric sequence, `2^(-8/n), 2^(-16/n), ..., 2^(-8)` for `n` heads
//! (section 3), computed as in the authors' `get_slopes`
//! (<https://github.com/ofirpress/attention_with_linear_biases>), including its rule for head
//! counts that are not a power of two. The biases are computed once per device and dtype and
//! reused ([`TableCache`]).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::absolute::Embedding;
use super::cache::{Span, TableCache};
use super::{Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;

/// ALiBi has no settings to check.
pub(super) fn validate() -> Option<String> {
    None
}

/// The slope `m_h` of each of `n_heads` heads, as the authors' `get_slopes(n_heads)` computes it.
///
/// For a power of two `n`, the slopes are `2^(-8k/n)` for `k = 1..=n`. Otherwise, with `m` the
/// largest power of two below `n_heads`, they are the `m` slopes for `m` heads followed by the
/// first `n_heads - m` of every other slope for `2m` heads (`2^(-8/2m), 2^(-24/2m), ...`), which
/// interleave with the first `m`. No heads, no slopes.
pub fn alibi_slopes(n_heads: usize) -> Vec<f64> {
    let Some(log2) = n_heads.checked_ilog2() else {
        return Vec::new();
    };
    let pow2 = 1usize << log2;
    let geometric = |n: usize| (1..=n).map(move |k| 2f64.powf(-8.0 * k as f64 / n as f64));
    geometric(pow2).chain(geometric(2 * pow2).step_by(2).take(n_heads - pow2)).collect()
}

/// The ALiBi bias `-slopes[h] · |(q_offset + i) - (k_offset + j)|`, to add to attention scores.
///
/// Computed in `f64` on the host, then converted to `dtype` and moved to `device`.
///
/// # Shapes
/// Returns `(1, n_heads, q_len, k_len)` with `n_heads = slopes.len()`.
pub fn alibi_bias(
    slopes: &[f64],
    q_len: usize,
    k_len: usize,
    q_offset: usize,
    k_offset: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let values: Vec<f64> = slopes
        .iter()
        .flat_map(|&slope| {
            (0..q_len).flat_map(move |i| {
                (0..k_len).map(move |j| -slope * (q_offset + i).abs_diff(k_offset + j) as f64)
            })
        })
        .collect();
    Tensor::from_vec(values, (1, slopes.len(), q_len, k_len), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)
}

/// A built ALiBi encoding: one slope per head.
#[derive(Debug, Clone)]
pub struct Alibi {
    slopes: Vec<f64>,
    causal: bool,
    biases: TableCache,
}

impl Alibi {
    /// The slopes of `n_heads` heads ([`alibi_slopes`]); `causal` in a decoder, where the
    /// causal mask hides later keys (only [`Hooks::tables`] shows it).
    pub fn new(n_heads: usize, causal: bool) -> Self {
        Self { slopes: alibi_slopes(n_heads), causal, biases: TableCache::new() }
    }

    /// The bias for the queries and keys of `span`, from the cached table:
    /// `(1, n_heads, q_len, k_len)`.
    pub fn bias(&self, span: Span, dtype: DType, device: &Device) -> Result<Tensor> {
        self.biases.distances(2, span, dtype, device, |n| alibi_bias(&self.slopes, n, n, 0, 0, dtype, device))
    }
}

impl Hooks for Alibi {
    fn add_layer(&mut self, _: VarBuilder) -> crate::Result<()> {
        Ok(())
    }

    fn embed(
        &self,
        _: usize,
        _: Span,
        _: Option<&mut DropoutRng>,
        _: DType,
        _: &Device,
    ) -> crate::Result<Option<Embedding>> {
        Ok(None)
    }

    fn rotate(&self, _: Span, _: DType, _: &Device) -> crate::Result<Option<Rotation>> {
        Ok(None)
    }

    fn score_bias(
        &self,
        span: Span,
        _: Option<&[usize]>,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Option<Tensor>> {
        Ok(Some(self.bias(span, dtype, device)?))
    }

    fn relative(&self, _: Span, _: &Device) -> crate::Result<Option<Relative<'_>>> {
        Ok(None)
    }

    /// Each head's bias; in a decoder, the keys the causal mask hides are `-inf`.
    fn tables(&self, len: usize, _: Weights) -> crate::Result<Vec<PositionTable>> {
        let bias = alibi_bias(&self.slopes, len, len, 0, 0, DType::F32, &Device::Cpu)?.squeeze(0)?;
        let mut tables = Vec::new();
        for (head, slope) in self.slopes.iter().enumerate() {
            let mut values = bias.get(head)?;
            if self.causal {
                let hidden =
                    crate::mask::causal_bias(len, 0, DType::F32, &Device::Cpu)?.squeeze(0)?.squeeze(0)?;
                let minus_infinity = Tensor::full(f32::NEG_INFINITY, (len, len), &Device::Cpu)?;
                values = hidden.lt(0f32)?.where_cond(&minus_infinity, &values)?;
            }
            tables.push(PositionTable::pairs(format!("head {head}: -{slope:.4}·|i - j|"), values));
        }
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_slopes(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-12 * w, "{got:?} vs {want:?}");
        }
    }

    /// Section 3 of the paper: "For a model with 8 heads, the slopes that we used are the
    /// geometric sequence 1/2^1, 1/2^2, ..., 1/2^8."
    #[test]
    fn eight_heads_have_the_papers_slopes() {
        let want: Vec<f64> = (1..=8).map(|k| 0.5f64.powi(k)).collect();
        assert_slopes(&alibi_slopes(8), &want);
    }

    /// Section 3: "For models that require 16 heads, we interpolate those 8 slopes by
    /// geometrically averaging every consecutive pair, resulting in the geometric sequence that
    /// starts at 1/2^0.5 and has the ratio of 1/2^0.5."
    #[test]
    fn sixteen_heads_interpolate_the_eight_head_slopes() {
        let want: Vec<f64> = (1..=16).map(|k| 0.5f64.powf(k as f64 / 2.0)).collect();
        assert_slopes(&alibi_slopes(16), &want);
    }

    /// By hand, from the authors' `get_slopes` (and confirmed by running it in Python 3.11, which
    /// printed `[0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]` for 6 heads):
    /// 6 is no power of two, so m = 4: get_slopes(4) = 2^(-8/4)^(1..=4) = 2^-2, 2^-4, 2^-6, 2^-8,
    /// then get_slopes(8) = 2^-1, ..., 2^-8, taken [0::2] = 2^-1, 2^-3, 2^-5, 2^-7, first 6 - 4 = 2:
    /// 2^-1, 2^-3.
    #[test]
    fn six_heads_follow_the_non_power_of_two_rule() {
        assert_slopes(&alibi_slopes(6), &[0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
    }

    /// 12 heads: m = 8 gives 2^-1, ..., 2^-8; get_slopes(16) = 2^-0.5, 2^-1, ..., 2^-8, taken
    /// [0::2] = 2^-0.5, 2^-1.5, 2^-2.5, ..., first 12 - 8 = 4: 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5
    /// (Python printed 0.7071067811865476, 0.35355339059327384, 0.17677669529663692,
    /// 0.08838834764831849 for those four).
    #[test]
    fn twelve_heads_follow_the_non_power_of_two_rule() {
        let mut want: Vec<f64> = (1..=8).map(|k| 0.5f64.powi(k)).collect();
        want.extend([
            std::f64::consts::FRAC_1_SQRT_2, // 0.7071067811865476
            0.353_553_390_593_273_84,
            0.176_776_695_296_636_92,
            0.088_388_347_648_318_49,
        ]);
        assert_slopes(&alibi_slopes(12), &want);
    }

    /// One head: get_slopes(1) = [2^(-8/1)]; zero heads have no slopes (Python's math.log2(0)
    /// raises instead).
    #[test]
    fn degenerate_head_counts() {
        assert_slopes(&alibi_slopes(1), &[1.0 / 256.0]);
        assert!(alibi_slopes(0).is_empty());
    }

    #[test]
    fn bias_is_minus_slope_times_distance_at_chosen_positions() -> Result<()> {
        // Queries at positions 2, 3, 4; keys at 0..4.
        let bias = alibi_bias(&[0.5, 0.25], 3, 5, 2, 0, DType::F64, &Device::Cpu)?;
        assert_eq!(bias.dims(), &[1, 2, 3, 5]);
        let bias = bias.squeeze(0)?.to_vec3::<f64>()?;
        assert_eq!(bias[0][0][0], -1.0); // head 0, query at 2, key at 0: -0.5 · 2
        assert_eq!(bias[0][0][2], 0.0); // same position
        assert_eq!(bias[0][2][4], 0.0);
        assert_eq!(bias[1][0][4], -0.5); // head 1, query at 2, key at 4: -0.25 · 2
        assert_eq!(bias[1][2][0], -1.0); // head 1, query at 4, key at 0: -0.25 · 4
        assert_eq!(bias[0][1], [-1.5, -1.0, -0.5, 0.0, -0.5]); // query at 3
        Ok(())
    }

    #[test]
    fn bias_is_invariant_to_shifting_queries_and_keys_together() -> Result<()> {
        let slopes = alibi_slopes(6);
        let at_zero = alibi_bias(&slopes, 4, 7, 0, 0, DType::F64, &Device::Cpu)?;
        let shifted = alibi_bias(&slopes, 4, 7, 100, 100, DType::F64, &Device::Cpu)?;
        let diff = (at_zero - shifted)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }

    #[test]
    fn bias_has_the_requested_dtype() -> Result<()> {
        let bias = alibi_bias(&alibi_slopes(4), 2, 3, 0, 0, DType::F32, &Device::Cpu)?;
        assert_eq!(bias.dtype(), DType::F32);
        // Head 0 of 4 has slope 2^-2; query 1 to key 0 is one step away.
        assert_eq!(bias.get(0)?.get(0)?.get(1)?.get(0)?.to_scalar::<f32>()?, -0.25);
        Ok(())
    }

    /// The cached biases, narrowed, are bit for bit those computed for the same positions,
    /// before and after the cache grows.
    #[test]
    fn cached_biases_equal_fresh_ones() -> Result<()> {
        let alibi = Alibi::new(6, true);
        for span in [Span::same(5, 0), Span::after(1, 70), Span::same(4, 300), Span::after(3, 2)] {
            for dtype in [DType::F32, DType::F64] {
                let got = alibi.bias(span, dtype, &Device::Cpu)?;
                let want = alibi_bias(
                    &alibi.slopes,
                    span.q_len,
                    span.k_len,
                    span.q_offset,
                    span.k_offset,
                    dtype,
                    &Device::Cpu,
                )?;
                let (got, want) = (got.to_dtype(DType::F64)?, want.to_dtype(DType::F64)?);
                assert_eq!(
                    got.flatten_all()?.to_vec1::<f64>()?,
                    want.flatten_all()?.to_vec1::<f64>()?,
                    "{span:?}"
                );
            }
        }
        Ok(())
    }
}
