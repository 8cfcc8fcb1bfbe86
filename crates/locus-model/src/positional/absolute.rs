//! Absolute position encodings, applied to the embeddings: fixed sinusoids (Vaswani et al.
//! 2017, <https://arxiv.org/abs/1706.03762>, section 3.5) or a learned table (BERT, GPT).
//!
//! Either is *added* to the token embeddings (`combine = "add"`, the papers' choice) or
//! *concatenated* with narrower token embeddings (`combine = "concat"`, OpenNMT-py's
//! SinusoidalConcat: tokens fill `d_model - d_pos` dimensions and the position vector the last
//! `d_pos`). With `every_layer`, the encoding is added again at the input of every layer, as
//! the Universal Transformer's timing signal (Dehghani et al. 2019,
//! <https://arxiv.org/abs/1807.03819>).
//!
//! With `position_shift = K`, training uses SHAPE (Kiyono et al. 2021,
//! <https://arxiv.org/abs/2109.05644>): every sequence's positions start at its own random
//! offset `k`, uniform over `0..=K` and drawn from the forward pass's [`DropoutRng`], so the
//! model cannot rely on absolute positions and learns from their differences. Inference
//! (no `DropoutRng`) never shifts.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::dropout::DropoutRng;
use crate::error::{ModelError, Result};

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

/// Where the sines and cosines of the sinusoidal table sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SinusoidalLayout {
    /// Vaswani et al. 2017: `pe[pos, 2i] = sin(pos / 10000^(2i/d))`, `pe[pos, 2i+1] = cos(...)`.
    #[default]
    Interleaved,
    /// tensor2tensor's `get_timing_signal_1d` (and fairseq's): sines in the first half,
    /// cosines in the second, `pe[pos, i] = sin(pos / 10000^(i/(d/2 - 1)))` and
    /// `pe[pos, d/2 + i] = cos(...)` for `i < d/2`.
    Halves,
}

/// Value of the sinusoidal encoding of width `d` at position `pos`, dimension `dim`.
pub fn sinusoid(pos: usize, dim: usize, d: usize, layout: SinusoidalLayout) -> f64 {
    let pos = pos as f64;
    match layout {
        SinusoidalLayout::Interleaved => {
            let angle = pos / 10000f64.powf((dim / 2 * 2) as f64 / d as f64);
            if dim.is_multiple_of(2) {
                angle.sin()
            } else {
                angle.cos()
            }
        }
        SinusoidalLayout::Halves => {
            let half = d / 2;
            let i = dim % half;
            let angle = pos / 10000f64.powf(i as f64 / (half as f64 - 1.0).max(1.0));
            if dim < half {
                angle.sin()
            } else {
                angle.cos()
            }
        }
    }
}

/// Rows `offset..offset + len` of the sinusoidal table of width `d`, as a `(len, d)` tensor.
pub fn sinusoidal_table(
    offset: usize,
    len: usize,
    d: usize,
    layout: SinusoidalLayout,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let values: Vec<f32> = (offset..offset + len)
        .flat_map(|pos| (0..d).map(move |dim| sinusoid(pos, dim, d, layout) as f32))
        .collect();
    Ok(Tensor::from_vec(values, (len, d), device)?.to_dtype(dtype)?)
}

/// Where absolute position vectors come from.
#[derive(Debug, Clone)]
pub enum AbsoluteTable {
    /// Computed sinusoids, defined for every position.
    Sinusoidal(SinusoidalLayout),
    /// A trained `(max_len, width)` table.
    Learned(Tensor),
}

/// A built absolute encoding.
#[derive(Debug, Clone)]
pub struct AbsoluteEncoding {
    table: AbsoluteTable,
    width: usize,
    combine: Combine,
    every_layer: bool,
    position_shift: usize,
}

impl AbsoluteEncoding {
    /// Sinusoids of width `width` (`d_model` to add, `d_pos` to concatenate).
    pub fn sinusoidal(layout: SinusoidalLayout, width: usize, combine: Combine, every_layer: bool) -> Self {
        Self { table: AbsoluteTable::Sinusoidal(layout), width, combine, every_layer, position_shift: 0 }
    }

    /// A learned table of `max_len` positions created under `vb` as `weight`, initialised from
    /// N(0, width^-1/2) like the token embeddings.
    pub fn learned(
        max_len: usize,
        width: usize,
        combine: Combine,
        every_layer: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let init = Init::Randn { mean: 0.0, stdev: (width as f64).powf(-0.5) };
        let table = vb.get_with_hints((max_len, width), "weight", init)?;
        Ok(Self { table: AbsoluteTable::Learned(table), width, combine, every_layer, position_shift: 0 })
    }

    /// The same encoding trained with SHAPE: while training, each sequence starts at its own
    /// random position in `0..=max_shift` (0 turns it off).
    pub fn with_position_shift(self, max_shift: usize) -> Self {
        Self { position_shift: max_shift, ..self }
    }

    /// The largest training shift, SHAPE's `K` (0 when off).
    pub fn position_shift(&self) -> usize {
        self.position_shift
    }

    /// Where the vectors come from.
    pub fn source(&self) -> &AbsoluteTable {
        &self.table
    }

    /// Whether the encoding is added again at the input of every layer.
    pub fn every_layer(&self) -> bool {
        self.every_layer
    }

    /// How the encoding meets the token embeddings.
    pub fn combine(&self) -> Combine {
        self.combine
    }

    /// The position vectors of positions `offset..offset + len`: `(len, width)`.
    ///
    /// # Errors
    /// [`ModelError::PositionOutOfRange`] past the end of a learned table.
    pub fn vectors(&self, offset: usize, len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        match &self.table {
            AbsoluteTable::Sinusoidal(layout) => {
                sinusoidal_table(offset, len, self.width, *layout, dtype, device)
            }
            AbsoluteTable::Learned(table) => {
                let max_len = table.dim(0)?;
                if offset + len > max_len {
                    return Err(ModelError::PositionOutOfRange { position: offset + len - 1, max_len });
                }
                Ok(table.narrow(0, offset, len)?)
            }
        }
    }

    /// The position vectors of a batch of `b_sz` sequences of `len` tokens that start at
    /// `offset`, made once per forward pass. While training (`rng` is `Some`) with a position
    /// shift, sequence `b` starts at `offset + k_b`, the `k_b` drawn by
    /// [`DropoutRng::position_shifts`] (`b_sz` words); otherwise all start at `offset` and
    /// nothing is drawn.
    ///
    /// # Shapes
    /// Returns `(b_sz, len, width)` when shifted, `(1, len, width)` otherwise.
    ///
    /// # Errors
    /// [`ModelError::PositionOutOfRange`] past the end of a learned table; with a shift,
    /// [`ModelError::Config`] naming `position_shift` and `max_len` as soon as `len` positions
    /// shifted by `position_shift` could leave the table, whatever was drawn.
    pub fn positions(
        &self,
        b_sz: usize,
        len: usize,
        offset: usize,
        rng: Option<&mut DropoutRng>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        match rng.filter(|_| self.position_shift > 0) {
            Some(rng) => {
                self.check_shift_fits(offset, len)?;
                let starts: Vec<usize> = rng
                    .position_shifts(b_sz, self.position_shift)
                    .into_iter()
                    .map(|shift| offset + shift)
                    .collect();
                self.rows_from(&starts, len, dtype, device)
            }
            None => Ok(self.vectors(offset, len, dtype, device)?.unsqueeze(0)?),
        }
    }

    /// Rows `starts[b]..starts[b] + len` for every `b`, gathered from one table that spans
    /// them all: `(starts.len(), len, width)`.
    fn rows_from(&self, starts: &[usize], len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        let first = starts.iter().copied().min().unwrap_or(0);
        let last = starts.iter().copied().max().unwrap_or(0);
        let table = self.vectors(first, last - first + len, dtype, device)?;
        let rows: Vec<u32> = starts
            .iter()
            .flat_map(|&start| (start - first..start - first + len).map(|row| row as u32))
            .collect();
        let rows = Tensor::from_vec(rows, starts.len() * len, device)?;
        Ok(table.index_select(&rows, 0)?.reshape((starts.len(), len, self.width))?)
    }

    /// A learned table must hold `len` positions from `offset` shifted by the largest shift.
    fn check_shift_fits(&self, offset: usize, len: usize) -> Result<()> {
        let AbsoluteTable::Learned(table) = &self.table else { return Ok(()) };
        let (max_len, shift) = (table.dim(0)?, self.position_shift);
        let needed = offset + len + shift;
        if needed > max_len {
            return Err(ModelError::Config(format!(
                "positional.position_shift ({shift}) needs positional.max_len of at least {needed} to \
                 train on {len} positions from position {offset}, but max_len is {max_len}; raise \
                 max_len to the longest training sequence + position_shift, or lower position_shift"
            )));
        }
        Ok(())
    }

    /// Combines token embeddings with position vectors from [`AbsoluteEncoding::positions`].
    ///
    /// # Shapes
    /// `xs`: `(b_sz, seq_len, d_model)` to add, `(b_sz, seq_len, d_model - d_pos)` to
    /// concatenate; `positions`: `(b_sz, seq_len, width)` or `(1, seq_len, width)`; returns
    /// `(b_sz, seq_len, d_model)`.
    pub fn embed(&self, xs: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let (b_sz, seq_len, _) = xs.dims3()?;
        Ok(match self.combine {
            Combine::Add => xs.broadcast_add(positions)?,
            Combine::Concat => {
                let positions = positions.broadcast_as((b_sz, seq_len, self.width))?;
                Tensor::cat(&[xs, &positions.contiguous()?], 2)?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn rows(table: Tensor) -> Vec<Vec<f32>> {
        table.to_vec2::<f32>().unwrap()
    }

    fn assert_close(got: &[Vec<f32>], want: &[&[f32]]) {
        for (row, want) in got.iter().zip(want) {
            for (g, w) in row.iter().zip(*want) {
                assert!((g - w).abs() < 1e-6, "{row:?} vs {want:?}");
            }
        }
    }

    /// Expected values computed by hand from the formula, e.g. at pos 1, d = 4:
    /// dims 0/1: angle 1 → sin 1 = 0.8414710, cos 1 = 0.5403023;
    /// dims 2/3: angle 1 / 10000^(2/4) = 0.01 → sin = 0.0099998, cos = 0.9999500.
    #[test]
    fn interleaved_table_matches_vaswani_at_hand_picked_positions() {
        let table =
            sinusoidal_table(0, 3, 4, SinusoidalLayout::Interleaved, DType::F32, &Device::Cpu).unwrap();
        assert_close(
            &rows(table),
            &[
                &[0.0, 1.0, 0.0, 1.0],
                &[0.841_470_96, 0.540_302_3, 0.009_999_833, 0.999_95],
                &[0.909_297_4, -0.416_146_84, 0.019_998_667, 0.999_8],
            ],
        );
        // Position 100, dim 6 of d = 8: angle 100 / 10000^(6/8) = 0.1 → sin 0.1 = 0.0998334.
        assert!((sinusoid(100, 6, 8, SinusoidalLayout::Interleaved) - 0.099_833_4).abs() < 1e-6);
    }

    /// tensor2tensor's layout, d = 6 (half = 3, timescales 10000^(i/2) = 1, 100, 10000):
    /// pos 1 → sin(1), sin(0.01), sin(0.0001), cos(1), cos(0.01), cos(0.0001).
    #[test]
    fn halves_table_matches_tensor2tensor() {
        let table = sinusoidal_table(1, 1, 6, SinusoidalLayout::Halves, DType::F32, &Device::Cpu).unwrap();
        assert_close(&rows(table), &[&[0.841_470_96, 0.009_999_833, 0.000_1, 0.540_302_3, 0.999_95, 1.0]]);
    }

    #[test]
    fn offset_rows_equal_the_full_table() {
        for layout in [SinusoidalLayout::Interleaved, SinusoidalLayout::Halves] {
            let full = sinusoidal_table(0, 104, 8, layout, DType::F32, &Device::Cpu).unwrap();
            let tail = sinusoidal_table(100, 4, 8, layout, DType::F32, &Device::Cpu).unwrap();
            let diff = (tail - full.narrow(0, 100, 4).unwrap()).unwrap().abs().unwrap();
            assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);
        }
    }

    #[test]
    fn concat_fills_the_last_d_pos_dimensions() {
        let pe = AbsoluteEncoding::sinusoidal(SinusoidalLayout::Interleaved, 4, Combine::Concat, false);
        let tokens = Tensor::ones((2, 3, 6), DType::F32, &Device::Cpu).unwrap();
        let positions = pe.positions(2, 3, 0, None, DType::F32, &Device::Cpu).unwrap();
        let xs = pe.embed(&tokens, &positions).unwrap();
        assert_eq!(xs.dims(), &[2, 3, 10]);
        let row = xs.get(1).unwrap().get(1).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(&row[..6], &[1.0; 6]);
        assert!((row[6] - 0.841_471).abs() < 1e-6 && (row[9] - 0.999_95).abs() < 1e-6, "{row:?}");
    }

    #[test]
    fn shifted_rows_start_where_each_sequence_starts() {
        let pe = AbsoluteEncoding::sinusoidal(SinusoidalLayout::Interleaved, 4, Combine::Add, false);
        let rows = pe.rows_from(&[3, 0, 5], 2, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(rows.dims(), &[3, 2, 4]);
        for (b, start) in [3, 0, 5].into_iter().enumerate() {
            let want = sinusoidal_table(start, 2, 4, SinusoidalLayout::Interleaved, DType::F32, &Device::Cpu);
            let diff = (rows.get(b).unwrap() - want.unwrap()).unwrap().abs().unwrap();
            assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6, "sequence {b}");
        }
    }

    /// max_len 8 and position_shift 3: 5 positions fit (5 + 3 = 8), 6 need 9 while training,
    /// whatever is drawn, but fit at inference.
    #[test]
    fn a_learned_table_must_hold_the_largest_shift_while_training() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let pe = AbsoluteEncoding::learned(8, 4, Combine::Add, false, vb).unwrap().with_position_shift(3);
        let mut rng = DropoutRng::new(0);
        assert!(pe.positions(4, 5, 0, Some(&mut rng), DType::F32, &Device::Cpu).is_ok());
        let err = pe.positions(4, 6, 0, Some(&mut rng), DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("position_shift (3) needs positional.max_len of at least 9"), "{err}");
        assert!(pe.positions(4, 6, 0, None, DType::F32, &Device::Cpu).is_ok());
    }

    #[test]
    fn learned_table_rejects_positions_past_max_len() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let pe = AbsoluteEncoding::learned(4, 8, Combine::Add, false, vb).unwrap();
        assert!(pe.positions(1, 3, 1, None, DType::F32, &Device::Cpu).is_ok());
        let err = pe.positions(1, 3, 2, None, DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("position 4") && err.contains("holds max_len 4"), "{err}");
    }
}
