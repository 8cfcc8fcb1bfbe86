//! Scaling the kept elements of a tensor and zeroing the rest: dropout's multiply, with the
//! keep decisions held as bytes instead of a float mask tensor.
//!
//! Composed, dropout multiplies by a float mask, and the backward of that multiply also
//! computes a gradient for the mask, which nothing needs. This op's backward only scales the
//! incoming gradient by the same mask.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::rows::{contiguous, is_fused, with_elements, Real};

/// One dropout draw: which elements are kept, in row-major order, and the factor `1 / (1 - p)`
/// they are scaled by.
#[derive(Debug, Clone)]
pub struct DropoutMask {
    keep: Arc<Vec<bool>>,
    scale: f64,
}

impl DropoutMask {
    /// A mask keeping the elements where `keep` is true, scaled by `scale`.
    pub fn new(keep: Vec<bool>, scale: f64) -> Self {
        Self { keep: Arc::new(keep), scale }
    }

    /// Number of elements the mask covers.
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    /// Whether the mask covers no element.
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// The factor kept elements are scaled by.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The factor of element `i`: `scale` if kept, else 0.
    pub(crate) fn factor<T: Real>(&self, i: usize) -> T {
        if self.keep[i] {
            T::from(self.scale).unwrap()
        } else {
            T::zero()
        }
    }

    /// `xs ⊙ mask`, element by element.
    fn apply<T: Real>(&self, xs: &[T]) -> Vec<T> {
        let scale = T::from(self.scale).unwrap();
        const CHUNK: usize = 1 << 14;
        let mut ys = vec![T::zero(); xs.len()];
        ys.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK).zip(self.keep.par_chunks(CHUNK))).for_each(
            |(ys, (xs, keep))| {
                for ((y, &x), &k) in ys.iter_mut().zip(xs).zip(keep) {
                    *y = if k { x * scale } else { T::zero() };
                }
            },
        );
        ys
    }

    fn apply_tensor<T: Real>(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = with_elements::<T, _>(xs, |xs| self.apply(xs))?;
        Tensor::from_vec(ys, xs.shape(), xs.device())
    }
}

/// `xs ⊙ mask`: kept elements scaled, the others zeroed.
pub fn apply_dropout(xs: &Tensor, mask: &DropoutMask) -> Result<Tensor> {
    if mask.len() != xs.elem_count() {
        bail!("dropout: a mask of {} elements for {} elements", mask.len(), xs.elem_count())
    }
    if is_fused(xs) {
        xs.contiguous()?.apply_op1(ApplyDropout(mask.clone()))
    } else {
        let factors: Vec<f32> = (0..mask.len()).map(|i| mask.factor(i)).collect();
        xs.mul(&Tensor::from_vec(factors, xs.shape(), xs.device())?.to_dtype(xs.dtype())?)
    }
}

struct ApplyDropout(DropoutMask);

impl CustomOp1 for ApplyDropout {
    fn name(&self) -> &'static str {
        "locus-dropout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let ys = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(self.0.apply(contiguous(storage, layout)?)),
            CpuStorage::F64(_) => CpuStorage::F64(self.0.apply(contiguous(storage, layout)?)),
            other => bail!("dropout: unsupported dtype {:?}", other.dtype()),
        };
        Ok((ys, layout.shape().clone()))
    }

    /// The mask is fixed, so `dx = g ⊙ mask`.
    fn bwd(&self, _xs: &Tensor, _ys: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dxs = match grad.dtype() {
            DType::F32 => self.0.apply_tensor::<f32>(grad)?,
            DType::F64 => self.0.apply_tensor::<f64>(grad)?,
            other => bail!("dropout: unsupported dtype {other:?}"),
        };
        Ok(Some(dxs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, random};
    use candle_core::Var;

    fn pattern(n: usize, scale: f64) -> DropoutMask {
        DropoutMask::new((0..n).map(|i| i % 3 != 1).collect(), scale)
    }

    #[test]
    fn kept_elements_are_scaled_and_the_rest_zeroed() {
        let xs = Tensor::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &candle_core::Device::Cpu).unwrap();
        let ys = apply_dropout(&xs, &pattern(6, 2.0)).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(ys, vec![vec![2.0, 0.0, 6.0], vec![8.0, 0.0, 12.0]]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let xs = Var::from_tensor(&random((3, 7), 1).unwrap()).unwrap();
        let probe = random((3, 7), 2).unwrap();
        let mask = pattern(21, 1.25);
        check_gradients(&[&xs], || (apply_dropout(xs.as_tensor(), &mask)?.sqr()? * &probe)?.sum_all())
            .unwrap();
    }
}
