//! AdamW (Loshchilov and Hutter 2019, <https://arxiv.org/abs/1711.05101>) with its state in
//! the open, so that it can be checkpointed (candle's `AdamW` keeps its moments private).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

/// Hyper-parameters of [`AdamW`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay (0 gives plain Adam).
    pub weight_decay: f64,
}

/// AdamW over a fixed, named set of variables.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    step: usize,
    params: AdamParams,
}

impl AdamW {
    /// An optimiser for `vars` with zero moments.
    pub fn new(vars: Vec<(String, Var)>, params: AdamParams) -> candle_core::Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            first_moments: vars.iter().map(|(_, v)| zeros(v)).collect::<candle_core::Result<_>>()?,
            second_moments: vars.iter().map(|(_, v)| zeros(v)).collect::<candle_core::Result<_>>()?,
            vars,
            step: 0,
            params,
        })
    }

    /// An optimiser for every variable of `varmap`, in name order.
    pub fn for_varmap(varmap: &VarMap, params: AdamParams) -> candle_core::Result<Self> {
        let data =
            varmap.data().lock().map_err(|_| candle_core::Error::Msg("variable map poisoned".into()))?;
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(name, var)| (name.clone(), var.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Self::new(vars, params)
    }

    /// Number of updates applied so far.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// The global L2 norm of the gradients of this optimiser's variables.
    pub fn grad_norm(&self, grads: &GradStore) -> candle_core::Result<f64> {
        let mut total = 0f64;
        for (_, var) in &self.vars {
            if let Some(grad) = grads.get(var.as_tensor()) {
                total += grad.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            }
        }
        Ok(total.sqrt())
    }

    /// Applies one update with learning rate `lr` to gradients multiplied by `grad_scale`
    /// (the factor of clipping by global norm; 1 for none). Variables without a gradient keep
    /// their value and moments.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> candle_core::Result<()> {
        self.step += 1;
        let AdamParams { beta1, beta2, eps, weight_decay } = self.params;
        let bias1 = 1.0 - beta1.powi(self.step as i32);
        let bias2 = 1.0 - beta2.powi(self.step as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let grad = (grad * grad_scale)?;
            let m = ((&self.first_moments[i] * beta1)? + (&grad * (1.0 - beta1))?)?;
            let v = ((&self.second_moments[i] * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.first_moments[i] = m;
            self.second_moments[i] = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The first Adam step moves every weight by `lr` against the sign of its gradient:
    /// m̂ = g, v̂ = g², so the update is g / (|g| + eps) ≈ sign(g).
    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        let w = Var::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
        let params = AdamParams { beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay: 0.0 };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
        // loss = sum(w²) / 2 → grad = w.
        let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let grads = loss.backward().unwrap();
        assert!((opt.grad_norm(&grads).unwrap() - 14f64.sqrt()).abs() < 1e-6);
        opt.step(&grads, 0.1, 1.0).unwrap();
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        for (g, want) in got.iter().zip([0.9f32, -1.9, 2.9]) {
            assert!((g - want).abs() < 1e-6, "{got:?}");
        }
        assert_eq!(opt.step_count(), 1);
    }

    /// Decoupled decay shrinks weights by lr * wd even where Adam's update is fixed.
    #[test]
    fn weight_decay_is_decoupled() {
        let w = Var::new(&[2.0f32], &Device::Cpu).unwrap();
        let params = AdamParams { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.5 };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
        let grads = (w.as_tensor() * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&grads, 0.1, 1.0).unwrap();
        // 2 * (1 - 0.1 * 0.5) - 0.1 * sign(3) = 1.9 - 0.1 = 1.8
        assert!((w.as_tensor().to_vec1::<f32>().unwrap()[0] - 1.8).abs() < 1e-6);
    }
}
