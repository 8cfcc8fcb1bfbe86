//! What the fused kernels share: the float types they run on, access to a tensor's contiguous
//! CPU data, and the test for whether a tensor takes the fused path.

use candle_core::{bail, CpuStorage, DType, Layout, Result, Storage, Tensor, WithDType};

/// The float types the fused kernels are written for.
pub(crate) trait Real: WithDType + num_traits::Float + Send + Sync {}

impl Real for f32 {}
impl Real for f64 {}

/// Whether `xs` takes the fused path: on the CPU, in f32 or f64.
pub(crate) fn is_fused(xs: &Tensor) -> bool {
    xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64)
}

/// The elements of a contiguous `storage` laid out by `layout`.
pub(crate) fn contiguous<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    let Some((start, end)) = layout.contiguous_offsets() else { bail!("fused op: input is not contiguous") };
    Ok(&storage.as_slice::<T>()?[start..end])
}

/// Runs `f` on the elements of `xs` (made contiguous first), which must live on the CPU.
pub(crate) fn with_elements<T: WithDType, R>(xs: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let xs = xs.contiguous()?;
    let (storage, layout) = xs.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else { bail!("fused op: tensor is not on the CPU") };
    Ok(f(contiguous(storage, layout)?))
}

/// The length of the last dimension of `xs`, which the kernels treat as rows.
pub(crate) fn row_len(shape: &candle_core::Shape) -> Result<usize> {
    match shape.dims().last() {
        Some(&len) if len > 0 => Ok(len),
        _ => bail!("fused op: expected a non-empty last dimension, got shape {shape:?}"),
    }
}

/// Sums `rows` (a row-major matrix with rows of `width`) down its columns, in parallel and in
/// a fixed order ([`sum_in_order`]).
pub(crate) fn column_sums<T: Real>(rows: &[T], width: usize) -> Vec<T> {
    use rayon::prelude::*;
    const ROWS_PER_TASK: usize = 64;
    let partials = rows.par_chunks(width * ROWS_PER_TASK).map(|block| {
        let mut sums = vec![T::zero(); width];
        for row in block.chunks_exact(width) {
            sums.iter_mut().zip(row).for_each(|(sum, &x)| *sum += x);
        }
        sums
    });
    sum_in_order(partials, width)
}

/// Adds per-task partial sums in task order. rayon's `reduce` would combine them in an order
/// that depends on which thread stole which task, and float addition is not associative:
/// seeded training must repeat bit for bit, so the partials are collected and added in order.
pub(crate) fn sum_in_order<T: Real>(
    partials: impl rayon::iter::IndexedParallelIterator<Item = Vec<T>>,
    width: usize,
) -> Vec<T> {
    partials.collect::<Vec<_>>().into_iter().fold(vec![T::zero(); width], add_into)
}

/// `a += b`, element by element; returns `a`.
pub(crate) fn add_into<T: Real>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sums are exactly (bit for bit) those of adding 64-row block sums left to right,
    /// whatever the threads did: the order a seeded run depends on.
    #[test]
    fn column_sums_add_blocks_in_a_fixed_order() {
        let width = 3;
        let rows: Vec<f32> = (0..10_000 * width).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 + 1e-7).collect();
        let mut want = vec![0f32; width];
        for block in rows.chunks(64 * width) {
            let mut sums = vec![0f32; width];
            for row in block.chunks_exact(width) {
                sums.iter_mut().zip(row).for_each(|(s, &x)| *s += x);
            }
            want.iter_mut().zip(sums).for_each(|(w, s)| *w += s);
        }
        for _ in 0..20 {
            let got = column_sums(&rows, width);
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
