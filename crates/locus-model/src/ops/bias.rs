//! Adding a bias vector to every row, with the bias gradient summed down the rows in parallel.
//!
//! candle's `broadcast_add` computes the same forward, but its backward sums the gradient over
//! the broadcast dimensions with a per-element index computation on one thread: for the biases
//! of a Transformer's linear layers that was a tenth of a training step.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::rows::{column_sums, contiguous, is_fused, row_len, with_elements, Real};

/// `xs + bias`, with `bias` of shape `(width,)` added to every row of `xs: (..., width)`.
pub fn add_bias(xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if is_fused(xs) && bias.dtype() == xs.dtype() {
        xs.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
    } else {
        xs.broadcast_add(bias)
    }
}

struct AddBias;

fn forward<T: Real>(xs: &[T], bias: &[T]) -> Vec<T> {
    let mut ys = xs.to_vec();
    ys.par_chunks_mut(bias.len()).for_each(|row| row.iter_mut().zip(bias).for_each(|(y, &b)| *y += b));
    ys
}

fn bias_gradient<T: Real>(grad: &Tensor, width: usize, device: &candle_core::Device) -> Result<Tensor> {
    let sums = with_elements::<T, _>(grad, |grads| column_sums(grads, width))?;
    Tensor::from_vec(sums, width, device)
}

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "locus-add-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_l: &Layout,
        bias: &CpuStorage,
        bias_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let width = row_len(xs_l.shape())?;
        if bias_l.shape().dims() != [width] {
            bail!("add_bias: bias of shape {:?} for rows of {width}", bias_l.shape())
        }
        let ys = match xs {
            CpuStorage::F32(_) => CpuStorage::F32(forward(contiguous(xs, xs_l)?, contiguous(bias, bias_l)?)),
            CpuStorage::F64(_) => CpuStorage::F64(forward(contiguous(xs, xs_l)?, contiguous(bias, bias_l)?)),
            other => {
                bail!("add_bias: unsupported dtype {:?}", other.dtype())
            }
        };
        Ok((ys, xs_l.shape().clone()))
    }

    fn bwd(
        &self,
        _xs: &Tensor,
        bias: &Tensor,
        _ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let width = bias.elem_count();
        let bias_grad = match grad.dtype() {
            DType::F32 => bias_gradient::<f32>(grad, width, bias.device())?,
            DType::F64 => bias_gradient::<f64>(grad, width, bias.device())?,
            other => bail!("add_bias: unsupported dtype {other:?}"),
        };
        Ok((Some(grad.clone()), Some(bias_grad)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::Var;

    #[test]
    fn adds_the_bias_to_every_row() {
        let xs = random((2, 3, 4), 1).unwrap();
        let bias = random(4, 2).unwrap();
        let want = xs.broadcast_add(&bias).unwrap();
        assert!(max_diff(&add_bias(&xs, &bias).unwrap(), &want).unwrap() == 0.0);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // 70 rows: more than one parallel block of 64 rows.
        let xs = Var::from_tensor(&random((7, 10, 3), 3).unwrap()).unwrap();
        let bias = Var::from_tensor(&random(3, 4).unwrap()).unwrap();
        let weights = random((7, 10, 3), 5).unwrap();
        check_gradients(&[&xs, &bias], || {
            (add_bias(xs.as_tensor(), bias.as_tensor())?.sqr()? * &weights)?.sum_all()
        })
        .unwrap();
    }

    #[test]
    fn a_bias_of_the_wrong_width_is_an_error() {
        let err = add_bias(&random((2, 4), 1).unwrap(), &random(3, 2).unwrap()).unwrap_err();
        assert!(err.to_string().contains("bias of shape [3] for rows of 4"), "{err}");
    }
}
