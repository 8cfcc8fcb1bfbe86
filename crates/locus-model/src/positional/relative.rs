//! Relative position representations (Shaw, Uszkoreit and Vaswani 2018, "Self-Attention with
//! Relative Position Representations", <https://arxiv.org/abs/1803.02155>).
//!
//! Learned vectors `a^K` (and optionally `a^V`) of the relative distance between query `i` and key
//! `j`, clipped to `±k` (section 3.2), so there are `2k + 1` of each, `head_dim` wide and shared by
//! all heads of a layer; every self-attention layer of the stack has its own:
//!
//! `a^K_ij = w^K_clip(j - i, k)`, `a^V_ij = w^V_clip(j - i, k)`, `clip(x, k) = max(-k, min(k, x))`,
//! with `i` and `j` standing for the absolute positions `q_offset + i` and `k_offset + j`;
//!
//! `e_ij = q_i · (k_j + a^K_ij) / sqrt(d)` (eq. 4), `z_i = Σ_j α_ij (v_j + a^V_ij)` (eq. 3)
//!
//! This module supplies the two extra terms: `q_i · a^K_ij` (to add to the scores) and
//! `Σ_j α_ij a^V_ij` (to add to the attention output). Both use one `(q_len, k_len, head_dim)`
//! gather and a batched matmul with the query axis as the batch, as in section 3.3 of the paper.
//! Attention reaches them through the stack's frame ([`super::Frame::layer`]); the table rows
//! each (query, key) pair reads are computed once per device and reused ([`TableCache`]).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::absolute::Embedding;
use super::cache::{Span, TableCache};
use super::{cosine_similarity, Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;

pub(super) fn default_max_distance() -> usize {
    16
}

pub(super) fn default_values() -> bool {
    true
}

/// The rule `max_distance` breaks, if any.
pub(super) fn validate(field: &str, max_distance: usize) -> Option<String> {
    (max_distance == 0).then(|| format!("{field}.max_distance (0) must be at least 1"))
}

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

/// The rows of the relative tables each (query, key) pair of one forward pass reads.
#[derive(Debug, Clone)]
pub struct RelativeIds {
    /// `q_len · k_len` `u32` rows, row-major.
    ids: Tensor,
    q_len: usize,
    k_len: usize,
}

impl RelativeIds {
    /// Wraps the `(q_len, k_len)` rows (any layout) for gathering.
    pub fn new(ids: &Tensor) -> Result<Self> {
        let (q_len, k_len) = ids.dims2()?;
        Ok(Self { ids: ids.contiguous()?.flatten_all()?, q_len, k_len })
    }
}

/// Learned relative position embeddings of one attention layer.
#[derive(Debug, Clone)]
pub struct RelativePositions {
    /// `a^K`, `(2 · max_distance + 1, head_dim)`.
    keys: Tensor,
    /// `a^V`, same shape, when the values get them too.
    values: Option<Tensor>,
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
        Ok(Self { keys, values })
    }

    /// The score term `q_i · a^K_ij`. `queries` must already be scaled by `1 / sqrt(head_dim)`,
    /// as for the content scores, so the sum of both is eq. 4's `e_ij`.
    ///
    /// # Shapes
    /// `queries`: `(b_sz, n_heads, q_len, head_dim)`; returns `(b_sz, n_heads, q_len, k_len)`.
    pub fn score_bias(&self, queries: &Tensor, ids: &RelativeIds) -> Result<Tensor> {
        let (b_sz, n_heads, q_len, head_dim) = queries.dims4()?;
        let table = gather(&self.keys, ids)?; // (q_len, k_len, head_dim)
        let queries = queries.reshape((b_sz * n_heads, q_len, head_dim))?.transpose(0, 1)?.contiguous()?;
        let scores = queries.matmul(&table.transpose(1, 2)?)?; // (q_len, b_sz * n_heads, k_len)
        scores.transpose(0, 1)?.reshape((b_sz, n_heads, q_len, ids.k_len))
    }

    /// The output term `Σ_j α_ij a^V_ij` of eq. 3, or `None` when built without value embeddings.
    ///
    /// # Shapes
    /// `weights` (the attention probabilities α): `(b_sz, n_heads, q_len, k_len)`; returns
    /// `(b_sz, n_heads, q_len, head_dim)`.
    pub fn value_term(&self, weights: &Tensor, ids: &RelativeIds) -> Result<Option<Tensor>> {
        let Some(values) = &self.values else {
            return Ok(None);
        };
        let (b_sz, n_heads, q_len, k_len) = weights.dims4()?;
        let table = gather(values, ids)?; // (q_len, k_len, head_dim)
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
}

/// The rows of `table` for every (query, key) pair, `(q_len, k_len, head_dim)`.
fn gather(table: &Tensor, ids: &RelativeIds) -> Result<Tensor> {
    table.index_select(&ids.ids, 0)?.reshape((ids.q_len, ids.k_len, table.dim(1)?))
}

/// Shaw et al.'s relative positions of a stack: the settings, and each self-attention layer's
/// vectors, created as the stack creates its layers ([`Hooks::add_layer`]).
#[derive(Debug, Clone)]
pub struct Shaw {
    max_distance: usize,
    values: bool,
    head_dim: usize,
    layers: Vec<RelativePositions>,
    ids: TableCache,
}

impl Shaw {
    /// Relative positions clipped at `max_distance` for heads of width `head_dim`, with value
    /// vectors when `values`; no layer has its vectors yet.
    pub fn new(max_distance: usize, values: bool, head_dim: usize) -> Self {
        Self { max_distance, values, head_dim, layers: Vec::new(), ids: TableCache::new() }
    }

    /// Each layer's vectors, in layer order.
    pub fn layers(&self) -> &[RelativePositions] {
        &self.layers
    }

    /// The rows read by the queries and keys of `span`, from the cached table of distances.
    pub fn ids(&self, span: Span, device: &Device) -> Result<RelativeIds> {
        let max_distance = self.max_distance;
        let ids = self.ids.distances(0, span, DType::U32, device, |n| {
            Tensor::from_vec(relative_indices(n, n, 0, 0, max_distance), (n, n), device)
        })?;
        RelativeIds::new(&ids)
    }
}

impl Hooks for Shaw {
    /// Creates the layer's `keys` (and `values`) under `vb`.
    fn add_layer(&mut self, vb: VarBuilder) -> crate::Result<()> {
        self.layers.push(RelativePositions::new(self.max_distance, self.head_dim, self.values, vb)?);
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
        _: Span,
        _: Option<&[usize]>,
        _: DType,
        _: &Device,
    ) -> crate::Result<Option<Tensor>> {
        Ok(None)
    }

    fn relative(&self, span: Span, device: &Device) -> crate::Result<Option<Relative<'_>>> {
        Ok(Some(Relative { layers: &self.layers, ids: self.ids(span, device)? }))
    }

    /// The clipped distances, then the first layer's `a^K`, their similarity and `a^V`.
    fn tables(&self, len: usize, weights: Weights) -> crate::Result<Vec<PositionTable>> {
        let k = self.max_distance;
        let distances: Vec<f32> =
            relative_indices(len, len, 0, 0, k).iter().map(|&index| index as f32 - k as f32).collect();
        let mut tables = vec![PositionTable::pairs(
            format!("clipped distance j - i (max {k})"),
            Tensor::from_vec(distances, (len, len), &Device::Cpu)?,
        )];
        if let Some(first) = self.layers.first() {
            let learned = weights.describe();
            tables.push(PositionTable::new(
                format!("a^K ({learned}), distance -k..k"),
                "dimension",
                "distance + k",
                first.keys().clone(),
            ));
            tables.push(PositionTable::new(
                "similarity of a^K rows",
                "distance + k",
                "distance + k",
                cosine_similarity(first.keys())?,
            ));
            if let Some(values) = first.values() {
                tables.push(PositionTable::new(
                    format!("a^V ({learned})"),
                    "dimension",
                    "distance + k",
                    values.clone(),
                ));
            }
        }
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::Var;
    use candle_nn::VarMap;

    /// A stack's relative positions with one layer, whose terms are asked for by offsets.
    struct Layer {
        shaw: Shaw,
        max_distance: usize,
    }

    impl Layer {
        fn new(max_distance: usize, head_dim: usize, values: bool, vb: VarBuilder) -> crate::Result<Self> {
            let mut shaw = Shaw::new(max_distance, values, head_dim);
            shaw.add_layer(vb)?;
            Ok(Self { shaw, max_distance })
        }

        fn rel(&self) -> &RelativePositions {
            &self.shaw.layers()[0]
        }

        fn ids(&self, q_len: usize, k_len: usize, q_offset: usize, k_offset: usize) -> Result<RelativeIds> {
            self.shaw.ids(Span { q_len, k_len, q_offset, k_offset }, &Device::Cpu)
        }

        fn score_bias(
            &self,
            queries: &Tensor,
            k_len: usize,
            q_offset: usize,
            k_offset: usize,
        ) -> Result<Tensor> {
            let ids = self.ids(queries.dim(2)?, k_len, q_offset, k_offset)?;
            self.rel().score_bias(queries, &ids)
        }

        fn value_term(&self, weights: &Tensor, q_offset: usize, k_offset: usize) -> Result<Option<Tensor>> {
            let (_, _, q_len, k_len) = weights.dims4()?;
            self.rel().value_term(weights, &self.ids(q_len, k_len, q_offset, k_offset)?)
        }

        fn keys(&self) -> &Tensor {
            self.rel().keys()
        }

        fn values(&self) -> Option<&Tensor> {
            self.rel().values()
        }
    }

    /// f64 embeddings with values, and their variables (`keys`, `values`) for gradient checks.
    fn new_positions(max_distance: usize, head_dim: usize) -> crate::Result<(Layer, Var, Var)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let positions = Layer::new(max_distance, head_dim, true, vb.pp("rel"))?;
        let vars = varmap.data().lock().unwrap();
        Ok((positions, vars["rel.keys"].clone(), vars["rel.values"].clone()))
    }

    /// `clip(j - i, -k, k) + k`, by loops, element by element.
    fn row(i: usize, j: usize, q_offset: usize, max_distance: usize) -> usize {
        let distance = j as i64 - (q_offset + i) as i64;
        (distance.max(-(max_distance as i64)).min(max_distance as i64) + max_distance as i64) as usize
    }

    /// Eq. 4's extra term by loops: `Σ_d q[b, h, i, d] · a^K[row(i, j), d]`.
    fn score_bias_by_loops(rel: &Layer, queries: &Tensor, k_len: usize, q_offset: usize) -> Result<Tensor> {
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
    fn value_term_by_loops(rel: &Layer, weights: &Tensor, q_offset: usize) -> Result<Tensor> {
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
    fn terms_agree_with_loops_in_cached_decoding_and_in_full() -> crate::Result<()> {
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
    fn terms_are_invariant_to_shifting_queries_and_keys_together() -> crate::Result<()> {
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
    fn value_term_is_none_without_value_embeddings() -> crate::Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let rel = Layer::new(4, 8, false, vb)?;
        assert_eq!(rel.keys().dims(), &[9, 8]);
        assert!(rel.values().is_none());
        let weights = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu)?;
        assert!(rel.value_term(&weights, 0, 0)?.is_none());
        Ok(())
    }

    #[test]
    fn score_bias_gradients_match_finite_differences() -> Result<()> {
        let (rel, keys, _) = new_positions(2, 3).unwrap();
        let queries = Var::from_tensor(&random((1, 2, 2, 3), 30)?)?;
        let w = random((1, 2, 2, 6), 31)?;
        check_gradients(&[&keys, &queries], || (rel.score_bias(&queries, 6, 3, 0)? * &w)?.sum_all())
    }

    #[test]
    fn value_term_gradients_match_finite_differences() -> Result<()> {
        let (rel, _, values) = new_positions(2, 3).unwrap();
        let weights = Var::from_tensor(&random((1, 2, 2, 6), 32)?)?;
        let w = random((1, 2, 2, 3), 33)?;
        check_gradients(&[&values, &weights], || (rel.value_term(&weights, 3, 0)?.unwrap() * &w)?.sum_all())
    }

    /// The cached ids, narrowed, are those computed directly for the same positions.
    #[test]
    fn cached_ids_equal_fresh_ones() -> Result<()> {
        let shaw = Shaw::new(3, true, 4);
        for (q_len, k_len, q_offset, k_offset) in
            [(5, 5, 0, 0), (1, 80, 79, 0), (3, 3, 500, 500), (2, 9, 4, 0)]
        {
            let ids = shaw.ids(Span { q_len, k_len, q_offset, k_offset }, &Device::Cpu)?;
            assert_eq!(ids.ids.to_vec1::<u32>()?, relative_indices(q_len, k_len, q_offset, k_offset, 3));
        }
        Ok(())
    }
}
