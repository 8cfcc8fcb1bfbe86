//! A fully connected layer, `y = x Wᵀ + b`, as one operation, optionally followed by ReLU and
//! dropout (the first half of a feed-forward block).
//!
//! Composed, a linear layer over `(batch, time, in)` is a reshape, a transpose of the weight, a
//! matrix product, a broadcast bias add and another reshape: five graph nodes, and candle's
//! backward pass accumulates each node's gradient with a fresh zero tensor and an addition,
//! and sums the bias gradient over the broadcast dimensions one element at a time on one
//! thread. This op is one node: the bias is written into the output before the product
//! accumulates onto it, and the backward pass is two products and a column sum. With ReLU and
//! dropout fused in, the largest activation of a layer (`d_ff` wide) is written once and
//! its gradient masked in place: a positive output was kept, so its gradient is scaled by
//! the dropout factor, and every other gradient is 0.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::dropout::{apply_dropout, DropoutMask};
use super::matmul::{matmul, Strided, Threads};
use super::rows::{column_sums, contiguous, is_fused, row_len, with_elements, Real};

/// `xs · weightᵀ + bias` over the last dimension of `xs`.
///
/// # Shapes
/// `xs`: `(..., in)`; `weight`: `(out, in)`; `bias`: `(out,)`; returns `(..., out)`.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let same_dtype = weight.dtype() == xs.dtype() && bias.dtype() == xs.dtype();
    if is_fused(xs) && same_dtype {
        xs.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, Linear { relu: None })
    } else {
        composed(xs, weight, bias)
    }
}

/// `dropout(relu(xs · weightᵀ + bias))`, with `dropout` a mask over the output's elements.
///
/// # Shapes
/// As [`linear`].
pub fn linear_relu(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    dropout: Option<&DropoutMask>,
) -> Result<Tensor> {
    let same_dtype = weight.dtype() == xs.dtype() && bias.dtype() == xs.dtype();
    if is_fused(xs) && same_dtype {
        let relu = Some(Relu { dropout: dropout.cloned() });
        xs.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, Linear { relu })
    } else {
        let ys = composed(xs, weight, bias)?.relu()?;
        match dropout {
            Some(mask) => apply_dropout(&ys, mask),
            None => Ok(ys),
        }
    }
}

/// [`linear`] from candle operations, for devices and dtypes without the fused kernel.
fn composed(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let mut dims = xs.dims().to_vec();
    let in_dim = dims.pop().unwrap_or(1);
    let rows = xs.reshape((xs.elem_count() / in_dim.max(1), in_dim))?;
    dims.push(weight.dim(0)?);
    rows.matmul(&weight.t()?)?.broadcast_add(bias)?.reshape(dims)
}

struct Linear {
    /// ReLU after the product, then dropout if the mask is given.
    relu: Option<Relu>,
}

struct Relu {
    dropout: Option<DropoutMask>,
}

impl Relu {
    /// `ys = dropout(relu(ys))` in place.
    fn apply<T: Real>(&self, ys: &mut [T]) {
        const CHUNK: usize = 1 << 14;
        ys.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, ys)| {
            for (i, y) in ys.iter_mut().enumerate() {
                let factor = self.dropout.as_ref().map_or(T::one(), |mask| mask.factor(chunk * CHUNK + i));
                *y = if *y > T::zero() { *y * factor } else { T::zero() };
            }
        });
    }

    /// The gradient before ReLU and dropout from the gradient after them and their output.
    fn backward<T: Real>(&self, grads: &[T], ys: &[T]) -> Vec<T> {
        const CHUNK: usize = 1 << 14;
        let scale = T::from(self.dropout.as_ref().map_or(1.0, |mask| mask.scale())).unwrap();
        let mut masked = vec![T::zero(); grads.len()];
        masked.par_chunks_mut(CHUNK).zip(grads.par_chunks(CHUNK).zip(ys.par_chunks(CHUNK))).for_each(
            |(masked, (grads, ys))| {
                for ((m, &g), &y) in masked.iter_mut().zip(grads).zip(ys) {
                    *m = if y > T::zero() { g * scale } else { T::zero() };
                }
            },
        );
        masked
    }
}

/// The sizes of one product: `rows × in` times `(out × in)ᵀ`.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    rows: usize,
    in_dim: usize,
    out_dim: usize,
}

impl Sizes {
    fn input(&self) -> Strided {
        Strided::rows(self.rows, self.in_dim, self.in_dim)
    }

    fn weight(&self) -> Strided {
        Strided::rows(self.out_dim, self.in_dim, self.in_dim)
    }

    fn output(&self) -> Strided {
        Strided::rows(self.rows, self.out_dim, self.out_dim)
    }
}

fn forward<T: Real>(xs: &[T], weight: &[T], bias: &[T], sizes: Sizes, relu: Option<&Relu>) -> Vec<T> {
    let mut ys = vec![T::zero(); sizes.rows * sizes.out_dim];
    ys.par_chunks_mut(sizes.out_dim).for_each(|row| row.copy_from_slice(bias));
    matmul(
        &mut ys,
        sizes.output(),
        xs,
        sizes.input(),
        weight,
        sizes.weight().t(),
        T::one(),
        true,
        Threads::All,
    );
    if let Some(relu) = relu {
        relu.apply(&mut ys);
    }
    ys
}

/// `dx = g W`, `dW = gᵀ x`, `db = Σ_rows g`.
fn backward<T: Real>(xs: &[T], weight: &[T], grads: &[T], sizes: Sizes) -> [Vec<T>; 3] {
    let mut dxs = vec![T::zero(); xs.len()];
    matmul(
        &mut dxs,
        sizes.input(),
        grads,
        sizes.output(),
        weight,
        sizes.weight(),
        T::one(),
        false,
        Threads::All,
    );
    let mut dw = vec![T::zero(); weight.len()];
    matmul(
        &mut dw,
        sizes.weight(),
        grads,
        sizes.output().t(),
        xs,
        sizes.input(),
        T::one(),
        false,
        Threads::All,
    );
    [dxs, dw, column_sums(grads, sizes.out_dim)]
}

fn backward_tensors<T: Real>(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    ys: &Tensor,
    grad: &Tensor,
    relu: Option<&Relu>,
) -> Result<[Tensor; 3]> {
    let (out_dim, in_dim) = weight.dims2()?;
    let sizes = Sizes { rows: xs.elem_count() / in_dim, in_dim, out_dim };
    let grads = match relu {
        Some(relu) => {
            with_elements::<T, _>(grad, |grads| with_elements::<T, _>(ys, |ys| relu.backward(grads, ys)))??
        }
        None => with_elements::<T, _>(grad, |grads| grads.to_vec())?,
    };
    let [dxs, dw, db] = with_elements::<T, _>(xs, |xs| {
        with_elements::<T, _>(weight, |weight| backward(xs, weight, &grads, sizes))
    })??;
    Ok([
        Tensor::from_vec(dxs, xs.shape(), xs.device())?,
        Tensor::from_vec(dw, weight.shape(), weight.device())?,
        Tensor::from_vec(db, bias.shape(), bias.device())?,
    ])
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "locus-linear"
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
        let in_dim = row_len(xs_l.shape())?;
        let (out_dim, weight_in) = weight_l.shape().dims2()?;
        if weight_in != in_dim || bias_l.shape().dims() != [out_dim] {
            bail!(
                "linear: input {:?}, weight {:?}, bias {:?}",
                xs_l.shape(),
                weight_l.shape(),
                bias_l.shape()
            )
        }
        let sizes = Sizes { rows: xs_l.shape().elem_count() / in_dim, in_dim, out_dim };
        let ys = match xs {
            CpuStorage::F32(_) => CpuStorage::F32(forward(
                contiguous(xs, xs_l)?,
                contiguous(weight, weight_l)?,
                contiguous(bias, bias_l)?,
                sizes,
                self.relu.as_ref(),
            )),
            CpuStorage::F64(_) => CpuStorage::F64(forward(
                contiguous(xs, xs_l)?,
                contiguous(weight, weight_l)?,
                contiguous(bias, bias_l)?,
                sizes,
                self.relu.as_ref(),
            )),
            other => bail!("linear: unsupported dtype {:?}", other.dtype()),
        };
        let mut dims = xs_l.shape().dims().to_vec();
        *dims.last_mut().expect("row_len checked the rank") = out_dim;
        Ok((ys, Shape::from(dims)))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let relu = self.relu.as_ref();
        let [dxs, dw, db] = match xs.dtype() {
            DType::F32 => backward_tensors::<f32>(xs, weight, bias, ys, grad, relu)?,
            DType::F64 => backward_tensors::<f64>(xs, weight, bias, ys, grad, relu)?,
            other => bail!("linear: unsupported dtype {other:?}"),
        };
        Ok((Some(dxs), Some(dw), Some(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::Var;
    use candle_nn::Module;

    #[test]
    fn matches_candle_linear_on_batched_input() {
        let (weight, bias) = (random((3, 4), 1).unwrap(), random(3, 2).unwrap());
        let xs = random((2, 5, 4), 3).unwrap();
        let want = candle_nn::Linear::new(weight.clone(), Some(bias.clone())).forward(&xs).unwrap();
        let got = linear(&xs, &weight, &bias).unwrap();
        assert_eq!(got.dims(), [2, 5, 3]);
        assert!(max_diff(&got, &want).unwrap() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // 70 rows: the bias gradient spans more than one parallel block of 64 rows.
        let xs = Var::from_tensor(&random((7, 10, 4), 4).unwrap()).unwrap();
        let weight = Var::from_tensor(&random((3, 4), 5).unwrap()).unwrap();
        let bias = Var::from_tensor(&random(3, 6).unwrap()).unwrap();
        let probe = random((7, 10, 3), 7).unwrap();
        check_gradients(&[&xs, &weight, &bias], || {
            (linear(xs.as_tensor(), weight.as_tensor(), bias.as_tensor())?.sqr()? * &probe)?.sum_all()
        })
        .unwrap();
    }

    fn mask(n: usize) -> DropoutMask {
        DropoutMask::new((0..n).map(|i| i % 5 != 3).collect(), 1.25)
    }

    #[test]
    fn relu_and_dropout_match_their_composition() {
        let (weight, bias) = (random((6, 4), 1).unwrap(), random(6, 2).unwrap());
        let xs = random((2, 5, 4), 3).unwrap();
        let mask = mask(60);
        let want = apply_dropout(&linear(&xs, &weight, &bias).unwrap().relu().unwrap(), &mask).unwrap();
        let got = linear_relu(&xs, &weight, &bias, Some(&mask)).unwrap();
        assert!(max_diff(&got, &want).unwrap() < 1e-12);
        assert!(got.flatten_all().unwrap().to_vec1::<f64>().unwrap().contains(&0.0));
    }

    #[test]
    fn relu_and_dropout_gradient_matches_finite_differences() {
        let xs = Var::from_tensor(&random((3, 5, 4), 8).unwrap()).unwrap();
        let weight = Var::from_tensor(&random((6, 4), 9).unwrap()).unwrap();
        let bias = Var::from_tensor(&random(6, 10).unwrap()).unwrap();
        let (probe, mask) = (random((3, 5, 6), 11).unwrap(), mask(90));
        check_gradients(&[&xs, &weight, &bias], || {
            (linear_relu(xs.as_tensor(), weight.as_tensor(), bias.as_tensor(), Some(&mask))? * &probe)?
                .sum_all()
        })
        .unwrap();
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let err = linear(&random((2, 4), 1).unwrap(), &random((3, 4), 2).unwrap(), &random(2, 3).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("bias [2]"), "{err}");
    }
}
