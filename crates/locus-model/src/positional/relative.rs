//! Relative position representations (Shaw, Uszkoreit and Vaswani 2018, "Self-Attention with
//! Relative Position Representations", <https://arxiv.org/abs/1803.02155>).
//!
//! Learned vectors `a^K` (and optionally `a^V`) of the relative distance between query `i` and key
//! `j`, clipped to `±k` (section 3.2), so there are `2k + 1` of each, `head_dim` wide and shared by
//! all heads of a layer:
//!
//! `a^K_ij = w^K_clip(j - i, k)`, `a^V_ij = w^V_clip(j - i, k)`, `clip(x, k) = max(-k, min(k, x))`,
//! with `i` and `j` standing for the absolute positions `q_offset + i` and `k_offset + j`;
//!
//! `e_ij = q_i · (k_j + a^K_ij) / sqrt(d)` (eq. 4), `z_i = Σ_j α_ij (v_j + a^V_ij)` (eq. 3)
//!
//! This module supplies the two extra terms: `q_i · a^K_ij` (to add to the scores) and
//! `Σ_j α_ij a^V_ij` (to add to the attention output). Both use one `(q_len, k_len, head_dim)`
//! gather and a batched matmul with the query axis as the batch, as in section 3.3 of the paper.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Row of the embedding tables for each (query, key) pair, row-major `q_len × k_len`:
/// `clip((k_offset + j) - (q_offset + i), -max_distance, max_distance) + max_distance`.
pub fn relative_indices(
    q_len: usize,
    k_len: usize,
    q_offset: usize,
    k_offset: usize,
    max_distance: usize,
) -> Vec<u32> {
    let max = max_distance as i64;
    (0..q_len)
        .flat_map(|i| {
            (0..k_len).map(move |j| {
                let distance = (k_offset + j) as i64 - (q_offset + i) as i64;
                (distance.clamp(-max, max) + max) as u32
            })
        })
        .collect()
}

/// Learned relative position embeddings of one attention layer.
#[derive(Debug, Clone)]
pub struct RelativePositions {
    /// `a^K`, `(2 · max_distance + 1, head_dim)`.
    keys: Tensor,
    /// `a^V`, same shape, when the values get them too.
    values: Option<Tensor>,
    max_distance: usize,
}

impl RelativePositions {
    /// Embeddings of the distances `-max_distance..=max_distance` for heads of width `head_dim`,
    /// created under `vb` as `keys` (and `values` when `with_values`), drawn from
    /// N(0, 1/head_dim) so each vector has about unit norm (the paper does not say).
    pub fn new(max_distance: usize, head_dim: usize, with_values: bool, vb: VarBuilder) -> Result<Self> {
        let shape = (2 * max_distance + 1, head_dim);
        let init = Init::Randn { mean: 0.0, stdev: (head_dim as f64).powf(-0.5) };
        let keys = vb.get_with_hints(shape, "keys", init)?;
        let values = if with_values { Some(vb.get_with_hints(shape, "values", init)?) } else { None };
        Ok(Self { keys, values, max_distance })
    }

    /// The score term `q_i · a^K_ij`. `queries` must already be scaled by `1 / sqrt(head_dim)`,
    /// as for the content scores, so the sum of both is eq. 4's `e_ij`.
    ///
    /// # Shapes
    /// `queries`: `(b_sz, n_heads, q_len, head_dim)`; returns `(b_sz, n_heads, q_len, k_len)`.
    pub fn score_bias(
        &self,
        queries: &Tensor,
        k_len: usize,
        q_offset: usize,
        k_offset: usize,
    ) -> Result<Tensor> {
        let (b_sz, n_heads, q_len, head_dim) = queries.dims4()?;
        let table = self.gather(&self.keys, q_len, k_len, q_offset, k_offset)?; // (q_len, k_len, head_dim)
        let queries = queries.reshape((b_sz * n_heads, q_len, head_dim))?.transpose(0, 1)?.contiguous()?;
        let scores = queries.matmul(&table.transpose(1, 2)?)?; // (q_len, b_sz * n_heads, k_len)
        scores.transpose(0, 1)?.reshape((b_sz, n_heads, q_len, k_len))
    }

    /// The output term `Σ_j α_ij a^V_ij` of eq. 3, or `None` when built without value embeddings.
    ///
    /// # Shapes
    /// `weights` (the attention probabilities α): `(b_sz, n_heads, q_len, k_len)`; returns
    /// `(b_sz, n_heads, q_len, head_dim)`.
    pub fn value_term(&self, weights: &Tensor, q_offset: usize, k_offset: usize) -> Result<Option<Tensor>> {
        let Some(values) = &self.values else {
            return Ok(None);
        };
        let (b_sz, n_heads, q_len, k_len) = weights.dims4()?;
        let table = self.gather(values, q_len, k_len, q_offset, k_offset)?; // (q_len, k_len, head_dim)
        let head_dim = table.dim(2)?;
        let weights = weights.reshape((b_sz * n_heads, q_len, k_len))?.transpose(0, 1)?.contiguous()?;
        let out = weights.matmul(&table)?; // (q_len, b_sz * n_heads, head_dim)
        Ok(Some(out.transpose(0, 1)?.reshape((b_sz, n_heads, q_len, head_dim))?))
    }

    /// `a^K`, `(2 · max_distance + 1, head_dim)`: row `r` embeds distance `r - max_distance`.
    pub fn keys(&self) -> &Tensor {
        &self.keys
    }

    /// `a^V`, shaped like [`Self::keys`], if the layer has them.
    pub fn values(&self) -> Option<&Tensor> {
        self.values.as_ref()
    }

    /// The rows of `table` for every (query, key) pair, `(q_len, k_len, head_dim)`.
    fn gather(
        &self,
        table: &Tensor,
        q_len: usize,
        k_len: usize,
        q_offset: usize,
        k_offset: usize,
    ) -> Result<Tensor> {
        let ids = relative_indices(q_len, k_len, q_offset, k_offset, self.max_distance);
        let ids = Tensor::from_vec(ids, q_len * k_len, table.device())?;
        table.index_select(&ids, 0)?.reshape((q_len, k_len, table.dim(1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    /// f64 embeddings with values, and their variables (`keys`, `values`) for gradient checks.
    fn new_positions(max_distance: usize, head_dim: usize) -> Result<(RelativePositions, Var, Var)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let positions = RelativePositions::new(max_distance, head_dim, true, vb.pp("rel"))?;
        let vars = varmap.data().lock().unwrap();
        Ok((positions, vars["rel.keys"].clone(), vars["rel.values"].clone()))
    }

    /// `clip(j - i, -k, k) + k`, by loops, element by element.
    fn row(i: usize, j: usize, q_offset: usize, max_distance: usize) -> usize {
        let distance = j as i64 - (q_offset + i) as i64;
        (distance.max(-(max_distance as i64)).min(max_distance as i64) + max_distance as i64) as usize
    }

    /// Eq. 4's extra term by loops: `Σ_d q[b, h, i, d] · a^K[row(i, j), d]`.
    fn score_bias_by_loops(
        rel: &RelativePositions,
        queries: &Tensor,
        k_len: usize,
        q_offset: usize,
    ) -> Result<Tensor> {
        let (b_sz, n_heads, q_len, head_dim) = queries.dims4()?;
        let q = queries.reshape((b_sz * n_heads, q_len, head_dim))?.to_vec3::<f64>()?;
        let a = rel.keys().to_vec2::<f64>()?;
        let mut out = vec![0.0; b_sz * n_heads * q_len * k_len];
        for (bh, rows) in q.iter().enumerate() {
            for (i, q_i) in rows.iter().enumerate() {
                for j in 0..k_len {
                    let a_ij = &a[row(i, j, q_offset, rel.max_distance)];
                    out[(bh * q_len + i) * k_len + j] = q_i.iter().zip(a_ij).map(|(x, y)| x * y).sum();
                }
            }
        }
        Tensor::from_vec(out, (b_sz, n_heads, q_len, k_len), &Device::Cpu)
    }

    /// Eq. 3's extra term by loops: `Σ_j α[b, h, i, j] · a^V[row(i, j), d]`.
    fn value_term_by_loops(rel: &RelativePositions, weights: &Tensor, q_offset: usize) -> Result<Tensor> {
        let (b_sz, n_heads, q_len, k_len) = weights.dims4()?;
        let alpha = weights.reshape((b_sz * n_heads, q_len, k_len))?.to_vec3::<f64>()?;
        let a = rel.values().unwrap().to_vec2::<f64>()?;
        let head_dim = a[0].len();
        let mut out = vec![0.0; b_sz * n_heads * q_len * head_dim];
        for (bh, rows) in alpha.iter().enumerate() {
            for (i, alpha_i) in rows.iter().enumerate() {
                for (j, &alpha_ij) in alpha_i.iter().enumerate() {
                    for (d, a_ijd) in a[row(i, j, q_offset, rel.max_distance)].iter().enumerate() {
                        out[(bh * q_len + i) * head_dim + d] += alpha_ij * a_ijd;
                    }
                }
            }
        }
        Tensor::from_vec(out, (b_sz, n_heads, q_len, head_dim), &Device::Cpu)
    }

    /// Section 3.1's clipping, by hand: with k = 2, distances -5..=5 clip to -2, -2, -2, -2, -1,
    /// 0, 1, 2, 2, 2, 2 and shift by +2.
    #[test]
    fn indices_clip_at_the_maximum_distance() {
        // One query at position 5, keys at 0..=10: distances -5..=5.
        assert_eq!(relative_indices(1, 11, 5, 0, 2), [0, 0, 0, 0, 1, 2, 3, 4, 4, 4, 4]);
        // Keys shifted instead of the query: the same distances.
        assert_eq!(relative_indices(1, 11, 0, 0, 2), relative_indices(1, 11, 5, 5, 2));
        // Two queries (positions 1, 2) against three keys (0, 1, 2), k = 1.
        assert_eq!(relative_indices(2, 3, 1, 0, 1), [0, 1, 2, 0, 0, 1]);
    }

    #[test]
    fn terms_agree_with_loops_in_cached_decoding_and_in_full() -> Result<()> {
        let (rel, _, _) = new_positions(3, 4)?;
        // (q_len, k_len, q_offset): one new query at position 5 against 6 cached keys; a block.
        for (seed, (q_len, k_len, q_offset)) in [(1, 6, 5), (4, 7, 3), (5, 5, 0)].into_iter().enumerate() {
            let queries = random((2, 3, q_len, 4), seed as u64)?;
            let got = rel.score_bias(&queries, k_len, q_offset, 0)?;
            assert_eq!(got.dims(), &[2, 3, q_len, k_len]);
            assert!(max_diff(&got, &score_bias_by_loops(&rel, &queries, k_len, q_offset)?)? < 1e-12);

            let weights = random((2, 3, q_len, k_len), 10 + seed as u64)?;
            let got = rel.value_term(&weights, q_offset, 0)?.unwrap();
            assert_eq!(got.dims(), &[2, 3, q_len, 4]);
            assert!(max_diff(&got, &value_term_by_loops(&rel, &weights, q_offset)?)? < 1e-12);
        }
        Ok(())
    }

    #[test]
    fn terms_are_invariant_to_shifting_queries_and_keys_together() -> Result<()> {
        let (rel, _, _) = new_positions(2, 4)?;
        let queries = random((1, 2, 3, 4), 20)?;
        let weights = random((1, 2, 3, 8), 21)?;
        let diff = max_diff(&rel.score_bias(&queries, 8, 1, 0)?, &rel.score_bias(&queries, 8, 41, 40)?)?;
        assert_eq!(diff, 0.0);
        let value = |q_offset, k_offset| rel.value_term(&weights, q_offset, k_offset).map(Option::unwrap);
        assert_eq!(max_diff(&value(1, 0)?, &value(41, 40)?)?, 0.0);
        Ok(())
    }

    #[test]
    fn value_term_is_none_without_value_embeddings() -> Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let rel = RelativePositions::new(4, 8, false, vb)?;
        assert_eq!(rel.keys().dims(), &[9, 8]);
        assert!(rel.values().is_none());
        let weights = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu)?;
        assert!(rel.value_term(&weights, 0, 0)?.is_none());
        Ok(())
    }

    #[test]
    fn score_bias_gradients_match_finite_differences() -> Result<()> {
        let (rel, keys, _) = new_positions(2, 3)?;
        let queries = Var::from_tensor(&random((1, 2, 2, 3), 30)?)?;
        let w = random((1, 2, 2, 6), 31)?;
        check_gradients(&[&keys, &queries], || (rel.score_bias(&queries, 6, 3, 0)? * &w)?.sum_all())
    }

    #[test]
    fn value_term_gradients_match_finite_differences() -> Result<()> {
        let (rel, _, values) = new_positions(2, 3)?;
        let weights = Var::from_tensor(&random((1, 2, 2, 6), 32)?)?;
        let w = random((1, 2, 2, 3), 33)?;
        check_gradients(&[&values, &weights], || (rel.value_term(&weights, 3, 0)?.unwrap() * &w)?.sum_all())
    }
}
