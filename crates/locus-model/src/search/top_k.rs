//! The most probable few next tokens of each row of a logit matrix, selected where the matrix
//! lives, with their log-probabilities.
//!
//! Beam search needs, per hypothesis, only its best `2 × beam + 1` next tokens and their
//! log-probabilities, not the whole vocabulary's; greedy search on the CPU needs the best one
//! ([`most_probable`]). Ranking a row by logit is ranking it by
//! log-probability (`log_softmax` subtracts one constant per row, its log-sum-exp), so
//! [`row_top_k_log_probs`] selects on the logits, then subtracts each row's log-sum-exp from
//! the few it keeps: the `rows × vocab` log-probability matrix is never written. Copying
//! `rows × vocab` scores to the host at every step would be the largest transfer of a GPU
//! decode loop; the selection runs on the tensor's own device and brings back `rows × k` values
//! and ids, and one normaliser per row.

use candle_core::{DType, Tensor, D};
use rayon::prelude::*;

use crate::error::Result;
use crate::ops::rows::with_elements;
use crate::ops::sum_exp::sum_exp;

/// The `k` largest entries of every row, best first, as log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct RowTopK {
    /// Entries kept per row.
    pub k: usize,
    /// `rows × k` log-probabilities, row-major.
    pub values: Vec<f32>,
    /// `rows × k` column indices of the values.
    pub indices: Vec<u32>,
    /// Each row's log-sum-exp: any entry's log-probability is its logit minus this.
    pub log_normalizers: Vec<f32>,
}

impl RowTopK {
    /// Row `row`'s entries as `(index, log-probability)`, best first.
    pub fn row(&self, row: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let span = row * self.k..(row + 1) * self.k;
        self.indices[span.clone()].iter().copied().zip(self.values[span].iter().copied())
    }
}

/// The `min(k, columns)` largest entries of each row of the `(rows, columns)` matrix `logits`,
/// best first (equal values in column order), with their log-probabilities under a softmax over
/// the row: `logit − log Σ exp(row)`.
///
/// On the CPU the matrix already is host memory: one pass per row keeps its best `k`, a second
/// sums `exp(x − max)` (`ops::sum_exp`, vectorised). On another device, `k` rounds of arg-max
/// (each masking its winners) and the log-sum-exp run there, and only the winners and
/// normalisers are copied back. Both give the same entries (`-inf` entries may repeat on a device when a row has fewer
/// than `k` finite values) and log-probabilities equal up to rounding.
pub fn row_top_k_log_probs(logits: &Tensor, k: usize) -> Result<RowTopK> {
    let logits = logits.to_dtype(DType::F32)?;
    if logits.device().is_cpu() {
        top_k_by_scan(&logits, k)
    } else {
        top_k_by_arg_max(&logits, k)
    }
}

/// Each row's most probable next token and its log-probability (normalised over the whole
/// row, EOS included); a row for which `eos_banned(row)` holds takes its most probable token
/// other than EOS (EOS itself, at `-inf`, if the row has no other). Greedy search's choice,
/// from the logits in place: what `log_softmax`, adding `-inf` at EOS, arg-max and gather
/// give, without writing the normalised matrix.
pub fn most_probable(
    logits: &Tensor,
    eos: u32,
    eos_banned: impl Fn(usize) -> bool,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let top = row_top_k_log_probs(logits, 2)?;
    Ok((0..top.log_normalizers.len())
        .map(|row| {
            top.row(row)
                .find(|&(token, _)| token != eos || !eos_banned(row))
                .unwrap_or((eos, f32::NEG_INFINITY))
        })
        .unzip())
}

/// Entries of a row compared at once when looking for one above the worst kept.
const CHUNK: usize = 16;

/// Per row, in parallel: one pass keeping its best `k` in order (a chunk of entries none of
/// which beats the worst kept is passed over with one vector comparison), then its
/// log-sum-exp from the best (its maximum).
fn top_k_by_scan(logits: &Tensor, k: usize) -> Result<RowTopK> {
    let (_, columns) = logits.dims2()?;
    let k = k.min(columns);
    let rows: Vec<(Vec<(f32, u32)>, f32)> = with_elements::<f32, _>(logits, |logits| {
        logits
            .par_chunks(columns)
            .map(|row| {
                let best = best_of_row(row, k);
                let max = best.first().map_or(f32::NEG_INFINITY, |&(value, _)| value);
                let log_normalizer = max + sum_exp(row, max).ln();
                (best, log_normalizer)
            })
            .collect()
    })?;
    let mut top = RowTopK {
        k,
        values: Vec::with_capacity(rows.len() * k),
        indices: Vec::with_capacity(rows.len() * k),
        log_normalizers: Vec::with_capacity(rows.len()),
    };
    for (best, log_normalizer) in rows {
        top.values.extend(best.iter().map(|&(value, _)| value - log_normalizer));
        top.indices.extend(best.iter().map(|&(_, column)| column));
        top.log_normalizers.push(log_normalizer);
    }
    Ok(top)
}

/// The `k` largest entries of `row` as `(value, column)`, best first; ties in column order.
fn best_of_row(row: &[f32], k: usize) -> Vec<(f32, u32)> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (chunk_index, chunk) in row.chunks(CHUNK).enumerate() {
        if let Some(&(worst, _)) = best.last().filter(|_| best.len() == k) {
            if chunk.iter().fold(true, |below, &value| below & (value <= worst)) {
                continue;
            }
        }
        for (offset, &value) in chunk.iter().enumerate() {
            if best.len() == k && best.last().is_some_and(|&(worst, _)| value <= worst) {
                continue;
            }
            let at = best.partition_point(|&(kept, _)| kept >= value);
            best.insert(at, (value, (chunk_index * CHUNK + offset) as u32));
            best.truncate(k);
        }
    }
    best
}

/// `k` rounds of: take each row's arg-max and its value, then set it to `-inf`; and each row's
/// log-sum-exp. Everything stays on the tensor's device until the `rows × k` winners and the
/// normalisers are copied back.
fn top_k_by_arg_max(logits: &Tensor, k: usize) -> Result<RowTopK> {
    let (rows, columns) = logits.dims2()?;
    let k = k.min(columns);
    let device = logits.device();
    let max = logits.max_keepdim(D::Minus1)?;
    let log_normalizers: Vec<f32> = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()?
        + max)?
        .flatten_all()?
        .to_vec1()?;
    let column_ids = Tensor::arange(0u32, columns as u32, device)?.unsqueeze(0)?;
    let masked = Tensor::full(f32::NEG_INFINITY, (rows, columns), device)?;
    let mut remaining = logits.clone();
    let (mut values, mut indices) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for _ in 0..k {
        let winner = remaining.argmax_keepdim(D::Minus1)?;
        values.push(remaining.gather(&winner, 1)?);
        remaining = column_ids.broadcast_eq(&winner)?.where_cond(&masked, &remaining)?;
        indices.push(winner);
    }
    let mut values: Vec<f32> = Tensor::cat(&values, 1)?.flatten_all()?.to_vec1()?;
    for (row, log_normalizer) in values.chunks_mut(k.max(1)).zip(&log_normalizers) {
        row.iter_mut().for_each(|value| *value -= log_normalizer);
    }
    Ok(RowTopK { k, values, indices: Tensor::cat(&indices, 1)?.flatten_all()?.to_vec1()?, log_normalizers })
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

    /// `log Σ exp(row)` in f64.
    fn log_sum_exp(row: &[f32]) -> f64 {
        row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln()
    }

    #[test]
    fn rows_keep_their_best_in_order_with_ties_in_column_order() {
        let rows: [&[f32]; 2] = [&[0.1, 0.7, 0.3, 0.7, -1.0], &[f32::NEG_INFINITY, 2.0, 5.0, 2.0, 4.0]];
        let logits = matrix(&rows);
        for top in [top_k_by_scan(&logits, 3).unwrap(), top_k_by_arg_max(&logits, 3).unwrap()] {
            for (r, (row, want)) in rows.iter().zip([[1, 3, 2], [2, 4, 1]]).enumerate() {
                let lse = log_sum_exp(row);
                assert!((top.log_normalizers[r] as f64 - lse).abs() < 1e-6, "row {r}");
                let kept: Vec<(u32, f32)> = top.row(r).collect();
                assert_eq!(kept.iter().map(|&(column, _)| column).collect::<Vec<_>>(), want, "row {r}");
                for (column, log_prob) in kept {
                    let exact = row[column as usize] as f64 - lse;
                    assert!((log_prob as f64 - exact).abs() < 1e-6, "row {r}, column {column}");
                }
            }
        }
        assert_eq!(top_k_by_scan(&logits, 9).unwrap().k, 5, "k is capped at the row length");
    }

    /// Rows wider than a chunk, with many ties and `-inf`s, and winners planted in every chunk:
    /// the scan keeps exactly what a full stable sort puts first, and the log-probabilities are
    /// those of `log_softmax`.
    #[test]
    fn the_scan_keeps_what_sorting_keeps_with_log_softmax_values() {
        let (rows, columns) = (23, 301);
        let grid = (Tensor::rand(0f32, 8.0, (rows, columns), &Device::Cpu).unwrap().floor().unwrap() * 0.5)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let grid: Vec<Vec<f32>> = grid
            .into_iter()
            .enumerate()
            .map(|(r, mut row)| {
                row[(r * 37) % columns] = 9.0 + r as f32; // a clear maximum, somewhere new each row
                row[(r * 11) % columns] = f32::NEG_INFINITY;
                row
            })
            .collect();
        let logits = matrix(&grid.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let log_probs = crate::ops::log_softmax_last_dim(&logits).unwrap().to_vec2::<f32>().unwrap();
        for k in [1, 2, 7, 20] {
            let top = top_k_by_scan(&logits, k).unwrap();
            for (r, row) in grid.iter().enumerate() {
                let mut sorted: Vec<(f32, u32)> =
                    row.iter().enumerate().map(|(c, &x)| (x, c as u32)).collect();
                sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
                let kept: Vec<(u32, f32)> = top.row(r).collect();
                let want: Vec<u32> = sorted[..k].iter().map(|&(_, c)| c).collect();
                assert_eq!(kept.iter().map(|&(c, _)| c).collect::<Vec<_>>(), want, "row {r}, k = {k}");
                for (column, log_prob) in kept {
                    assert!(
                        (log_prob - log_probs[r][column as usize]).abs() < 1e-5,
                        "row {r}, column {column}"
                    );
                }
            }
        }
    }

    /// Greedy's choice equals `log_softmax`, the EOS ban, arg-max and gather composed.
    #[test]
    fn the_most_probable_token_is_what_log_softmax_and_arg_max_choose() {
        let eos = 2;
        let logits = matrix(&[&[0.5, 1.0, 3.0, 2.0], &[0.1, 4.0, 1.0, 4.0], &[-1.0, 0.0, 5.0, 1.5]]);
        let log_probs = crate::ops::log_softmax_last_dim(&logits).unwrap().to_vec2::<f32>().unwrap();
        let banned = |row: usize| row != 1;
        let (tokens, chosen) = most_probable(&logits, eos, banned).unwrap();
        // Row 0: EOS (3.0) is banned, so 3; row 1: a tie between 1 and 3 goes to 1; row 2: 3.
        assert_eq!(tokens, [3, 1, 3]);
        for (row, (&token, &log_prob)) in tokens.iter().zip(&chosen).enumerate() {
            assert!((log_prob - log_probs[row][token as usize]).abs() < 1e-6, "row {row}");
        }
        let (tokens, _) = most_probable(&logits, eos, |_| false).unwrap();
        assert_eq!(tokens, [2, 1, 2], "unbanned, EOS wins where it is the best");
        let only_eos = matrix(&[&[0.0]]);
        assert_eq!(most_probable(&only_eos, 0, |_| true).unwrap(), (vec![0], vec![f32::NEG_INFINITY]));
    }

    /// The device algorithm (run here on the CPU) selects what the host scan selects, on
    /// random rows with many ties (values on a coarse grid), with the same log-probabilities
    /// up to rounding.
    #[test]
    fn arg_max_rounds_select_what_the_scan_selects() {
        let logits =
            (Tensor::rand(0f32, 8.0, (37, 300), &Device::Cpu).unwrap().floor().unwrap() * 0.5).unwrap();
        for k in [1, 5, 9] {
            let (device, host) = (top_k_by_arg_max(&logits, k).unwrap(), top_k_by_scan(&logits, k).unwrap());
            assert_eq!(device.indices, host.indices, "k = {k}");
            let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
            assert!(close(&device.values, &host.values), "k = {k}");
            assert!(close(&device.log_normalizers, &host.log_normalizers), "k = {k}");
        }
    }
}
