//! A fully connected layer, `y = x Wᵀ + b` (or without `b`), as one operation, optionally
//! followed by ReLU and dropout (the first half of a feed-forward block).
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
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::dropout::{apply_dropout, DropoutMask};
use super::matmul::{matmul, matmul_panels, Strided, Threads, PANEL};
use super::rows::{column_sums, contiguous, is_fused, row_len, with_elements, Real};

/// `xs · weightᵀ + bias` over the last dimension of `xs`.
///
/// # Shapes
/// `xs`: `(..., in)`; `weight`: `(out, in)`; `bias`: `(out,)`; returns `(..., out)`.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let same_dtype = weight.dtype() == xs.dtype() && bias.dtype() == xs.dtype();
    if is_fused(xs) && same_dtype {
        xs.contiguous()?.apply_op3(
            &weight_operand(weight)?,
            &bias.contiguous()?,
            Linear { epilogue: Epilogue::None },
        )
    } else {
        composed(xs, weight, bias)
    }
}

/// `xs · weightᵀ` over the last dimension of `xs`: a linear layer without a bias, such as the
/// output projection onto the vocabulary.
///
/// candle's own `matmul` packs the whole of `weight` at every call, which at the few rows of
/// a decoding step cost more than the product itself: projecting 8 rows onto a 6,000-word
/// vocabulary was 29% of greedy decoding (`perf record`, `bench translate --batch-size 8`,
/// 2026-12-07). [`matmul`] reads `weight` where it lies.
///
/// # Shapes
/// `xs`: `(..., in)`; `weight`: `(out, in)`; returns `(..., out)`.
pub fn linear_without_bias(xs: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if is_fused(xs) && weight.dtype() == xs.dtype() {
        xs.contiguous()?.apply_op2(&weight_operand(weight)?, Linear { epilogue: Epilogue::None })
    } else if weight.rank() != 2 {
        bail!("linear: a weight packed for decoding takes f32 or f64 inputs on the CPU")
    } else {
        let mut dims = xs.dims().to_vec();
        let in_dim = dims.pop().unwrap_or(1);
        let rows = xs.reshape((xs.elem_count() / in_dim.max(1), in_dim))?;
        dims.push(weight.dim(0)?);
        rows.matmul(&weight.t()?)?.reshape(dims)
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
    if is_fused(xs) && same_dtype && dropout.is_none_or(DropoutMask::is_on_host) {
        let epilogue = Epilogue::Relu(dropout.cloned());
        xs.contiguous()?.apply_op3(&weight_operand(weight)?, &bias.contiguous()?, Linear { epilogue })
    } else {
        let ys = composed(xs, weight, bias)?.relu()?;
        match dropout {
            Some(mask) => apply_dropout(&ys, mask),
            None => Ok(ys),
        }
    }
}

/// `xs · weightᵀ + bias` split into heads: `(b, t, out)` to `(b, heads, t, out / heads)`, the
/// layout attention reads, written by the op itself instead of a reshape, transpose and copy.
pub fn linear_heads(xs: &Tensor, weight: &Tensor, bias: &Tensor, heads: usize) -> Result<Tensor> {
    let same_dtype = weight.dtype() == xs.dtype() && bias.dtype() == xs.dtype();
    if is_fused(xs) && same_dtype {
        let epilogue = Epilogue::Heads(heads);
        xs.contiguous()?.apply_op3(&weight_operand(weight)?, &bias.contiguous()?, Linear { epilogue })
    } else {
        let (b, time, _) = xs.dims3()?;
        let ys = composed(xs, weight, bias)?;
        ys.reshape((b, time, heads, ()))?.transpose(1, 2)?.contiguous()
    }
}

/// `weight` as the fused op takes it: row-major (contiguous), column-major (its transpose is
/// contiguous), or packed for decoding ([`decoding_layout`]), each read where it lies; any
/// other layout is copied into row-major.
fn weight_operand(weight: &Tensor) -> Result<Tensor> {
    if weight.is_contiguous() || (weight.rank() == 2 && weight.t()?.is_contiguous()) {
        Ok(weight.clone())
    } else {
        weight.contiguous()
    }
}

/// The 2-D `weight` laid out as the products of decoding read it fastest. On the CPU, packed
/// in panels of 64 output channels (`gemm`'s tile height): a contiguous tensor
/// `(panels, in, 64)` holding channel `o`'s weight for input `i` at `[o / 64, i, o % 64]`, the
/// last panel padded with zero channels; [`linear`], [`linear_heads`] and [`linear_relu`]
/// take it in place of the weight (the bias gives the number of channels), and products read
/// it panel by panel, in order, one `gemm` per panel. A column-major weight, which this
/// replaces, had `gemm` jump a whole column (4 KiB at 1,024 channels) from one input to the
/// next, across pages the hardware prefetchers do not follow; at the few rows of a decoding
/// step, which stream the weights more than they compute, panels made the products of the
/// quickstart model's decoder 1.3-1.4× as fast at 8-32 rows, and 0.96-1.02× at 64-900 (one
/// thread, `gemm` 0.19 with AVX-512, 2026-12-07). On other devices, whose products are
/// candle's, the weight itself.
///
/// A packed weight is for decoding only: it has no gradient.
pub fn decoding_layout(weight: &Tensor) -> Result<Tensor> {
    if !weight.device().is_cpu() {
        return Ok(weight.clone());
    }
    let (out_dim, in_dim) = weight.dims2()?;
    let padded = weight.pad_with_zeros(0, 0, out_dim.div_ceil(PANEL) * PANEL - out_dim)?;
    padded.reshape((out_dim.div_ceil(PANEL), PANEL, in_dim))?.transpose(1, 2)?.contiguous()
}

/// A weight as the product reads it: a strided matrix `(out, in)`, or panels
/// ([`decoding_layout`]).
enum Operand<'a, T> {
    Matrix(&'a [T], Strided),
    Panels(&'a [T]),
}

/// The elements of a weight given to the op ([`weight_operand`]) and how they are laid out.
fn weight_matrix<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    sizes: Sizes,
) -> Result<Operand<'a, T>> {
    if layout.shape().rank() == 3 {
        return Ok(Operand::Panels(contiguous(storage, layout)?));
    }
    if layout.is_contiguous() {
        return Ok(Operand::Matrix(contiguous(storage, layout)?, sizes.weight()));
    }
    let (out_dim, in_dim) = (sizes.out_dim, sizes.in_dim);
    if layout.stride() != [1, out_dim] {
        bail!("linear: weight of shape {:?} with strides {:?}", layout.shape(), layout.stride())
    }
    let start = layout.start_offset();
    let elements = storage.as_slice::<T>()?;
    let Some(elements) = elements.get(start..start + out_dim * in_dim) else {
        bail!(
            "linear: weight storage holds {} elements, the layout needs {}",
            elements.len(),
            start + out_dim * in_dim
        )
    };
    Ok(Operand::Matrix(elements, Strided { rows: out_dim, cols: in_dim, row_stride: 1, col_stride: out_dim }))
}

/// [`linear`] from candle operations, for devices and dtypes without the fused kernel.
fn composed(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    linear_without_bias(xs, weight)?.broadcast_add(bias)
}

struct Linear {
    epilogue: Epilogue,
}

/// What the op does with the product.
enum Epilogue {
    /// Nothing: the output is `(..., out)`.
    None,
    /// ReLU, then dropout if a mask is given.
    Relu(Option<DropoutMask>),
    /// Splits the output `(b, t, out)` into `heads`: `(b, heads, t, out / heads)`.
    Heads(usize),
}

/// `ys = dropout(relu(ys))` in place.
fn relu<T: Real>(ys: &mut [T], dropout: Option<&DropoutMask>) {
    ys.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, ys)| {
        for (i, y) in ys.iter_mut().enumerate() {
            let factor = dropout.map_or(T::one(), |mask| mask.factor(chunk * CHUNK + i));
            *y = if *y > T::zero() { *y * factor } else { T::zero() };
        }
    });
}

/// The gradient before ReLU and dropout from the gradient after them and their output: a
/// positive output was kept, so its gradient is scaled by the dropout factor; others are 0.
fn relu_backward<T: Real>(grads: &[T], ys: &[T], dropout: Option<&DropoutMask>) -> Vec<T> {
    let scale = T::from_f64(dropout.map_or(1.0, |mask| mask.scale()));
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

/// Elements per parallel task of the element-wise epilogues.
const CHUNK: usize = 1 << 14;

/// Calls `copy(rows_start, split_start)` for each run of `head_dim` elements of one sentence:
/// from its `(time, heads · head_dim)` rows to its split `(heads, time, head_dim)` layout.
fn for_each_head_run(time: usize, heads: usize, head_dim: usize, mut copy: impl FnMut(usize, usize)) {
    for i in 0..time {
        for h in 0..heads {
            copy((i * heads + h) * head_dim, (h * time + i) * head_dim);
        }
    }
}

/// Which way [`rearrange_heads`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadLayout {
    /// From `(b, time, heads · head_dim)` rows to `(b, heads, time, head_dim)`.
    Split,
    /// Back from the split layout to rows.
    Merged,
}

/// Copies `from` into the layout `to`, one sentence per parallel task.
fn rearrange_heads<T: Real>(from: &[T], time: usize, heads: usize, out_dim: usize, to: HeadLayout) -> Vec<T> {
    let head_dim = out_dim / heads;
    let mut out = vec![T::zero(); from.len()];
    out.par_chunks_mut(time * out_dim).zip(from.par_chunks(time * out_dim)).for_each(|(out, from)| {
        for_each_head_run(time, heads, head_dim, |row, split| {
            let (dst, src) = match to {
                HeadLayout::Split => (split, row),
                HeadLayout::Merged => (row, split),
            };
            out[dst..dst + head_dim].copy_from_slice(&from[src..src + head_dim]);
        })
    });
    out
}

/// The sizes of one product: `rows × in` times `(out × in)ᵀ`.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    rows: usize,
    in_dim: usize,
    out_dim: usize,
}

impl Sizes {
    /// The sizes of `xs` times `weight`: a matrix `(out, in)`, or panels `(panels, in, 64)`
    /// whose number of channels is the bias's.
    fn of(xs: &Shape, weight: &Shape, bias: Option<&Shape>) -> Result<Self> {
        let (out_dim, in_dim) = match (weight.dims(), bias.map(Shape::dims)) {
            (&[panels, in_dim, PANEL], Some(&[out_dim])) if out_dim.div_ceil(PANEL) == panels => {
                (out_dim, in_dim)
            }
            (&[_, _, _], bias) => bail!("linear: packed weight {weight:?} with bias {bias:?}"),
            _ => weight.dims2()?,
        };
        Ok(Self { rows: xs.elem_count() / in_dim.max(1), in_dim, out_dim })
    }

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

impl Linear {
    /// The output, in the layout and shape the epilogue gives it.
    fn forward<T: Real>(
        &self,
        xs: &[T],
        weight: Operand<T>,
        bias: Option<&[T]>,
        sizes: Sizes,
        time: usize,
    ) -> Vec<T> {
        let mut ys = vec![T::zero(); sizes.rows * sizes.out_dim];
        if let Some(bias) = bias {
            ys.par_chunks_mut(sizes.out_dim).for_each(|row| row.copy_from_slice(bias));
        }
        let accumulate = bias.is_some();
        match weight {
            Operand::Matrix(weight, weight_m) => matmul(
                &mut ys,
                sizes.output(),
                xs,
                sizes.input(),
                weight,
                weight_m.t(),
                T::one(),
                accumulate,
                Threads::All,
            ),
            Operand::Panels(panels) => {
                let Sizes { rows, in_dim, out_dim } = sizes;
                matmul_panels(&mut ys, xs, panels, rows, in_dim, out_dim, accumulate, Threads::All)
            }
        }
        match &self.epilogue {
            Epilogue::None => ys,
            Epilogue::Relu(dropout) => {
                relu(&mut ys, dropout.as_ref());
                ys
            }
            Epilogue::Heads(heads) => rearrange_heads(&ys, time, *heads, sizes.out_dim, HeadLayout::Split),
        }
    }

    /// Gradients of the input, weight and bias from the gradient `grad` of the output `ys`:
    /// `dx = g W`, `dW = gᵀ x`, `db = Σ_rows g` (only when there is a `bias`), with `g` the
    /// gradient of the product.
    fn backward<T: Real>(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        if weight.rank() != 2 {
            bail!("linear: a weight packed for decoding has no gradient")
        }
        let sizes = Sizes::of(xs.shape(), weight.shape(), None)?;
        let product_grad = match &self.epilogue {
            Epilogue::None => None,
            Epilogue::Relu(dropout) => Some(with_elements::<T, _>(grad, |grads| {
                with_elements::<T, _>(ys, |ys| relu_backward(grads, ys, dropout.as_ref()))
            })??),
            Epilogue::Heads(heads) => {
                let time = xs.dim(1)?;
                Some(with_elements::<T, _>(grad, |grads| {
                    rearrange_heads(grads, time, *heads, sizes.out_dim, HeadLayout::Merged)
                })?)
            }
        };
        let gradients = |grads: &[T]| {
            with_elements::<T, _>(xs, |xs| {
                with_elements::<T, _>(weight, |weight| {
                    let mut dxs = vec![T::zero(); xs.len()];
                    let (input, output) = (sizes.input(), sizes.output());
                    matmul(
                        &mut dxs,
                        input,
                        grads,
                        output,
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
                        output.t(),
                        xs,
                        input,
                        T::one(),
                        false,
                        Threads::All,
                    );
                    (dxs, dw, bias.map(|_| column_sums(grads, sizes.out_dim)))
                })
            })
        };
        let (dxs, dw, db) = match product_grad {
            Some(grads) => gradients(&grads)??,
            None => with_elements::<T, _>(grad, gradients)???,
        };
        let db = match (db, bias) {
            (Some(db), Some(bias)) => Some(Tensor::from_vec(db, bias.shape(), bias.device())?),
            _ => None,
        };
        Ok((
            Tensor::from_vec(dxs, xs.shape(), xs.device())?,
            Tensor::from_vec(dw, weight.shape(), weight.device())?,
            db,
        ))
    }

    /// The product on the CPU, with or without a bias: the output's storage and shape.
    fn cpu_forward(
        &self,
        (xs, xs_l): (&CpuStorage, &Layout),
        (weight, weight_l): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let in_dim = row_len(xs_l.shape())?;
        let sizes = Sizes::of(xs_l.shape(), weight_l.shape(), bias.map(|(_, bias_l)| bias_l.shape()))?;
        let dims = xs_l.shape().dims();
        let time = match self.epilogue {
            Epilogue::Heads(heads) if dims.len() == 3 && sizes.out_dim % heads == 0 => dims[1],
            Epilogue::Heads(heads) => {
                bail!("linear: cannot split {dims:?} → {} into {heads} heads", sizes.out_dim)
            }
            _ => 0,
        };
        let bias_fits = bias.is_none_or(|(_, bias_l)| bias_l.shape().dims() == [sizes.out_dim]);
        if sizes.in_dim != in_dim || !bias_fits {
            let bias = bias.map_or_else(|| "none".to_string(), |(_, bias_l)| format!("{:?}", bias_l.shape()));
            bail!("linear: input {:?}, weight {:?}, bias {bias}", xs_l.shape(), weight_l.shape())
        }
        let ys = match xs {
            CpuStorage::F32(_) => CpuStorage::F32(self.forward(
                contiguous(xs, xs_l)?,
                weight_matrix(weight, weight_l, sizes)?,
                bias.map(|(bias, bias_l)| contiguous(bias, bias_l)).transpose()?,
                sizes,
                time,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(self.forward(
                contiguous(xs, xs_l)?,
                weight_matrix(weight, weight_l, sizes)?,
                bias.map(|(bias, bias_l)| contiguous(bias, bias_l)).transpose()?,
                sizes,
                time,
            )),
            other => bail!("linear: unsupported dtype {:?}", other.dtype()),
        };
        let shape = match self.epilogue {
            Epilogue::Heads(heads) => Shape::from((dims[0], heads, time, sizes.out_dim / heads)),
            _ => {
                let mut dims = dims.to_vec();
                let Some(last) = dims.last_mut() else { bail!("linear: input of rank 0") };
                *last = sizes.out_dim;
                Shape::from(dims)
            }
        };
        Ok((ys, shape))
    }

    /// [`Self::backward`] for the dtype of `xs`.
    fn gradients(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        match xs.dtype() {
            DType::F32 => self.backward::<f32>(xs, weight, bias, ys, grad),
            DType::F64 => self.backward::<f64>(xs, weight, bias, ys, grad),
            other => bail!("linear: unsupported dtype {other:?}"),
        }
    }
}

/// Without a bias ([`linear_without_bias`]).
impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "locus-linear-without-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xs_l: &Layout,
        weight: &CpuStorage,
        weight_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu_forward((xs, xs_l), (weight, weight_l), None)
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dxs, dw, _) = self.gradients(xs, weight, None, ys, grad)?;
        Ok((Some(dxs), Some(dw)))
    }
}

/// With a bias ([`linear`], [`linear_relu`], [`linear_heads`]).
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
        self.cpu_forward((xs, xs_l), (weight, weight_l), Some((bias, bias_l)))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        ys: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dxs, dw, db) = self.gradients(xs, weight, Some(bias), ys, grad)?;
        Ok((Some(dxs), Some(dw), db))
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

    /// Few rows (a decoding step, through `matmul`'s few-rows path) and many rows.
    #[test]
    fn without_bias_matches_candle_matmul() {
        let weight = random((37, 19), 1).unwrap();
        for rows in [1, 8, 70] {
            let xs = random((rows, 1, 19), 2).unwrap();
            let want = xs.squeeze(1).unwrap().matmul(&weight.t().unwrap()).unwrap().unsqueeze(1).unwrap();
            let got = linear_without_bias(&xs, &weight).unwrap();
            assert_eq!(got.dims(), [rows, 1, 37]);
            assert!(max_diff(&got, &want).unwrap() < 1e-12, "{rows} rows");
        }
    }

    /// A weight packed in panels ([`decoding_layout`]: two panels, the second partial) gives
    /// the products the weight gives, through every entry point that takes a bias, at
    /// decoding's few rows and at many; without a bias, or asked for a gradient, it is an error.
    #[test]
    fn packed_weights_give_the_same_products() {
        let (weight, bias) = (random((70, 4), 1).unwrap(), random(70, 2).unwrap());
        let packed = decoding_layout(&weight).unwrap();
        assert_eq!(packed.dims(), [2, 4, PANEL]);
        // Channel 69 for input 3: the 6th channel of the second panel.
        let entry = |t: &Tensor, index: &[usize]| {
            index.iter().fold(t.clone(), |t, &i| t.get(i).unwrap()).to_scalar::<f64>().unwrap()
        };
        assert_eq!(entry(&packed, &[1, 3, 5]), entry(&weight, &[69, 3]));
        assert_eq!(entry(&packed, &[1, 3, 6]), 0.0);
        for rows in [1, 8, 70] {
            let xs = random((rows, 1, 4), 3).unwrap();
            let pairs = [
                (linear(&xs, &weight, &bias), linear(&xs, &packed, &bias)),
                (linear_relu(&xs, &weight, &bias, None), linear_relu(&xs, &packed, &bias, None)),
                (linear_heads(&xs, &weight, &bias, 2), linear_heads(&xs, &packed, &bias, 2)),
            ];
            for (i, (want, got)) in pairs.into_iter().enumerate() {
                let (want, got) = (want.unwrap(), got.unwrap());
                assert_eq!(want.dims(), got.dims());
                assert!(max_diff(&got, &want).unwrap() < 1e-12, "entry point {i}, {rows} rows");
            }
        }
        let xs = random((3, 4), 4).unwrap();
        assert!(linear_without_bias(&xs, &packed).is_err());
        assert!(linear(&xs, &packed, &random(6, 2).unwrap()).is_err());
        let var = Var::from_tensor(&xs).unwrap();
        let ys = linear(var.as_tensor(), &packed, &bias).unwrap();
        assert!(ys.sum_all().unwrap().backward().is_err());
    }

    #[test]
    fn without_bias_gradient_matches_finite_differences() {
        let xs = Var::from_tensor(&random((7, 10, 4), 4).unwrap()).unwrap();
        let weight = Var::from_tensor(&random((3, 4), 5).unwrap()).unwrap();
        let probe = random((7, 10, 3), 7).unwrap();
        check_gradients(&[&xs, &weight], || {
            (linear_without_bias(xs.as_tensor(), weight.as_tensor())?.sqr()? * &probe)?.sum_all()
        })
        .unwrap();
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
    fn heads_match_a_reshape_and_transpose() {
        let (weight, bias) = (random((6, 4), 1).unwrap(), random(6, 2).unwrap());
        let xs = random((2, 5, 4), 3).unwrap();
        let want =
            linear(&xs, &weight, &bias).unwrap().reshape((2, 5, 3, 2)).unwrap().transpose(1, 2).unwrap();
        let got = linear_heads(&xs, &weight, &bias, 3).unwrap();
        assert_eq!(got.dims(), [2, 3, 5, 2]);
        assert!(max_diff(&got, &want).unwrap() < 1e-12);
    }

    #[test]
    fn heads_gradient_matches_finite_differences() {
        let xs = Var::from_tensor(&random((3, 5, 4), 12).unwrap()).unwrap();
        let weight = Var::from_tensor(&random((6, 4), 13).unwrap()).unwrap();
        let bias = Var::from_tensor(&random(6, 14).unwrap()).unwrap();
        let probe = random((3, 3, 5, 2), 15).unwrap();
        check_gradients(&[&xs, &weight, &bias], || {
            (linear_heads(xs.as_tensor(), weight.as_tensor(), bias.as_tensor(), 3)? * &probe)?.sum_all()
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
