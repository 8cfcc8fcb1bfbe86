//! Scaling the kept elements of a tensor and zeroing the rest: dropout's multiply, with the
//! keep decisions held as bytes instead of a float mask tensor.
//!
//! Composed, dropout multiplies by a float mask, and the backward of that multiply also
//! computes a gradient for the mask, which nothing needs. This op's backward only scales the
//! incoming gradient by the same mask.
//!
//! On a GPU the mask is drawn there instead ([`DropoutMask::draw_on_device`]): a mask made on
//! the host would be copied to the device at every dropout site of every step.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::rows::{contiguous, is_fused, with_elements, Real};

/// One dropout draw: which elements are kept, in row-major order, and the factor `1 / (1 - p)`
/// they are scaled by.
#[derive(Debug, Clone)]
pub struct DropoutMask {
    keep: Keep,
    scale: f64,
}

/// Where a mask's keep decisions live.
#[derive(Debug, Clone)]
enum Keep {
    /// Decisions drawn on the host, for the CPU's fused operations.
    Host(Arc<Vec<bool>>),
    /// Each element's factor (`scale` or 0), an f32 vector on the device that drew it.
    Device(Tensor),
}

impl DropoutMask {
    /// A mask keeping the elements where `keep` is true, scaled by `scale`.
    pub fn new(keep: Vec<bool>, scale: f64) -> Self {
        Self { keep: Keep::Host(Arc::new(keep)), scale }
    }

    /// A mask over `n` elements drawn on `device` from its own generator: each element is
    /// dropped with probability `p` (its uniform draw is below `p`); kept ones are scaled by
    /// `1 / (1 - p)`.
    pub fn draw_on_device(n: usize, p: f64, device: &Device) -> Result<Self> {
        let scale = 1.0 / (1.0 - p);
        let factors = Tensor::rand(0f32, 1f32, n, device)?.ge(p)?.to_dtype(DType::F32)?.affine(scale, 0.0)?;
        Ok(Self { keep: Keep::Device(factors), scale })
    }

    /// Number of elements the mask covers.
    pub fn len(&self) -> usize {
        match &self.keep {
            Keep::Host(keep) => keep.len(),
            Keep::Device(factors) => factors.elem_count(),
        }
    }

    /// Whether the mask covers no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the decisions are in host memory, as the CPU's fused operations need.
    pub fn is_on_host(&self) -> bool {
        matches!(self.keep, Keep::Host(_))
    }

    /// The factor kept elements are scaled by.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The host decisions; the fused operations that call this only run on host masks.
    fn host_decisions(&self) -> &[bool] {
        match &self.keep {
            Keep::Host(keep) => keep,
            Keep::Device(_) => unreachable!("fused dropout operations take host masks only"),
        }
    }

    /// The factor of element `i`: `scale` if kept, else 0.
    pub(crate) fn factor<T: Real>(&self, i: usize) -> T {
        if self.host_decisions()[i] {
            T::from_f64(self.scale)
        } else {
            T::zero()
        }
    }

    /// `xs ⊙ mask`, element by element.
    fn apply<T: Real>(&self, xs: &[T]) -> Vec<T> {
        let scale = T::from_f64(self.scale);
        const CHUNK: usize = 1 << 14;
        let mut ys = vec![T::zero(); xs.len()];
        ys.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK).zip(self.host_decisions().par_chunks(CHUNK)))
            .for_each(|(ys, (xs, keep))| {
                for ((y, &x), &k) in ys.iter_mut().zip(xs).zip(keep) {
                    *y = if k { x * scale } else { T::zero() };
                }
            });
        ys
    }

    fn apply_tensor<T: Real>(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = with_elements::<T, _>(xs, |xs| self.apply(xs))?;
        Tensor::from_vec(ys, xs.shape(), xs.device())
    }

    /// The factors as a tensor shaped and typed like `xs`, on its device.
    fn factors_like(&self, xs: &Tensor) -> Result<Tensor> {
        let factors = match &self.keep {
            Keep::Host(_) => {
                let factors: Vec<f32> = (0..self.len()).map(|i| self.factor(i)).collect();
                Tensor::from_vec(factors, xs.shape(), xs.device())?
            }
            Keep::Device(factors) => factors.reshape(xs.shape())?,
        };
        factors.to_dtype(xs.dtype())
    }
}

/// `xs ⊙ mask`: kept elements scaled, the others zeroed.
pub fn apply_dropout(xs: &Tensor, mask: &DropoutMask) -> Result<Tensor> {
    if mask.len() != xs.elem_count() {
        bail!("dropout: a mask of {} elements for {} elements", mask.len(), xs.elem_count())
    }
    if is_fused(xs) && mask.is_on_host() {
        xs.contiguous()?.apply_op1(ApplyDropout(mask.clone()))
    } else {
        xs.mul(&mask.factors_like(xs)?)
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

    /// The device path, run here on the CPU: about `p` of the elements are zeroed, the rest
    /// scaled by `1 / (1 - p)`, and the gradient is the mask itself.
    #[test]
    fn a_mask_drawn_on_the_device_drops_p_and_scales_the_rest() {
        let mask = DropoutMask::draw_on_device(20_000, 0.25, &candle_core::Device::Cpu).unwrap();
        assert!(!mask.is_on_host());
        let xs = Var::new(vec![1f32; 20_000], &candle_core::Device::Cpu).unwrap();
        let ys = apply_dropout(xs.as_tensor(), &mask).unwrap();
        let values = ys.to_vec1::<f32>().unwrap();
        let dropped = values.iter().filter(|&&y| y == 0.0).count() as f64 / values.len() as f64;
        assert!((dropped - 0.25).abs() < 0.015, "dropped {dropped}");
        assert!(values.iter().all(|&y| y == 0.0 || (y - 4.0 / 3.0).abs() < 1e-6));
        let grads = ys.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(xs.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), values);
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
