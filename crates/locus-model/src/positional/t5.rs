//! T5's relative position bias (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
//! with a Unified Text-to-Text Transformer", <https://arxiv.org/abs/1910.10683>, section 2.1).
//!
//! Each head learns one scalar per *bucket* of relative position, added to the attention
//! scores: `score_hij += table[bucket((k_offset + j) - (q_offset + i)), h]`. Small distances get
//! a bucket each; larger ones share logarithmically wider buckets up to `max_distance`, beyond
//! which all distances share the last bucket. With `n` buckets per direction and `e = n / 2`
//! exact buckets, a distance `d ≥ e` falls in
//! `min(e + ⌊ln(d / e) / ln(max_distance / e) · (n - e)⌋, n - 1)`.
//! The bucketing follows HuggingFace transformers' `T5Attention._relative_position_bucket`
//! exactly, float32 logarithm included. The bucket of every (query, key) pair is computed once
//! per device and reused ([`TableCache`]); the bias is gathered from the learned table at every
//! forward pass, so gradients reach it.

use candle_core::{bail, DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::absolute::Embedding;
use super::cache::{Span, TableCache};
use super::{Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;

pub(super) fn default_num_buckets() -> usize {
    32
}

pub(super) fn default_max_distance() -> usize {
    128
}

/// The rule `num_buckets` and `max_distance` break, if any.
pub(super) fn validate(field: &str, num_buckets: usize, max_distance: usize) -> Option<String> {
    (num_buckets < 4 || max_distance < num_buckets / 2).then(|| {
        format!(
            "{field}: num_buckets ({num_buckets}) must be at least 4 and max_distance \
             ({max_distance}) at least num_buckets / 2"
        )
    })
}

/// Standard deviation of the initial bias table: small next to the scores' unit scale, so a new
/// model starts almost position-blind (HuggingFace draws from `d_model^-0.5`, which the table's
/// shape does not know).
const INIT_STDEV: f64 = 0.02;

/// The bucket of `relative_position = key_position - query_position`, as HuggingFace's
/// `T5Attention._relative_position_bucket` computes it.
///
/// Bidirectional: half the buckets per sign, keys after the query in the upper half (a distance of
/// 0 is in the lower half, so bucket `num_buckets / 2` is never used). Causal: all buckets for
/// keys at or before the query, and every key after it in bucket 0. Within a direction, with `n`
/// buckets and `e = n / 2`, distances below `e` have a bucket each and the rest are spread
/// logarithmically up to `max_distance`, clamped to the last bucket.
///
/// Sensible only with at least one exact bucket (`num_buckets ≥ 2`, or `≥ 4` bidirectional) and
/// `max_distance > e`, which [`T5Bias::new`] checks.
pub fn t5_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let (num_buckets, first, distance) = if bidirectional {
        let half = num_buckets / 2;
        (half, if relative_position > 0 { half } else { 0 }, relative_position.unsigned_abs())
    } else {
        (num_buckets, 0, relative_position.min(0).unsigned_abs())
    };
    let max_exact = num_buckets / 2;
    if distance < max_exact as u64 {
        return first + distance as usize;
    }
    // In float32 like HF (`torch.log(relative_position.float() / max_exact)`), divided by a log
    // taken in float64 (`math.log(max_distance / max_exact)`), then truncated.
    let log_ratio =
        (distance as f32 / max_exact as f32).ln() / (max_distance as f64 / max_exact as f64).ln() as f32;
    let large = max_exact + (log_ratio * (num_buckets - max_exact) as f32) as usize;
    first + large.min(num_buckets.saturating_sub(1))
}

/// A learned T5 relative position bias for one attention stack (T5 shares one per stack).
#[derive(Debug, Clone)]
pub struct T5Bias {
    /// One bias per bucket and head, `(num_buckets, n_heads)`.
    table: Tensor,
    num_buckets: usize,
    max_distance: usize,
    bidirectional: bool,
    buckets: TableCache,
}

impl T5Bias {
    /// A bias of `num_buckets` buckets up to `max_distance` for `n_heads` heads, its table created
    /// under `vb` as `weight` and drawn from N(0, 0.02²). T5 uses `num_buckets = 32`,
    /// `max_distance = 128`, bidirectional in the encoder and causal in the decoder.
    ///
    /// # Errors
    /// When there is no exact bucket (`num_buckets < 2`, or `< 4` bidirectional) or
    /// `max_distance` does not exceed the exact range.
    pub fn new(
        num_buckets: usize,
        max_distance: usize,
        n_heads: usize,
        bidirectional: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let per_direction = if bidirectional { num_buckets / 2 } else { num_buckets };
        let max_exact = per_direction / 2;
        if max_exact == 0 || max_distance <= max_exact {
            bail!(
                "T5 bias needs at least one exact bucket and max_distance above the exact range: \
                 num_buckets {num_buckets} (bidirectional: {bidirectional}) gives {max_exact} exact \
                 buckets, max_distance is {max_distance}"
            );
        }
        let init = Init::Randn { mean: 0.0, stdev: INIT_STDEV };
        let table = vb.get_with_hints((num_buckets, n_heads), "weight", init)?;
        Ok(Self { table, num_buckets, max_distance, bidirectional, buckets: TableCache::new() })
    }

    /// The bucket of every (query, key) pair of a `len`-square table of positions from 0.
    fn bucket_table(&self, len: usize) -> Result<Tensor> {
        let (bidirectional, num_buckets, max_distance) =
            (self.bidirectional, self.num_buckets, self.max_distance);
        let ids: Vec<u32> = (0..len)
            .flat_map(|i| {
                (0..len).map(move |j| {
                    let relative = j as i64 - i as i64;
                    t5_bucket(relative, bidirectional, num_buckets, max_distance) as u32
                })
            })
            .collect();
        Tensor::from_vec(ids, (len, len), self.table.device())
    }

    /// The bias for the queries and keys of `span`: bucket ids from the cached table, gathered
    /// from the learned table (differentiable w.r.t. it).
    ///
    /// # Shapes
    /// Returns `(1, n_heads, q_len, k_len)`.
    pub fn bias(&self, span: Span) -> Result<Tensor> {
        let device = self.table.device();
        let ids = self.buckets.distances(0, span, DType::U32, device, |n| self.bucket_table(n))?;
        let ids = ids.contiguous()?.flatten_all()?;
        let n_heads = self.table.dim(1)?;
        self.table
            .index_select(&ids, 0)?
            .reshape((span.q_len, span.k_len, n_heads))?
            .permute((2, 0, 1))?
            .unsqueeze(0)
    }

    /// Number of distance buckets.
    pub fn num_buckets(&self) -> usize {
        self.num_buckets
    }

    /// Distance at which the last bucket starts.
    pub fn max_distance(&self) -> usize {
        self.max_distance
    }

    /// Whether keys after the query get buckets of their own (encoder) or share bucket 0
    /// (decoder).
    pub fn bidirectional(&self) -> bool {
        self.bidirectional
    }

    /// The learned table, `(num_buckets, n_heads)`: row `b` holds each head's bias for bucket `b`.
    pub fn table(&self) -> &Tensor {
        &self.table
    }
}

impl Hooks for T5Bias {
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
        _: &Device,
    ) -> crate::Result<Option<Tensor>> {
        Ok(Some(self.bias(span)?.to_dtype(dtype)?))
    }

    fn relative(&self, _: Span, _: &Device) -> crate::Result<Option<Relative<'_>>> {
        Ok(None)
    }

    /// The bucket of every distance, then each head's bias.
    fn tables(&self, len: usize, weights: Weights) -> crate::Result<Vec<PositionTable>> {
        let direction = if self.bidirectional { "bidirectional" } else { "causal" };
        let buckets = self.bucket_table(len)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let mut tables = vec![PositionTable::pairs(format!("T5 bucket of j - i ({direction})"), buckets)];
        let bias = self.bias(Span::same(len, 0))?.squeeze(0)?;
        tables.extend(PositionTable::per_head(&bias, |head| {
            format!("head {head} bias ({})", weights.describe())
        })?);
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, random};
    use candle_core::Var;
    use candle_nn::VarMap;

    const GOLDEN_RELATIVE: [i64; 14] = [-200, -128, -100, -20, -9, -8, -1, 0, 1, 7, 8, 20, 100, 200];

    /// HF's own function on CPU tensors, torch 2.11.0 and transformers 5.17.0:
    /// ```python
    /// import torch
    /// from transformers.models.t5.modeling_t5 import T5Attention
    /// rel = torch.tensor([-200, -128, -100, -20, -9, -8, -1, 0, 1, 7, 8, 20, 100, 200])
    /// T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32, max_distance=128)
    /// T5Attention._relative_position_bucket(rel, bidirectional=False, num_buckets=32, max_distance=128)
    /// ```
    #[test]
    fn buckets_match_huggingface_at_chosen_distances() {
        let bidirectional = [15, 15, 15, 10, 8, 8, 1, 0, 17, 23, 24, 26, 31, 31];
        let causal = [31, 31, 30, 17, 9, 8, 1, 0, 0, 0, 0, 0, 0, 0];
        for ((rel, bi), causal) in GOLDEN_RELATIVE.into_iter().zip(bidirectional).zip(causal) {
            assert_eq!(t5_bucket(rel, true, 32, 128), bi, "bidirectional, relative position {rel}");
            assert_eq!(t5_bucket(rel, false, 32, 128), causal, "causal, relative position {rel}");
        }
    }

    /// Bucket of distance `distance` when buckets below `exact` are exact and `starts` lists the
    /// first distance of each later bucket.
    fn from_starts(distance: u64, exact: usize, starts: &[u64]) -> usize {
        if distance < exact as u64 {
            distance as usize
        } else {
            exact - 1 + starts.iter().filter(|&&start| start <= distance).count()
        }
    }

    /// Every distance for the defaults. The first distance of each logarithmic bucket was read
    /// off HF's function (as above) evaluated on `torch.arange(-3000, 3001)`: buckets rise with
    /// distance, so these starts determine all of it.
    #[test]
    fn buckets_match_huggingface_at_every_distance_up_to_3000() {
        let bidirectional_starts = [8, 12, 16, 23, 32, 46, 64, 91]; // buckets 8..=15
        let causal_starts = [16, 19, 21, 24, 27, 31, 35, 40, 46, 52, 59, 67, 77, 87, 99, 113]; // 16..=31
        for distance in 0..=3000u64 {
            let rel = distance as i64;
            let bi = from_starts(distance, 8, &bidirectional_starts);
            assert_eq!(t5_bucket(-rel, true, 32, 128), bi, "bidirectional, relative position {}", -rel);
            let upper = if rel > 0 { 16 } else { 0 };
            assert_eq!(t5_bucket(rel, true, 32, 128), upper + bi, "bidirectional, relative position {rel}");
            let causal = from_starts(distance, 16, &causal_starts);
            assert_eq!(t5_bucket(-rel, false, 32, 128), causal, "causal, relative position {}", -rel);
            assert_eq!(t5_bucket(rel, false, 32, 128), 0, "causal, relative position {rel}");
        }
    }

    fn new_bias(bidirectional: bool, n_heads: usize) -> Result<(T5Bias, Var)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let bias = T5Bias::new(32, 128, n_heads, bidirectional, vb.pp("t5"))?;
        let var = varmap.data().lock().unwrap()["t5.weight"].clone();
        Ok((bias, var))
    }

    #[test]
    fn bias_gathers_each_heads_bucket() -> Result<()> {
        let (t5, _) = new_bias(true, 3)?;
        let bias = t5.bias(Span { q_len: 4, k_len: 6, q_offset: 10, k_offset: 0 })?; // queries at 10..14, keys at 0..6
        assert_eq!(bias.dims(), &[1, 3, 4, 6]);
        let bias = bias.squeeze(0)?.to_vec3::<f64>()?;
        let table = t5.table().to_vec2::<f64>()?;
        for (h, head) in bias.iter().enumerate() {
            for (i, row) in head.iter().enumerate() {
                for (j, &got) in row.iter().enumerate() {
                    let bucket = t5_bucket(j as i64 - (10 + i) as i64, true, 32, 128);
                    assert_eq!(got, table[bucket][h], "head {h}, query {i}, key {j}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn bias_is_invariant_to_shifting_queries_and_keys_together() -> Result<()> {
        for bidirectional in [true, false] {
            let (t5, _) = new_bias(bidirectional, 2)?;
            let at_zero = t5.bias(Span { q_len: 5, k_len: 300, q_offset: 0, k_offset: 0 })?;
            let shifted = t5.bias(Span { q_len: 5, k_len: 300, q_offset: 1000, k_offset: 1000 })?;
            let diff = (at_zero - shifted)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert_eq!(diff, 0.0);
        }
        Ok(())
    }

    #[test]
    fn new_rejects_tables_without_exact_buckets() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        assert!(T5Bias::new(2, 128, 4, true, vb.pp("a")).is_err());
        assert!(T5Bias::new(32, 8, 4, true, vb.pp("b")).is_err());
        assert!(T5Bias::new(2, 128, 4, false, vb.pp("c")).is_ok());
    }

    /// Central differences (h = 1e-5) of `sum(bias · w)` for a fixed random `w`, against backprop.
    #[test]
    fn table_gradient_matches_finite_differences() -> Result<()> {
        let (t5, var) = new_bias(false, 2)?;
        let (q_len, k_len, q_offset) = (3, 40, 30);
        let w = random((1, 2, q_len, k_len), 5)?;
        check_gradients(&[&var], || {
            (t5.bias(Span { q_len, k_len, q_offset, k_offset: 0 })? * &w)?.sum_all()
        })?;
        Ok(())
    }
}
