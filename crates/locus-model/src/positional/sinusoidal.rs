//! Fixed sinusoids (Vaswani et al. 2017, <https://arxiv.org/abs/1706.03762>, section 3.5),
//! added to or concatenated with the embeddings ([`absolute`](super::absolute)). Defined for
//! every position; the table is built once per device and dtype and reused
//! ([`TableCache`]).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::absolute::{Absolute, Embedding};
use super::cache::{Span, TableCache};
use super::{cosine_similarity, Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;
use crate::error::Result;

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

/// The rule a sinusoidal table of `d_pos` (concatenated) or `d_model` (added) dimensions
/// breaks, if any.
pub(super) fn validate(
    field: &str,
    layout: SinusoidalLayout,
    d_pos: Option<usize>,
    d_model: usize,
) -> Option<String> {
    let width = d_pos.unwrap_or(d_model);
    let min = match layout {
        SinusoidalLayout::Interleaved => 2,
        SinusoidalLayout::Halves => 4,
    };
    (!width.is_multiple_of(2) || width < min).then(|| {
        format!(
            "{field}: the sinusoidal width ({width}) must be even and at least {min} \
             (sin and cos come in pairs)"
        )
    })
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
) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (offset..offset + len)
        .flat_map(|pos| (0..d).map(move |dim| sinusoid(pos, dim, d, layout) as f32))
        .collect();
    Tensor::from_vec(values, (len, d), device)?.to_dtype(dtype)
}

/// A built sinusoidal encoding.
#[derive(Debug, Clone)]
pub struct Sinusoidal {
    layout: SinusoidalLayout,
    absolute: Absolute,
    table: TableCache,
}

impl Sinusoidal {
    /// Sinusoids laid out by `layout`, meeting the embeddings as `absolute` says.
    pub fn new(layout: SinusoidalLayout, absolute: Absolute) -> Self {
        Self { layout, absolute, table: TableCache::new() }
    }

    /// The position vectors of positions `offset..offset + len`: `(len, width)`.
    pub fn vectors(
        &self,
        offset: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let (width, layout) = (self.absolute.width, self.layout);
        self.table
            .rows(0, offset, len, dtype, device, |n| sinusoidal_table(0, n, width, layout, dtype, device))
    }
}

impl Hooks for Sinusoidal {
    fn add_layer(&mut self, _: VarBuilder) -> Result<()> {
        Ok(())
    }

    fn embed(
        &self,
        b_sz: usize,
        span: Span,
        rng: Option<&mut DropoutRng>,
        dtype: DType,
        device: &Device,
    ) -> Result<Option<Embedding>> {
        let vectors = self.absolute.positions(b_sz, span.q_len, span.q_offset, rng, |first, len| {
            Ok(self.vectors(first, len, dtype, device)?)
        })?;
        Ok(Some(self.absolute.embedding(vectors)))
    }

    fn rotate(&self, _: Span, _: DType, _: &Device) -> Result<Option<Rotation>> {
        Ok(None)
    }

    fn score_bias(&self, _: Span, _: Option<&[usize]>, _: DType, _: &Device) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn relative(&self, _: Span, _: &Device) -> Result<Option<Relative<'_>>> {
        Ok(None)
    }

    fn tables(&self, len: usize, _: Weights) -> Result<Vec<PositionTable>> {
        let vectors = self.vectors(0, len, DType::F32, &Device::Cpu)?;
        Ok(vec![
            PositionTable::new("sinusoidal table", "dimension", "position", vectors.clone()),
            PositionTable::new(
                "cosine similarity of positions",
                "position",
                "position",
                cosine_similarity(&vectors)?,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positional::absolute::Combine;

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

    fn encoding(width: usize, combine: Combine) -> Sinusoidal {
        let d_pos = (combine == Combine::Concat).then_some(width);
        Sinusoidal::new(SinusoidalLayout::Interleaved, Absolute::new(width, combine, d_pos, false, 0))
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

    /// The cached table, narrowed, is bit for bit a table built fresh for those rows, at any
    /// length and offset, before and after it grows.
    #[test]
    fn cached_vectors_equal_a_fresh_table() {
        for layout in [SinusoidalLayout::Interleaved, SinusoidalLayout::Halves] {
            let pe = Sinusoidal::new(layout, Absolute::new(8, Combine::Add, None, false, 0));
            for (offset, len) in [(0, 5), (3, 7), (60, 10), (0, 200), (150, 3), (0, 1)] {
                for dtype in [DType::F32, DType::F64] {
                    let got = pe.vectors(offset, len, dtype, &Device::Cpu).unwrap();
                    let want = sinusoidal_table(offset, len, 8, layout, dtype, &Device::Cpu).unwrap();
                    assert_eq!(got.dtype(), dtype);
                    let (got, want) = (got.to_dtype(DType::F64).unwrap(), want.to_dtype(DType::F64).unwrap());
                    assert_eq!(
                        got.to_vec2::<f64>().unwrap(),
                        want.to_vec2::<f64>().unwrap(),
                        "{offset} {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn concat_fills_the_last_d_pos_dimensions() {
        let pe = encoding(4, Combine::Concat);
        let tokens = Tensor::ones((2, 3, 6), DType::F32, &Device::Cpu).unwrap();
        let embedding = pe.embed(2, Span::same(3, 0), None, DType::F32, &Device::Cpu).unwrap().unwrap();
        let xs = embedding.embed(&tokens).unwrap();
        assert_eq!(xs.dims(), &[2, 3, 10]);
        let row = xs.get(1).unwrap().get(1).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(&row[..6], &[1.0; 6]);
        assert!((row[6] - 0.841_471).abs() < 1e-6 && (row[9] - 0.999_95).abs() < 1e-6, "{row:?}");
    }

    #[test]
    fn shifted_rows_start_where_each_sequence_starts() {
        let pe = encoding(4, Combine::Add);
        let rows = pe
            .absolute
            .rows_from(&[3, 0, 5], 2, |first, len| Ok(pe.vectors(first, len, DType::F32, &Device::Cpu)?))
            .unwrap();
        assert_eq!(rows.dims(), &[3, 2, 4]);
        for (b, start) in [3, 0, 5].into_iter().enumerate() {
            let want = sinusoidal_table(start, 2, 4, SinusoidalLayout::Interleaved, DType::F32, &Device::Cpu);
            let diff = (rows.get(b).unwrap() - want.unwrap()).unwrap().abs().unwrap();
            assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6, "sequence {b}");
        }
    }
}
