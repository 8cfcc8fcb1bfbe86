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
    // SAFETY: every index gemm touches lies within the span of its matrix, checked against
    // the slice lengths above; `dst` is borrowed mutably, so it does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            dst_m.rows,
            dst_m.cols,
            lhs_m.cols,
            dst.as_mut_ptr(),
            dst_m.col_stride as isize,
            dst_m.row_stride as isize,
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
