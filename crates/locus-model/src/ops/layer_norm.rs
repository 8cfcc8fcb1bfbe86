//! Layer normalisation (Ba et al. 2016, <https://arxiv.org/abs/1607.06450>) over the last
//! dimension, forward and backward each in one parallel pass over the rows.
//!
//! candle's fused `layer_norm` has no backward pass and `layer_norm_slow` composes ten
//! element-wise operations; this op keeps nothing but its inputs and recomputes each row's mean
//! and variance in the backward pass.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::rows::{contiguous, is_fused, row_len, sum_in_order, with_elements, Real};

/// `(xs - mean) / sqrt(var + eps) * weight + bias` over the last dimension of `xs`, with the
/// biased variance; `weight` and `bias` have the shape `(width,)`.
pub fn layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if is_fused(xs) && weight.dtype() == xs.dtype() && bias.dtype() == xs.dtype() {
        xs.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, LayerNorm { eps })
    } else {
        candle_nn::ops::layer_norm_slow(xs, weight, bias, eps as f32)
    }
}

struct LayerNorm {
    eps: f64,
}

/// Rows per parallel task of the backward pass, which sums weight and bias gradients per task.
pub(super) const ROWS_PER_TASK: usize = 32;

/// The mean and `1 / sqrt(var + eps)` of one row.
pub(super) fn moments<T: Real>(row: &[T], eps: f64) -> (T, T) {
    let n = T::from_f64(row.len() as f64);
    let mean = row.iter().fold(T::zero(), |acc, &x| acc + x) / n;
    let var = row.iter().fold(T::zero(), |acc, &x| acc + (x - mean) * (x - mean)) / n;
    (mean, (var + T::from_f64(eps)).sqrt().recip())
}

fn forward<T: Real>(xs: &[T], weight: &[T], bias: &[T], eps: f64) -> Vec<T> {
    let width = weight.len();
    let mut ys = vec![T::zero(); xs.len()];
    ys.par_chunks_mut(width)
        .zip(xs.par_chunks(width))
        .for_each(|(ys, xs)| normalize_row(xs, weight, bias, eps, ys));
    ys
}

/// `ys = (xs - mean) · rstd · weight + bias` for one row.
pub(super) fn normalize_row<T: Real>(xs: &[T], weight: &[T], bias: &[T], eps: f64, ys: &mut [T]) {
    let (mean, rstd) = moments(xs, eps);
    for (((y, &x), &w), &b) in ys.iter_mut().zip(xs).zip(weight).zip(bias) {
        *y = (x - mean) * rstd * w + b;
    }
}

/// One row of the backward pass: writes the row's `dx` and adds its terms to `dw` and `db`.
/// With `x̂ = (x - mean) · rstd` and `ĝ = g ⊙ w`:
/// `dx = rstd · (ĝ - mean(ĝ) - x̂ · mean(ĝ ⊙ x̂))`, `dw += g ⊙ x̂`, `db += g`.
pub(super) fn row_backward<T: Real>(
    x: &[T],
    g: &[T],
    weight: &[T],
    eps: f64,
    dx: &mut [T],
    dw: &mut [T],
    db: &mut [T],
) {
    let width = weight.len();
    let n = T::from_f64(width as f64);
    let (mean, rstd) = moments(x, eps);
    let (mut sum_g, mut sum_gx) = (T::zero(), T::zero());
    for i in 0..width {
        let x_hat = (x[i] - mean) * rstd;
        let g_hat = g[i] * weight[i];
        sum_g += g_hat;
        sum_gx += g_hat * x_hat;
        dw[i] += g[i] * x_hat;
        db[i] += g[i];
    }
    let (mean_g, mean_gx) = (sum_g / n, sum_gx / n);
    for i in 0..width {
        let x_hat = (x[i] - mean) * rstd;
        dx[i] = rstd * (g[i] * weight[i] - mean_g - x_hat * mean_gx);
    }
}

/// Gradients of the input, weight and bias ([`row_backward`] row by row).
fn backward<T: Real>(xs: &[T], weight: &[T], grads: &[T], eps: f64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let width = weight.len();
    let mut dxs = vec![T::zero(); xs.len()];
    let block = width * ROWS_PER_TASK;
    let partials = dxs.par_chunks_mut(block).zip(xs.par_chunks(block).zip(grads.par_chunks(block))).map(
        |(dxs, (xs, grads))| {
            let mut partial = vec![T::zero(); 2 * width];
            let (dw, db) = partial.split_at_mut(width);
            let rows = dxs.chunks_exact_mut(width).zip(xs.chunks_exact(width).zip(grads.chunks_exact(width)));
            for (dx, (x, g)) in rows {
                row_backward(x, g, weight, eps, dx, dw, db);
            }
            partial
        },
    );
    let mut dw = sum_in_order(partials, 2 * width);
    let db = dw.split_off(width);
    (dxs, dw, db)
}

fn backward_tensors<T: Real>(
    xs: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (dxs, dw, db) = with_elements::<T, _>(xs, |xs| {
        with_elements::<T, _>(weight, |weight| {
            with_elements::<T, _>(grad, |grads| backward(xs, weight, grads, eps))
        })
    })???;
    let device = xs.device();
    Ok((
        Tensor::from_vec(dxs, xs.shape(), device)?,
        Tensor::from_vec(dw, weight.shape(), device)?,
        Tensor::from_vec(db, weight.shape(), device)?,
    ))
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "locus-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_l: &Layout,
        weight: &CpuStorage,
        weight_l: &Layout,
        bias: &CpuStorage,
        bias_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let width = row_len(xs_l.shape())?;
        if weight_l.shape().dims() != [width] || bias_l.shape().dims() != [width] {
            bail!(
                "layer_norm: weight {:?} and bias {:?} for rows of {width}",
                weight_l.shape(),
                bias_l.shape()
            )
        }
        let ys = match xs {
            CpuStorage::F32(_) => CpuStorage::F32(forward(
                contiguous(xs, xs_l)?,
                contiguous(weight, weight_l)?,
                contiguous(bias, bias_l)?,
                self.eps,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(forward(
                contiguous(xs, xs_l)?,
                contiguous(weight, weight_l)?,
                contiguous(bias, bias_l)?,
                self.eps,
            )),
            other => bail!("layer_norm: unsupported dtype {:?}", other.dtype()),
        };
        Ok((ys, xs_l.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dxs, dw, db) = match xs.dtype() {
            DType::F32 => backward_tensors::<f32>(xs, weight, grad, self.eps)?,
            DType::F64 => backward_tensors::<f64>(xs, weight, grad, self.eps)?,
            other => bail!("layer_norm: unsupported dtype {other:?}"),
        };
        Ok((Some(dxs), Some(dw), Some(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::Var;

    #[test]
    fn matches_the_composed_layer_norm() {
        let xs = (random((3, 5, 8), 1).unwrap() * 3.0).unwrap();
        let (weight, bias) = (random(8, 2).unwrap(), random(8, 3).unwrap());
        let want = candle_nn::ops::layer_norm_slow(&xs, &weight, &bias, 1e-5).unwrap();
        assert!(max_diff(&layer_norm(&xs, &weight, &bias, 1e-5).unwrap(), &want).unwrap() < 1e-12);
    }

    /// Hand-computed: the row (1, 2, 3) has mean 2 and variance 2/3, so with eps 0 it
    /// normalises to (-√1.5, 0, √1.5).
    #[test]
    fn hand_computed_row() {
        let xs = Tensor::new(&[[1f64, 2.0, 3.0]], &candle_core::Device::Cpu).unwrap();
        let ones = Tensor::ones(3, DType::F64, &candle_core::Device::Cpu).unwrap();
        let ys = layer_norm(&xs, &ones, &ones.zeros_like().unwrap(), 0.0).unwrap().to_vec2::<f64>().unwrap();
        let s = 1.5f64.sqrt();
        for (got, want) in ys[0].iter().zip([-s, 0.0, s]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // 40 rows: more than one parallel block of 32 rows.
        let xs = Var::from_tensor(&random((4, 10, 6), 4).unwrap()).unwrap();
        let weight = Var::from_tensor(&random(6, 5).unwrap()).unwrap();
        let bias = Var::from_tensor(&random(6, 6).unwrap()).unwrap();
        let probe = random((4, 10, 6), 7).unwrap();
        check_gradients(&[&xs, &weight, &bias], || {
            (layer_norm(xs.as_tensor(), weight.as_tensor(), bias.as_tensor(), 1e-5)? * &probe)?.sum_all()
        })
        .unwrap();
    }
}
