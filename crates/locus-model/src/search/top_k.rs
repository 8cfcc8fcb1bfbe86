//! The best few entries of each row of a score matrix, selected where the matrix lives.
//!
//! Beam search needs, per hypothesis, only its best `2 × beam + 1` next tokens, not the whole
//! vocabulary. Copying `rows × vocab` log-probabilities to the host at every step would be the
//! largest transfer of a GPU decode loop; [`row_top_k`] selects on the tensor's own device and
//! brings back `rows × k` values and ids.

use candle_core::{DType, Tensor, D};

use crate::error::Result;
use crate::ops::rows::with_elements;

/// The `k` largest entries of every row, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct RowTopK {
    /// Entries kept per row.
    pub k: usize,
    /// `rows × k` values, row-major.
    pub values: Vec<f32>,
    /// `rows × k` column indices of the values.
    pub indices: Vec<u32>,
}

impl RowTopK {
    /// Row `row`'s entries as `(index, value)`, best first.
    pub fn row(&self, row: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let span = row * self.k..(row + 1) * self.k;
        self.indices[span.clone()].iter().copied().zip(self.values[span].iter().copied())
    }
}

/// The `min(k, columns)` largest entries of each row of the `(rows, columns)` matrix `scores`,
/// best first; equal values come in column order.
///
/// On the CPU the matrix already is host memory and one pass per row keeps its best `k`; on
/// another device, `k` rounds of arg-max (each masking its winners) run there, and only the
/// winners are copied back. Both give the same entries (`-inf` entries may repeat on a device
/// when a row has fewer than `k` finite values).
pub fn row_top_k(scores: &Tensor, k: usize) -> Result<RowTopK> {
    let scores = scores.to_dtype(DType::F32)?;
    if scores.device().is_cpu() {
        top_k_by_scan(&scores, k)
    } else {
        top_k_by_arg_max(&scores, k)
    }
}

/// One pass over each row keeping its best `k` in order: almost every entry is rejected by
/// one comparison with the worst kept.
fn top_k_by_scan(scores: &Tensor, k: usize) -> Result<RowTopK> {
    let (rows, columns) = scores.dims2()?;
    let k = k.min(columns);
    let (mut values, mut indices) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
    with_elements::<f32, _>(scores, |scores| {
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
        for row in scores.chunks_exact(columns) {
            best.clear();
            for (column, &value) in row.iter().enumerate() {
                if best.len() == k && best.last().is_some_and(|&(worst, _)| value <= worst) {
                    continue;
                }
                let at = best.partition_point(|&(kept, _)| kept >= value);
                best.insert(at, (value, column as u32));
                best.truncate(k);
            }
            values.extend(best.iter().map(|&(value, _)| value));
            indices.extend(best.iter().map(|&(_, column)| column));
        }
    })?;
    Ok(RowTopK { k, values, indices })
}

/// `k` rounds of: take each row's arg-max and its value, then set it to `-inf`. Everything
/// stays on the tensor's device until the `rows × k` winners are copied back.
fn top_k_by_arg_max(scores: &Tensor, k: usize) -> Result<RowTopK> {
    let (rows, columns) = scores.dims2()?;
    let k = k.min(columns);
    let device = scores.device();
    let column_ids = Tensor::arange(0u32, columns as u32, device)?.unsqueeze(0)?;
    let masked = Tensor::full(f32::NEG_INFINITY, (rows, columns), device)?;
    let mut remaining = scores.clone();
    let (mut values, mut indices) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for _ in 0..k {
        let winner = remaining.argmax_keepdim(D::Minus1)?;
        values.push(remaining.gather(&winner, 1)?);
        remaining = column_ids.broadcast_eq(&winner)?.where_cond(&masked, &remaining)?;
        indices.push(winner);
    }
    Ok(RowTopK {
        k,
        values: Tensor::cat(&values, 1)?.flatten_all()?.to_vec1()?,
        indices: Tensor::cat(&indices, 1)?.flatten_all()?.to_vec1()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn matrix(rows: &[&[f32]]) -> Tensor {
        Tensor::new(rows.iter().flat_map(|row| row.iter().copied()).collect::<Vec<f32>>(), &Device::Cpu)
            .unwrap()
            .reshape((rows.len(), rows[0].len()))
            .unwrap()
    }

    #[test]
    fn rows_keep_their_best_in_order_with_ties_in_column_order() {
        let scores = matrix(&[&[0.1, 0.7, 0.3, 0.7, -1.0], &[f32::NEG_INFINITY, 2.0, 5.0, 2.0, 4.0]]);
        for top in [top_k_by_scan(&scores, 3).unwrap(), top_k_by_arg_max(&scores, 3).unwrap()] {
            assert_eq!(top.row(0).collect::<Vec<_>>(), [(1, 0.7), (3, 0.7), (2, 0.3)]);
            assert_eq!(top.row(1).collect::<Vec<_>>(), [(2, 5.0), (4, 4.0), (1, 2.0)]);
        }
        assert_eq!(top_k_by_scan(&scores, 9).unwrap().k, 5, "k is capped at the row length");
    }

    /// The device algorithm (run here on the CPU) selects what the host scan selects, on
    /// random rows with many ties (values on a coarse grid).
    #[test]
    fn arg_max_rounds_select_what_the_scan_selects() {
        let scores =
            (Tensor::rand(0f32, 8.0, (37, 300), &Device::Cpu).unwrap().floor().unwrap() * 0.5).unwrap();
        for k in [1, 5, 9] {
            assert_eq!(top_k_by_arg_max(&scores, k).unwrap(), top_k_by_scan(&scores, k).unwrap(), "k = {k}");
        }
    }
}
