//! Post-norm's residual connection in one operation: `layer_norm(residual + dropout(update))`.
//!
//! Composed, it is a dropout, an addition and a layer norm: three graph nodes, and in the
//! backward pass candle accumulates the gradient of each of their inputs into a fresh zero
//! tensor. This op is one node, keeps nothing but its inputs (the sum is recomputed in the
//! backward pass), and shares the layer norm's row kernels.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::dropout::{apply_dropout, DropoutMask};
use super::layer_norm::{layer_norm, normalize_row, row_backward, ROWS_PER_TASK};
use super::rows::{contiguous, is_fused, row_len, sum_in_order, with_elements, Real};

/// `layer_norm(residual + dropout(update), weight, bias, eps)` over the last dimension.
///
/// # Shapes
/// `residual`, `update`: `(..., width)`; `weight`, `bias`: `(width,)`; `dropout`: a mask over
/// `update`'s elements.
pub fn add_layer_norm(
    residual: &Tensor,
    update: &Tensor,
    dropout: Option<&DropoutMask>,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    if residual.dims() != update.dims() {
        bail!("add_layer_norm: residual {:?} and update {:?}", residual.dims(), update.dims())
    }
    let same_dtype = [update, weight, bias].iter().all(|t| t.dtype() == residual.dtype());
    if is_fused(residual) && same_dtype && dropout.is_none_or(DropoutMask::is_on_host) {
        let params = Tensor::stack(&[weight, bias], 0)?;
        let op = AddLayerNorm { eps, dropout: dropout.cloned() };
        residual.contiguous()?.apply_op3(&update.contiguous()?, &params, op)
    } else {
        let update = match dropout {
            Some(mask) => apply_dropout(update, mask)?,
            None => update.clone(),
        };
        layer_norm(&(residual + update)?, weight, bias, eps)
    }
}

struct AddLayerNorm {
    eps: f64,
    dropout: Option<DropoutMask>,
}

impl AddLayerNorm {
    /// `sum = residual + dropout(update)` for the row starting at element `first`.
    fn sum_row<T: Real>(&self, residual: &[T], update: &[T], first: usize, sum: &mut [T]) {
        for (i, ((s, &r), &u)) in sum.iter_mut().zip(residual).zip(update).enumerate() {
            *s = match &self.dropout {
                Some(mask) => r + u * mask.factor(first + i),
                None => r + u,
            };
        }
    }

    fn forward<T: Real>(&self, residual: &[T], update: &[T], params: &[T]) -> Vec<T> {
        let width = params.len() / 2;
        let (weight, bias) = params.split_at(width);
        let mut ys = vec![T::zero(); residual.len()];
        ys.par_chunks_mut(width)
            .zip(residual.par_chunks(width).zip(update.par_chunks(width)))
            .enumerate()
            .for_each_init(
                || vec![T::zero(); width],
                |sum, (row, (ys, (residual, update)))| {
                    self.sum_row(residual, update, row * width, sum);
                    normalize_row(sum, weight, bias, self.eps, ys);
                },
            );
        ys
    }

    /// Gradients of the residual, the update and the stacked `[weight; bias]`.
    fn backward<T: Real>(&self, residual: &[T], update: &[T], params: &[T], grads: &[T]) -> [Vec<T>; 3] {
        let width = params.len() / 2;
        let weight = &params[..width];
        let block = width * ROWS_PER_TASK;
        let mut dresidual = vec![T::zero(); residual.len()];
        let mut dupdate = vec![T::zero(); update.len()];
        let partials = dresidual
            .par_chunks_mut(block)
            .zip(dupdate.par_chunks_mut(block))
            .zip(residual.par_chunks(block).zip(update.par_chunks(block)).zip(grads.par_chunks(block)))
            .enumerate()
            .map(|(task, ((dresidual, dupdate), ((residual, update), grads)))| {
                let mut dparams = vec![T::zero(); 2 * width];
                let (dw, db) = dparams.split_at_mut(width);
                let mut sum = vec![T::zero(); width];
                for (row, dsum) in dresidual.chunks_exact_mut(width).enumerate() {
                    let (first, at) = ((task * ROWS_PER_TASK + row) * width, row * width);
                    self.sum_row(&residual[at..at + width], &update[at..at + width], first, &mut sum);
                    row_backward(&sum, &grads[at..at + width], weight, self.eps, dsum, dw, db);
                    for (i, (du, &ds)) in dupdate[at..at + width].iter_mut().zip(dsum.iter()).enumerate() {
                        *du = match &self.dropout {
                            Some(mask) => ds * mask.factor(first + i),
                            None => ds,
                        };
                    }
                }
                dparams
            });
        let dparams = sum_in_order(partials, 2 * width);
        [dresidual, dupdate, dparams]
    }

    fn backward_tensors<T: Real>(
        &self,
        residual: &Tensor,
        update: &Tensor,
        params: &Tensor,
        grad: &Tensor,
    ) -> Result<[Tensor; 3]> {
        let [dresidual, dupdate, dparams] = with_elements::<T, _>(residual, |residual| {
            with_elements::<T, _>(update, |update| {
                with_elements::<T, _>(params, |params| {
                    with_elements::<T, _>(grad, |grads| self.backward(residual, update, params, grads))
                })
            })
        })????;
        Ok([
            Tensor::from_vec(dresidual, residual.shape(), residual.device())?,
            Tensor::from_vec(dupdate, update.shape(), update.device())?,
            Tensor::from_vec(dparams, params.shape(), params.device())?,
        ])
    }
}

impl CustomOp3 for AddLayerNorm {
    fn name(&self) -> &'static str {
        "locus-add-layer-norm"
    }

    fn cpu_fwd(
        &self,
        residual: &CpuStorage,
        residual_l: &Layout,
        update: &CpuStorage,
        update_l: &Layout,
        params: &CpuStorage,
        params_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let width = row_len(residual_l.shape())?;
        if params_l.shape().dims() != [2, width] {
            bail!("add_layer_norm: weight and bias {:?} for rows of {width}", params_l.shape())
        }
        let ys = match residual {
            CpuStorage::F32(_) => CpuStorage::F32(self.forward(
                contiguous(residual, residual_l)?,
                contiguous(update, update_l)?,
                contiguous(params, params_l)?,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(self.forward(
                contiguous(residual, residual_l)?,
                contiguous(update, update_l)?,
                contiguous(params, params_l)?,
            )),
            other => bail!("add_layer_norm: unsupported dtype {:?}", other.dtype()),
        };
        Ok((ys, residual_l.shape().clone()))
    }

    fn bwd(
        &self,
        residual: &Tensor,
        update: &Tensor,
        params: &Tensor,
        _ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [dresidual, dupdate, dparams] = match residual.dtype() {
            DType::F32 => self.backward_tensors::<f32>(residual, update, params, grad)?,
            DType::F64 => self.backward_tensors::<f64>(residual, update, params, grad)?,
            other => bail!("add_layer_norm: unsupported dtype {other:?}"),
        };
        Ok((Some(dresidual), Some(dupdate), Some(dparams)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::Var;

    fn mask(n: usize) -> DropoutMask {
        DropoutMask::new((0..n).map(|i| i % 7 != 4).collect(), 1.5)
    }

    #[test]
    fn matches_dropout_add_and_layer_norm() {
        let (residual, update) = (random((3, 5, 8), 1).unwrap(), random((3, 5, 8), 2).unwrap());
        let (weight, bias) = (random(8, 3).unwrap(), random(8, 4).unwrap());
        let mask = mask(120);
        let sum = (&residual + apply_dropout(&update, &mask).unwrap()).unwrap();
        let want = layer_norm(&sum, &weight, &bias, 1e-5).unwrap();
        let got = add_layer_norm(&residual, &update, Some(&mask), &weight, &bias, 1e-5).unwrap();
        assert!(max_diff(&got, &want).unwrap() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // 40 rows: more than one parallel block of 32 rows, so the mask's row offsets matter.
        let residual = Var::from_tensor(&random((4, 10, 6), 5).unwrap()).unwrap();
        let update = Var::from_tensor(&random((4, 10, 6), 6).unwrap()).unwrap();
        let weight = Var::from_tensor(&random(6, 7).unwrap()).unwrap();
        let bias = Var::from_tensor(&random(6, 8).unwrap()).unwrap();
        let (probe, mask) = (random((4, 10, 6), 9).unwrap(), mask(240));
        check_gradients(&[&residual, &update, &weight, &bias], || {
            let (r, u) = (residual.as_tensor(), update.as_tensor());
            (add_layer_norm(r, u, Some(&mask), weight.as_tensor(), bias.as_tensor(), 1e-5)? * &probe)?
                .sum_all()
        })
        .unwrap();
    }
}
