//! Helpers shared by the unit tests: seeded random tensors, differences, and a
//! finite-difference gradient check.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// An f64 tensor of uniform values in [-1, 1) drawn from `seed`.
pub fn random(shape: impl Into<Shape>, seed: u64) -> Result<Tensor> {
    let shape = shape.into();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f64> = (0..shape.elem_count()).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// The largest absolute difference between `a` and `b`.
pub fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    (a - b)?.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// Checks backprop of `loss` against central differences (h = 1e-5) for every element of
/// every variable in `vars`.
pub fn check_gradients(vars: &[&Var], loss: impl Fn() -> Result<Tensor>) -> Result<()> {
    const H: f64 = 1e-5;
    let grads = loss()?.backward()?;
    for var in vars {
        let analytic = grads.get(var.as_tensor()).unwrap().flatten_all()?.to_vec1::<f64>()?;
        let original = var.as_tensor().copy()?;
        let base = original.flatten_all()?.to_vec1::<f64>()?;
        for (k, &want) in analytic.iter().enumerate() {
            let at = |delta: f64| -> Result<f64> {
                let mut xs = base.clone();
                xs[k] += delta;
                var.set(&Tensor::from_vec(xs, original.shape(), &Device::Cpu)?)?;
                loss()?.to_scalar::<f64>()
            };
            let numeric = (at(H)? - at(-H)?) / (2.0 * H);
            assert!((numeric - want).abs() <= 1e-6 * (1.0 + want.abs()), "element {k}: {numeric} vs {want}");
        }
        var.set(&original)?;
    }
    Ok(())
}
