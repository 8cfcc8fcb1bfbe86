//! Seeded weight initialisation.
//!
//! candle's `VarMap` draws initial weights from an unseeded thread RNG on the CPU, so two runs
//! with the same config would start from different weights. [`SeededVarMap`] is a `VarBuilder`
//! backend that draws them from a ChaCha8 stream seeded by the run's `seed`, in the order the
//! model creates its variables, and stores them in an ordinary [`VarMap`] for training and saving.

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A [`VarMap`] whose new variables are initialised from a seeded RNG.
pub struct SeededVarMap {
    varmap: VarMap,
    rng: Mutex<ChaCha8Rng>,
}

impl SeededVarMap {
    /// A backend that fills `varmap` with variables drawn from a stream seeded by `seed`.
    pub fn new(varmap: VarMap, seed: u64) -> Self {
        Self { varmap, rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)) }
    }

    /// A `VarBuilder` that creates seeded variables in `varmap`.
    pub fn var_builder(varmap: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Self::new(varmap.clone(), seed)), dtype, device.clone())
    }

    fn sample(&self, shape: &Shape, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut uniform = |lo: f64, up: f64| -> Vec<f32> {
            (0..n).map(|_| (lo + (up - lo) * rng.random::<f64>()) as f32).collect()
        };
        match init {
            Init::Const(value) => vec![value as f32; n],
            Init::Uniform { lo, up } => uniform(lo, up),
            Init::Randn { mean, stdev } => normal(&mut rng, n, mean, stdev),
            Init::Kaiming { dist, fan, non_linearity } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => uniform(-(3f64.sqrt()) * std, 3f64.sqrt() * std),
                    NormalOrUniform::Normal => normal(&mut rng, n, 0.0, std),
                }
            }
        }
    }
}

/// `n` draws from N(mean, stdev²) by the Box-Muller transform.
fn normal(rng: &mut ChaCha8Rng, n: usize, mean: f64, stdev: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = 1.0 - rng.random::<f64>(); // in (0, 1], so ln is finite
        let u2 = rng.random::<f64>();
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        out.push((mean + stdev * radius * theta.cos()) as f32);
        out.push((mean + stdev * radius * theta.sin()) as f32);
    }
    out.truncate(n);
    out
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut vars = self.varmap.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let values = Tensor::from_vec(self.sample(&shape, init), shape, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&values)?;
        let tensor = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("variable {name} needs a shape to be created")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        let vars = self.varmap.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        vars.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(seed: u64) -> Vec<f32> {
        let varmap = VarMap::new();
        let vb = SeededVarMap::var_builder(&varmap, seed, DType::F32, &Device::Cpu);
        let init = Init::Randn { mean: 0.0, stdev: 2.0 };
        vb.get_with_hints((100, 50), "w", init).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn normal_draws_have_the_requested_moments() {
        let xs = draw(1);
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // 5,000 draws: the standard error of the mean is 2 / sqrt(5000) ≈ 0.028.
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.1, "stdev {}", var.sqrt());
    }

    #[test]
    fn existing_variables_are_reused() {
        let varmap = VarMap::new();
        let vb = SeededVarMap::var_builder(&varmap, 0, DType::F32, &Device::Cpu);
        let a = vb.get_with_hints(3, "b", Init::Const(0.5)).unwrap();
        let b = vb.get_with_hints(3, "b", Init::Const(9.0)).unwrap();
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        assert_eq!(varmap.all_vars().len(), 1);
    }
}
