//! Matrix products on slices: a checked, safe front to the `gemm` crate that candle's own
//! matmul uses, single-threaded for kernels that already run one task per core, or on
//! candle's thread count.

/// A matrix stored in a slice: element `(r, c)` is at `r * row_stride + c * col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strided {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl Strided {
    /// A row-major matrix with rows `row_stride` apart.
    pub fn rows(rows: usize, cols: usize, row_stride: usize) -> Self {
        Self { rows, cols, row_stride, col_stride: 1 }
    }

    /// The transpose of the same storage.
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride }
    }

    /// The smallest slice length that holds every element.
    fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
        }
    }
}

/// How many threads one product may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// The calling thread only.
    One,
    /// As many as candle uses for its own matrix products.
    All,
}

/// Most output rows for which [`matmul`] computes a row-major product by a transposed
/// operand (`x · Wᵀ`, `q · Kᵀ`) into a column-major buffer. `gemm` turns a row-major
/// destination into a column-major one by swapping the operands, and then packs the whole of
/// `W` (or `K`) at every call, a cost that does not shrink with the rows: at the few rows of a
/// decoding step it was the largest single cost (36% of `bench translate --batch-size 8` on one
/// thread, `perf record`, 2026-12-06). With the destination column-major, `gemm` reads `W`
/// where it lies and packs only the few rows of `x`; copying the result back costs one pass
/// over the output.
const FEW_ROWS: usize = 64;

/// `dst = beta · lhs · rhs`, or `dst += beta · lhs · rhs` when `accumulate`.
///
/// # Panics
/// If the shapes do not chain or a matrix does not fit in its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: super::rows::Real>(
    dst: &mut [T],
    dst_m: Strided,
    lhs: &[T],
    lhs_m: Strided,
    rhs: &[T],
    rhs_m: Strided,
    beta: T,
    accumulate: bool,
    threads: Threads,
) {
    assert!(
        lhs_m.cols == rhs_m.rows && dst_m.rows == lhs_m.rows && dst_m.cols == rhs_m.cols,
        "matmul shapes"
    );
    assert!(
        dst.len() >= dst_m.span() && lhs.len() >= lhs_m.span() && rhs.len() >= rhs_m.span(),
        "matmul bounds"
    );
    let (rows, cols) = (dst_m.rows, dst_m.cols);
    let through_column_major = (1..=FEW_ROWS).contains(&rows)
        && dst_m.col_stride == 1
        && rhs_m.row_stride == 1
        && rhs_m.col_stride != 1;
    // Where gemm writes: `dst` itself, or a column-major buffer copied back below. Column by
    // column, the buffer is read or written in order, and the `rows` (at most FEW_ROWS) cache
    // lines of `dst` that one column touches stay in the cache.
    let mut buffer = Vec::new();
    let (target, target_m) = if through_column_major {
        buffer = vec![T::zero(); rows * cols];
        if accumulate {
            for (c, column) in buffer.chunks_exact_mut(rows).enumerate() {
                for (r, value) in column.iter_mut().enumerate() {
                    *value = dst[r * dst_m.row_stride + c];
                }
            }
        }
        (buffer.as_mut_slice(), Strided { rows, cols, row_stride: 1, col_stride: rows })
    } else {
        (&mut *dst, dst_m)
    };
    // SAFETY: every index gemm touches lies within the span of its matrix, checked against
    // the slice lengths above (the buffer holds exactly its matrix); `target` is borrowed
    // mutably, so it does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            target_m.rows,
            target_m.cols,
            lhs_m.cols,
            target.as_mut_ptr(),
            target_m.col_stride as isize,
            target_m.row_stride as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_m.col_stride as isize,
            lhs_m.row_stride as isize,
            rhs.as_ptr(),
            rhs_m.col_stride as isize,
            rhs_m.row_stride as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            match threads {
                Threads::One => gemm::Parallelism::None,
                Threads::All => gemm::Parallelism::Rayon(candle_core::utils::get_num_threads()),
            },
        )
    }
    if through_column_major {
        for (c, column) in buffer.chunks_exact(rows).enumerate() {
            for (r, &value) in column.iter().enumerate() {
                dst[r * dst_m.row_stride + c] = value;
            }
        }
    }
}

/// Output channels per panel of a weight packed for decoding ([`matmul_panels`]): the height of
/// `gemm`'s f32 AVX-512 tiles (four 16-lane vectors).
pub(crate) const PANEL: usize = 64;

/// `dst (+)= lhs · Wᵀ` for `W` (`out × in`) packed in panels: channels `p·PANEL..` of `W` lie
/// at `panels[p · in · PANEL..]`, input by input, each input's `PANEL` channels contiguous (the
/// last panel padded to `PANEL` channels). `dst` is `rows × out` and `lhs` `rows × in`, both
/// row-major and contiguous; with `accumulate`, the product is added to `dst`.
///
/// One `gemm` per panel, which reads its panel where it lies, so that a product streams `W`
/// in order ([`decoding_layout`](super::decoding_layout) says why); with [`Threads::All`], the
/// panels are shared among candle's threads.
///
/// # Panics
/// If a slice is too short for its matrix.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_panels<T: super::rows::Real>(
    dst: &mut [T],
    lhs: &[T],
    panels: &[T],
    rows: usize,
    in_dim: usize,
    out_dim: usize,
    accumulate: bool,
    threads: Threads,
) {
    let n_panels = out_dim.div_ceil(PANEL);
    assert!(
        dst.len() >= rows * out_dim
            && lhs.len() >= rows * in_dim
            && panels.len() >= n_panels * in_dim * PANEL,
        "matmul_panels bounds"
    );
    let dst = SharedDst(dst.as_mut_ptr());
    let product = |panel: usize| {
        let first = panel * PANEL;
        let cols = PANEL.min(out_dim - first);
        // SAFETY: the panel's `in_dim × PANEL` elements and the `rows × cols` block of `dst`
        // at column `first` lie within the slices (checked above); products of different panels
        // write disjoint columns of `dst`, which nothing else reads or writes meanwhile.
        unsafe {
            gemm::gemm(
                rows,
                cols,
                in_dim,
                dst.at(first),
                1,
                out_dim as isize,
                accumulate,
                lhs.as_ptr(),
                1,
                in_dim as isize,
                panels.as_ptr().add(panel * in_dim * PANEL),
                1,
                PANEL as isize,
                T::one(),
                T::one(),
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    };
    if threads == Threads::All && candle_core::utils::get_num_threads() > 1 {
        use rayon::prelude::*;
        (0..n_panels).into_par_iter().for_each(product);
    } else {
        (0..n_panels).for_each(product);
    }
}

/// The destination of [`matmul_panels`], shared by the tasks that write its panels' columns.
#[derive(Clone, Copy)]
struct SharedDst<T>(*mut T);

// SAFETY: the tasks sharing it write disjoint elements (`matmul_panels`).
unsafe impl<T> Send for SharedDst<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SharedDst<T> {}

impl<T> SharedDst<T> {
    /// The element at `offset`. A method, so that closures capture the whole (`Sync`) wrapper.
    ///
    /// # Safety
    /// `offset` lies within the destination.
    unsafe fn at(self, offset: usize) -> *mut T {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The few-rows path (row-major `dst`, transposed `rhs`) against a plain triple loop, at
    /// its edges (1 and FEW_ROWS rows) and just past them, with and without accumulation.
    #[test]
    fn few_rows_by_a_transposed_operand_match_the_definition() {
        let value = |i: usize| ((i * 7919) % 23) as f64 - 11.0;
        let (k, n) = (19, 37);
        for rows in [1, 2, FEW_ROWS, FEW_ROWS + 1] {
            let lhs: Vec<f64> = (0..rows * k).map(value).collect();
            let rhs_t: Vec<f64> = (0..n * k).map(|i| value(i + 5)).collect();
            let start: Vec<f64> = (0..rows * n).map(|i| value(i + 3)).collect();
            for accumulate in [false, true] {
                let mut dst = start.clone();
                let rhs_m = Strided::rows(n, k, k).t();
                let (dst_m, lhs_m) = (Strided::rows(rows, n, n), Strided::rows(rows, k, k));
                matmul(&mut dst, dst_m, &lhs, lhs_m, &rhs_t, rhs_m, 0.5, accumulate, Threads::All);
                for r in 0..rows {
                    for c in 0..n {
                        let dot: f64 = (0..k).map(|i| lhs[r * k + i] * rhs_t[c * k + i]).sum();
                        let want = 0.5 * dot + if accumulate { start[r * n + c] } else { 0.0 };
                        // Small integers: every sum is exact in f64.
                        assert_eq!(dst[r * n + c], want, "{rows} rows, accumulate {accumulate}, ({r}, {c})");
                    }
                }
            }
        }
    }

    /// (2×3) · (3×2) with the right operand read transposed from a row-major (2×3).
    #[test]
    fn hand_computed_product_with_a_transposed_operand() {
        let lhs = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rhs_t = [1.0f64, 0.0, -1.0, 2.0, 1.0, 0.0];
        let mut dst = [10.0f64; 4];
        let m = Strided::rows(2, 3, 3);
        matmul(&mut dst, Strided::rows(2, 2, 2), &lhs, m, &rhs_t, m.t(), 2.0, false, Threads::One);
        // lhs · rhs_tᵀ = [[1 - 3, 2 + 2], [4 - 6, 8 + 5]] = [[-2, 4], [-2, 13]], times 2.
        assert_eq!(dst, [-4.0, 8.0, -4.0, 26.0]);
        matmul(&mut dst, Strided::rows(2, 2, 2), &lhs, m, &rhs_t, m.t(), 1.0, true, Threads::All);
        assert_eq!(dst, [-6.0, 12.0, -6.0, 39.0]);
    }

    /// Packed panels (a partial last one included) against a plain triple loop, on one thread
    /// and on all, with and without accumulation.
    #[test]
    fn panel_products_match_the_definition() {
        let value = |i: usize| ((i * 7919) % 23) as f64 - 11.0;
        let in_dim = 19;
        for (rows, out_dim) in [(1, 64), (3, 70), (13, 150)] {
            let weight: Vec<f64> = (0..out_dim * in_dim).map(|i| value(i + 5)).collect();
            let n_panels = out_dim.div_ceil(PANEL);
            let mut panels = vec![0.0; n_panels * in_dim * PANEL];
            for o in 0..out_dim {
                for i in 0..in_dim {
                    panels[(o / PANEL * in_dim + i) * PANEL + o % PANEL] = weight[o * in_dim + i];
                }
            }
            let lhs: Vec<f64> = (0..rows * in_dim).map(value).collect();
            let start: Vec<f64> = (0..rows * out_dim).map(|i| value(i + 3)).collect();
            for (accumulate, threads) in [(false, Threads::One), (true, Threads::All), (false, Threads::All)]
            {
                let mut dst = start.clone();
                matmul_panels(&mut dst, &lhs, &panels, rows, in_dim, out_dim, accumulate, threads);
                for r in 0..rows {
                    for o in 0..out_dim {
                        let dot: f64 =
                            (0..in_dim).map(|i| lhs[r * in_dim + i] * weight[o * in_dim + i]).sum();
                        let want = dot + if accumulate { start[r * out_dim + o] } else { 0.0 };
                        // Small integers: every sum is exact in f64.
                        assert_eq!(dst[r * out_dim + o], want, "{rows} × {out_dim}, ({r}, {o})");
                    }
                }
            }
        }
    }
}
