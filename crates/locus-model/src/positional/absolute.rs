//! What the absolute kinds (`sinusoidal`, `learned`) share: how their position vectors meet
//! the token embeddings, at the first layer or at every one, and SHAPE's shifted positions.
//!
//! Either kind's vectors are *added* to the token embeddings (`combine = "add"`, the papers'
//! choice) or *concatenated* with narrower token embeddings (`combine = "concat"`,
//! OpenNMT-py's SinusoidalConcat: tokens fill `d_model - d_pos` dimensions and the position
//! vector the last `d_pos`). With `every_layer`, the encoding is added again at the input of
//! every layer, as the Universal Transformer's timing signal (Dehghani et al. 2019,
//! <https://arxiv.org/abs/1807.03819>).
//!
//! With `position_shift = K`, training uses SHAPE (Kiyono et al. 2021,
//! <https://arxiv.org/abs/2109.05644>): every sequence's positions start at its own random
//! offset `k`, uniform over `0..=K` and drawn from the forward pass's [`DropoutRng`], so the
//! model cannot rely on absolute positions and learns from their differences. Inference
//! (no `DropoutRng`) never shifts.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::dropout::DropoutRng;
use crate::error::Result;

/// How an absolute encoding meets the token embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// `embedding + position`, both `d_model` wide.
    #[default]
    Add,
    /// `[embedding; position]`: `d_model - d_pos` token dimensions, then `d_pos` position ones.
    Concat,
}

/// The rule the combine settings break, if any (`None` when they are sound).
pub(super) fn validate(
    field: &str,
    combine: Combine,
    d_pos: Option<usize>,
    every_layer: bool,
    d_model: usize,
    tie_embeddings: bool,
) -> Option<String> {
    match (combine, d_pos) {
        (Combine::Add, None) => None,
        (Combine::Add, Some(d_pos)) => {
            Some(format!("{field}.d_pos ({d_pos}) is only used with {field}.combine = \"concat\""))
        }
        (Combine::Concat, None) => Some(format!("{field}.combine = \"concat\" needs {field}.d_pos")),
        (Combine::Concat, Some(d_pos)) if d_pos == 0 || d_pos >= d_model => {
            Some(format!("{field}.d_pos ({d_pos}) must be between 1 and model.d_model - 1 ({})", d_model - 1))
        }
        (Combine::Concat, Some(_)) if tie_embeddings => Some(format!(
            "{field}.combine = \"concat\" needs model.tie_embeddings = false \
             (token embeddings are d_model - d_pos wide, the output projection d_model)"
        )),
        (Combine::Concat, Some(_)) if every_layer => {
            Some(format!("{field}.every_layer = true needs {field}.combine = \"add\""))
        }
        (Combine::Concat, Some(_)) => None,
    }
}

/// The settings an absolute kind shares with the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Absolute {
    /// Width of a position vector: `d_model` to add, `d_pos` to concatenate.
    pub width: usize,
    /// How the vectors meet the token embeddings.
    pub combine: Combine,
    /// Whether the vectors are added again at the input of every layer.
    pub every_layer: bool,
    /// SHAPE's largest training shift `K` (0 when off).
    pub position_shift: usize,
}

impl Absolute {
    /// The settings of a stack of width `d_model`.
    pub fn new(
        d_model: usize,
        combine: Combine,
        d_pos: Option<usize>,
        every_layer: bool,
        position_shift: usize,
    ) -> Self {
        let width = match combine {
            Combine::Add => d_model,
            Combine::Concat => d_pos.unwrap_or(d_model),
        };
        Self { width, combine, every_layer, position_shift }
    }

    /// Width of the token embeddings in a stack of width `d_model`.
    pub fn token_width(&self, d_model: usize) -> usize {
        match self.combine {
            Combine::Add => d_model,
            Combine::Concat => d_model - self.width,
        }
    }

    /// The position vectors of a batch of `b_sz` sequences of `len` tokens that start at
    /// `offset`, made once per forward pass; `rows(first, n)` gives rows `first..first + n` of
    /// the kind's table, `(n, width)`. While training (`rng` is `Some`) with a position shift,
    /// sequence `b` starts at `offset + k_b`, the `k_b` drawn by
    /// [`DropoutRng::position_shifts`] (`b_sz` words); otherwise all start at `offset` and
    /// nothing is drawn.
    ///
    /// # Shapes
    /// Returns `(b_sz, len, width)` when shifted, `(1, len, width)` otherwise.
    pub fn positions(
        &self,
        b_sz: usize,
        len: usize,
        offset: usize,
        rng: Option<&mut DropoutRng>,
        rows: impl Fn(usize, usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        match rng.filter(|_| self.position_shift > 0) {
            Some(rng) => {
                let starts: Vec<usize> = rng
                    .position_shifts(b_sz, self.position_shift)
                    .into_iter()
                    .map(|shift| offset + shift)
                    .collect();
                self.rows_from(&starts, len, rows)
            }
            None => Ok(rows(offset, len)?.unsqueeze(0)?),
        }
    }

    /// Rows `starts[b]..starts[b] + len` for every `b`, gathered from one table that spans
    /// them all: `(starts.len(), len, width)`.
    pub(super) fn rows_from(
        &self,
        starts: &[usize],
        len: usize,
        rows: impl Fn(usize, usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let first = starts.iter().copied().min().unwrap_or(0);
        let last = starts.iter().copied().max().unwrap_or(0);
        let table = rows(first, last - first + len)?;
        let ids: Vec<u32> = starts
            .iter()
            .flat_map(|&start| (start - first..start - first + len).map(|row| row as u32))
            .collect();
        let ids = Tensor::from_vec(ids, starts.len() * len, table.device())?;
        Ok(table.index_select(&ids, 0)?.reshape((starts.len(), len, self.width))?)
    }

    /// The embedding hook of a forward pass whose position vectors are `vectors`.
    pub fn embedding(&self, vectors: Tensor) -> Embedding {
        Embedding { vectors, combine: self.combine, every_layer: self.every_layer }
    }
}

/// The embedding hook of one forward pass: position vectors and how they meet the tokens.
#[derive(Debug, Clone)]
pub struct Embedding {
    vectors: Tensor,
    combine: Combine,
    every_layer: bool,
}

impl Embedding {
    /// Combines token embeddings with the position vectors.
    ///
    /// # Shapes
    /// `xs`: `(b_sz, seq_len, d_model)` to add, `(b_sz, seq_len, d_model - d_pos)` to
    /// concatenate; returns `(b_sz, seq_len, d_model)`.
    pub fn embed(&self, xs: &Tensor) -> Result<Tensor> {
        let (b_sz, seq_len, _) = xs.dims3()?;
        Ok(match self.combine {
            Combine::Add => xs.broadcast_add(&self.vectors)?,
            Combine::Concat => {
                let positions = self.vectors.broadcast_as((b_sz, seq_len, self.vectors.dim(2)?))?;
                Tensor::cat(&[xs, &positions.contiguous()?], 2)?
            }
        })
    }

    /// The vectors at positions `ids` (indices into this pass's positions, `b_sz × seq_len`
    /// of them, sequence by sequence), one sequence per row: each sequence at its own positions.
    /// `(b_sz, seq_len)` is `shape`.
    pub fn select_positions(&self, ids: &Tensor, (b_sz, seq_len): (usize, usize)) -> Result<Embedding> {
        let width = self.vectors.dim(2)?;
        let vectors = self.vectors.squeeze(0)?.index_select(ids, 0)?.reshape((b_sz, seq_len, width))?;
        Ok(Embedding { vectors, ..self.clone() })
    }

    /// The input of a layer after the first: with `every_layer`, the vectors added again;
    /// otherwise `xs` unchanged.
    pub fn layer_input(&self, xs: &Tensor) -> Result<Tensor> {
        match self.every_layer {
            true => self.embed(xs),
            false => Ok(xs.clone()),
        }
    }
}
