//! Softmax and log-softmax over the last dimension, forward and backward each in one parallel
//! pass per row.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::rows::{contiguous, is_fused, row_len, with_elements, Real};

/// `softmax(xs)` over the last dimension.
///
/// The backward pass is `dx = y ⊙ (g − Σ g ⊙ y)` per row, from the output `y` and its
/// gradient `g`.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    if is_fused(xs) {
        xs.contiguous()?.apply_op1(SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax(xs, D::Minus1)
    }
}

/// `log(softmax(xs))` over the last dimension: `x - max - log Σ exp(x - max)` per row.
///
/// The backward pass is `dx = g − exp(y) · Σ g` per row, from the output `y` and its
/// gradient `g`.
pub fn log_softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    if is_fused(xs) {
        xs.contiguous()?.apply_op1(LogSoftmaxLastDim)
    } else {
        candle_nn::ops::log_softmax(xs, D::Minus1)
    }
}

struct SoftmaxLastDim;

struct LogSoftmaxLastDim;

fn log_forward<T: Real>(xs: &[T], width: usize) -> Vec<T> {
    let mut ys = vec![T::zero(); xs.len()];
    ys.par_chunks_mut(width).zip(xs.par_chunks(width)).for_each(|(ys, xs)| {
        let max = xs.iter().fold(T::neg_infinity(), |m, &x| num_traits::Float::max(m, x));
        let sum = xs.iter().fold(T::zero(), |acc, &x| acc + (x - max).exp());
        let shift = max + sum.ln();
        ys.iter_mut().zip(xs).for_each(|(y, &x)| *y = x - shift);
    });
    ys
}

fn log_backward<T: Real>(ys: &[T], grads: &[T], width: usize) -> Vec<T> {
    let mut dxs = vec![T::zero(); ys.len()];
    dxs.par_chunks_mut(width).zip(ys.par_chunks(width).zip(grads.par_chunks(width))).for_each(
        |(dxs, (ys, grads))| {
            let total = grads.iter().fold(T::zero(), |acc, &g| acc + g);
            for ((dx, &y), &g) in dxs.iter_mut().zip(ys).zip(grads) {
                *dx = g - y.exp() * total;
            }
        },
    );
    dxs
}

impl CustomOp1 for LogSoftmaxLastDim {
    fn name(&self) -> &'static str {
        "locus-log-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let width = row_len(layout.shape())?;
        let ys = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(log_forward(contiguous::<f32>(storage, layout)?, width)),
            CpuStorage::F64(_) => CpuStorage::F64(log_forward(contiguous::<f64>(storage, layout)?, width)),
            other => bail!("log_softmax: unsupported dtype {:?}", other.dtype()),
        };
        Ok((ys, layout.shape().clone()))
    }

    fn bwd(&self, _xs: &Tensor, ys: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dxs = match ys.dtype() {
            DType::F32 => backward_tensor::<f32>(ys, grad, log_backward)?,
            DType::F64 => backward_tensor::<f64>(ys, grad, log_backward)?,
            other => bail!("log_softmax: unsupported dtype {other:?}"),
        };
        Ok(Some(dxs))
    }
}

fn forward<T: Real>(xs: &[T], width: usize) -> Vec<T> {
    let mut ys = vec![T::zero(); xs.len()];
    ys.par_chunks_mut(width).zip(xs.par_chunks(width)).for_each(|(ys, xs)| {
        let max = xs.iter().fold(T::neg_infinity(), |m, &x| num_traits::Float::max(m, x));
        let mut sum = T::zero();
        for (y, &x) in ys.iter_mut().zip(xs) {
            *y = (x - max).exp();
            sum += *y;
        }
        let inv = sum.recip();
        ys.iter_mut().for_each(|y| *y *= inv);
    });
    ys
}

fn backward<T: Real>(ys: &[T], grads: &[T], width: usize) -> Vec<T> {
    let mut dxs = vec![T::zero(); ys.len()];
    dxs.par_chunks_mut(width).zip(ys.par_chunks(width).zip(grads.par_chunks(width))).for_each(
        |(dxs, (ys, grads))| {
            let dot = ys.iter().zip(grads).fold(T::zero(), |acc, (&y, &g)| acc + y * g);
            for ((dx, &y), &g) in dxs.iter_mut().zip(ys).zip(grads) {
                *dx = y * (g - dot);
            }
        },
    );
    dxs
}

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "locus-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let width = row_len(layout.shape())?;
        let ys = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(forward(contiguous::<f32>(storage, layout)?, width)),
            CpuStorage::F64(_) => CpuStorage::F64(forward(contiguous::<f64>(storage, layout)?, width)),
            other => {
                bail!("softmax: unsupported dtype {:?}", other.dtype())
            }
        };
        Ok((ys, layout.shape().clone()))
    }

    fn bwd(&self, _xs: &Tensor, ys: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dxs = match ys.dtype() {
            DType::F32 => backward_tensor::<f32>(ys, grad, backward)?,
            DType::F64 => backward_tensor::<f64>(ys, grad, backward)?,
            other => bail!("softmax: unsupported dtype {other:?}"),
        };
        Ok(Some(dxs))
    }
}

/// Runs a row-wise backward `kernel` on the output `ys` and its gradient.
fn backward_tensor<T: Real>(
    ys: &Tensor,
    grad: &Tensor,
    kernel: fn(&[T], &[T], usize) -> Vec<T>,
) -> Result<Tensor> {
    let width = row_len(ys.shape())?;
    let dxs = with_elements::<T, _>(ys, |ys| with_elements::<T, _>(grad, |grads| kernel(ys, grads, width)))??;
    Tensor::from_vec(dxs, ys.shape(), ys.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::Var;

    #[test]
    fn matches_candle_softmax() {
        let xs = (random((3, 4, 7), 1).unwrap() * 5.0).unwrap();
        let want = candle_nn::ops::softmax(&xs, D::Minus1).unwrap();
        assert!(max_diff(&softmax_last_dim(&xs).unwrap(), &want).unwrap() < 1e-15);
        let xs32 = xs.to_dtype(DType::F32).unwrap();
        let got = softmax_last_dim(&xs32).unwrap().to_dtype(DType::F64).unwrap();
        assert!(max_diff(&got, &want).unwrap() < 1e-6);
    }

    /// Rows of `-1e9` (masked keys) get weight exactly 0, as with an additive mask.
    #[test]
    fn masked_entries_get_zero_weight() {
        let xs = Tensor::new(&[[0.5f32, -1e9, 0.5]], &candle_core::Device::Cpu).unwrap();
        let ys = softmax_last_dim(&xs).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(ys, vec![vec![0.5, 0.0, 0.5]]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let xs = Var::from_tensor(&random((2, 3, 5), 2).unwrap()).unwrap();
        let weights = random((2, 3, 5), 3).unwrap();
        check_gradients(&[&xs], || (softmax_last_dim(xs.as_tensor())? * &weights)?.sum_all()).unwrap();
    }

    #[test]
    fn log_softmax_matches_candle() {
        let xs = (random((3, 4, 7), 5).unwrap() * 5.0).unwrap();
        let want = candle_nn::ops::log_softmax(&xs, D::Minus1).unwrap();
        assert!(max_diff(&log_softmax_last_dim(&xs).unwrap(), &want).unwrap() < 1e-14);
    }

    #[test]
    fn log_softmax_gradient_matches_finite_differences() {
        let xs = Var::from_tensor(&random((2, 3, 5), 6).unwrap()).unwrap();
        let weights = random((2, 3, 5), 7).unwrap();
        check_gradients(&[&xs], || (log_softmax_last_dim(xs.as_tensor())? * &weights)?.sum_all()).unwrap();
    }

    /// A transposed (non-contiguous) input is made contiguous before the kernel runs.
    #[test]
    fn non_contiguous_input_is_handled() {
        let xs = random((4, 6), 4).unwrap().t().unwrap();
        let want = candle_nn::ops::softmax(&xs, D::Minus1).unwrap();
        assert!(max_diff(&softmax_last_dim(&xs).unwrap(), &want).unwrap() < 1e-15);
    }
}
