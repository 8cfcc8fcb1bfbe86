//! Adam (Kingma and Ba 2015, <https://arxiv.org/abs/1412.6980>) and AdamW (Loshchilov and
//! Hutter 2019, <https://arxiv.org/abs/1711.05101>) with their state in the open, so that a
//! checkpoint can hold the moments and a resumed run continue exactly (candle's `AdamW` keeps
//! its moments private). Gradients are summed into [`Gradients`] first, which is how
//! gradient accumulation (`train.update_freq`) works.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

/// How weight decay is applied (`train.optimizer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Decoupled weight decay: `w -= lr * wd * w`, apart from the adaptive update.
    #[default]
    Adamw,
    /// Plain Adam: weight decay is an L2 penalty added to the gradient (`g += wd * w`), as
    /// in `torch.optim.Adam`.
    Adam,
}

/// Hyper-parameters of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    /// Decoupled (AdamW) or L2 (Adam) weight decay.
    pub kind: OptimizerKind,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Weight decay (0: none, and both kinds are the same).
    pub weight_decay: f64,
}

/// Gradients summed over the micro-batches of one update, one slot per optimised variable.
pub struct Gradients(Vec<Option<Tensor>>);

impl Gradients {
    /// One slot per variable, in the optimiser's order; `None` where a variable has no gradient.
    pub(crate) fn slots_mut(&mut self) -> &mut [Option<Tensor>] {
        &mut self.0
    }
}

/// Adam or AdamW over a fixed, named set of variables.
pub struct Adam {
    vars: Vec<(String, Var)>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    step: usize,
    params: AdamParams,
}

impl Adam {
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

    /// The optimised variables, in name order (the order of [`Gradients`]' slots).
    pub(crate) fn variables(&self) -> impl Iterator<Item = &Var> {
        self.vars.iter().map(|(_, var)| var)
    }

    /// Number of updates applied so far.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// Empty gradients for this optimiser's variables.
    pub fn zero_gradients(&self) -> Gradients {
        Gradients(vec![None; self.vars.len()])
    }

    /// Adds the gradients in `store` (one backward pass) to `sum`, detached: candle leaves a
    /// variable's gradient attached to the forward graph when an operation's backward reads a
    /// tracked input (`d(a·b)/da = b`), and moments computed from it would keep every step's
    /// graph alive through the next step's moments (FIRE and Kerple grew by megabytes a step).
    pub fn accumulate(&self, sum: &mut Gradients, store: &GradStore) -> candle_core::Result<()> {
        for ((_, var), slot) in self.vars.iter().zip(sum.0.iter_mut()) {
            if let Some(grad) = store.get(var.as_tensor()).map(Tensor::detach) {
                *slot = Some(match slot.take() {
                    Some(total) => (total + grad)?,
                    None => grad,
                });
            }
        }
        Ok(())
    }

    /// The gradient of variable `name` in `grads`, if it has one.
    pub fn gradient<'g>(&self, grads: &'g Gradients, name: &str) -> Option<&'g Tensor> {
        let index = self.vars.iter().position(|(n, _)| n == name)?;
        grads.0[index].as_ref()
    }

    /// The global L2 norm of `grads`: a scalar computed and left on the variables' device
    /// (0 when nothing has a gradient). Each variable's sum of squares is taken in its own
    /// dtype and the sums are added in f64, except on Metal, which has no f64.
    pub fn grad_norm(&self, grads: &Gradients) -> candle_core::Result<Tensor> {
        let device = self.device();
        let dtype = if device.is_metal() { DType::F32 } else { DType::F64 };
        let squares = grads
            .0
            .iter()
            .flatten()
            .map(|grad| grad.sqr()?.sum_all()?.to_dtype(dtype))
            .collect::<candle_core::Result<Vec<_>>>()?;
        match squares.as_slice() {
            [] => Tensor::zeros((), dtype, device),
            _ => Tensor::stack(&squares, 0)?.sum_all()?.sqrt(),
        }
    }

    /// The device the variables live on.
    fn device(&self) -> &candle_core::Device {
        self.vars.first().map_or(&candle_core::Device::Cpu, |(_, var)| var.device())
    }

    /// Applies one update with learning rate `lr` to `grads` multiplied by `grad_scale`, a
    /// scalar tensor on the variables' device (the normalisation by target tokens times the
    /// clipping factor), so that a clipping factor computed on the device never has to be read
    /// back. Variables without a gradient keep their value and moments.
    pub fn step(&mut self, grads: &Gradients, lr: f64, grad_scale: &Tensor) -> candle_core::Result<()> {
        self.step += 1;
        let AdamParams { kind, beta1, beta2, eps, weight_decay } = self.params;
        let bias1 = 1.0 - beta1.powi(self.step as i32);
        let bias2 = 1.0 - beta2.powi(self.step as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = &grads.0[i] else { continue };
            let mut grad = grad.broadcast_mul(&grad_scale.to_dtype(grad.dtype())?)?;
            let mut weights = var.as_tensor().clone();
            if weight_decay > 0.0 {
                match kind {
                    OptimizerKind::Adam => grad = (grad + (&weights * weight_decay)?)?,
                    OptimizerKind::Adamw => weights = (weights * (1.0 - lr * weight_decay))?,
                }
            }
            let m = ((&self.first_moments[i] * beta1)? + (&grad * (1.0 - beta1))?)?;
            let v = ((&self.second_moments[i] * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + eps)?)?;
            var.set(&(weights - (update * lr)?)?)?;
            self.first_moments[i] = m;
            self.second_moments[i] = v;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<variable>`, `v.<variable>`), for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut tensors = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            tensors.insert(format!("m.{name}"), self.first_moments[i].clone());
            tensors.insert(format!("v.{name}"), self.second_moments[i].clone());
        }
        tensors
    }

    /// Restores the moments written by [`Adam::state_tensors`] and the update count.
    ///
    /// # Errors
    /// A moment that is missing or whose shape differs from its variable's, named.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: usize) -> candle_core::Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.first_moments[i]), ("v", &mut self.second_moments[i])] {
                let key = format!("{prefix}.{name}");
                let tensor = tensors
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state has no {key}")))?;
                if tensor.shape() != var.shape() {
                    return Err(candle_core::Error::Msg(format!(
                        "optimizer state {key} has shape {:?}, the variable {:?}",
                        tensor.shape(),
                        var.shape()
                    )));
                }
                *slot = tensor.to_device(var.device())?.to_dtype(var.dtype())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn params(kind: OptimizerKind, weight_decay: f64) -> AdamParams {
        AdamParams { kind, beta1: 0.9, beta2: 0.98, eps: 1e-9, weight_decay }
    }

    /// One backward pass of `loss(w)` summed into fresh gradients.
    fn gradients(opt: &Adam, loss: Tensor) -> Gradients {
        let mut grads = opt.zero_gradients();
        opt.accumulate(&mut grads, &loss.backward().unwrap()).unwrap();
        grads
    }

    /// A gradient scale of 1.
    fn unscaled() -> Tensor {
        Tensor::new(1f32, &Device::Cpu).unwrap()
    }

    /// The first Adam step moves every weight by `lr` against the sign of its gradient:
    /// m̂ = g, v̂ = g², so the update is g / (|g| + eps) ≈ sign(g).
    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        let w = Var::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), w.clone())], params(OptimizerKind::Adamw, 0.0)).unwrap();
        // loss = sum(w²) / 2 → grad = w.
        let grads = gradients(&opt, (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap());
        assert!((opt.grad_norm(&grads).unwrap().to_scalar::<f64>().unwrap() - 14f64.sqrt()).abs() < 1e-6);
        opt.step(&grads, 0.1, &unscaled()).unwrap();
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        for (g, want) in got.iter().zip([0.9f32, -1.9, 2.9]) {
            assert!((g - want).abs() < 1e-6, "{got:?}");
        }
        assert_eq!(opt.step_count(), 1);
    }

    /// AdamW: decay shrinks weights by lr * wd even where Adam's update is fixed.
    #[test]
    fn adamw_decay_is_decoupled() {
        let w = Var::new(&[2.0f32], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), w.clone())], params(OptimizerKind::Adamw, 0.5)).unwrap();
        let grads = gradients(&opt, (w.as_tensor() * 3.0).unwrap().sum_all().unwrap());
        opt.step(&grads, 0.1, &unscaled()).unwrap();
        // 2 * (1 - 0.1 * 0.5) - 0.1 * sign(3) = 1.9 - 0.1 = 1.8
        assert!((w.as_tensor().to_vec1::<f32>().unwrap()[0] - 1.8).abs() < 1e-6);
    }

    /// Adam: decay enters the gradient, so it can flip the update's sign:
    /// g = 0.5 + wd * w = 0.5 - 2 * 1 = -1.5 < 0, so w moves up by lr.
    #[test]
    fn adam_decay_is_an_l2_gradient() {
        let w = Var::new(&[-1.0f32], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), w.clone())], params(OptimizerKind::Adam, 2.0)).unwrap();
        let grads = gradients(&opt, (w.as_tensor() * 0.5).unwrap().sum_all().unwrap());
        opt.step(&grads, 0.1, &unscaled()).unwrap();
        assert!((w.as_tensor().to_vec1::<f32>().unwrap()[0] - -0.9).abs() < 1e-6);
    }

    /// Two backward passes sum: d(3w)/dw + d(w²)/dw at w = 2 is 3 + 4.
    #[test]
    fn gradients_accumulate() {
        let w = Var::new(&[2.0f32], &Device::Cpu).unwrap();
        let opt = Adam::new(vec![("w".into(), w.clone())], params(OptimizerKind::Adamw, 0.0)).unwrap();
        let mut grads = opt.zero_gradients();
        for loss in [(w.as_tensor() * 3.0).unwrap(), w.as_tensor().sqr().unwrap()] {
            opt.accumulate(&mut grads, &loss.sum_all().unwrap().backward().unwrap()).unwrap();
        }
        assert_eq!(opt.gradient(&grads, "w").unwrap().to_vec1::<f32>().unwrap(), [7.0]);
    }

    /// A gradient that candle computes from a tracked tensor (`d(w·exp(w))/dw` reads `exp(w)`)
    /// is held detached, and so are the moments made from it: nothing keeps a step's graph.
    #[test]
    fn gradients_and_moments_hold_no_graph() {
        let w = Var::new(&[0.5f32, -1.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("w".into(), w.clone())], params(OptimizerKind::Adamw, 0.1)).unwrap();
        let loss = (w.as_tensor() * w.as_tensor().exp().unwrap()).unwrap().sum_all().unwrap();
        let store = loss.backward().unwrap();
        assert!(store.get(w.as_tensor()).unwrap().track_op(), "candle's gradient is no longer tracked");
        let mut grads = opt.zero_gradients();
        opt.accumulate(&mut grads, &store).unwrap();
        assert!(!opt.gradient(&grads, "w").unwrap().track_op());
        opt.step(&grads, 0.1, &unscaled()).unwrap();
        for (name, moment) in opt.state_tensors() {
            assert!(!moment.track_op(), "{name} holds a graph");
        }
    }

    /// Restored moments continue exactly as if the optimiser had never been rebuilt.
    #[test]
    fn state_round_trips() {
        let run = |restore: bool| {
            let w = Var::new(&[1.0f32, -0.5], &Device::Cpu).unwrap();
            let mut opt =
                Adam::new(vec![("w".into(), w.clone())], params(OptimizerKind::Adamw, 0.1)).unwrap();
            let loss = || w.as_tensor().powf(3.0).unwrap().sum_all().unwrap();
            for _ in 0..3 {
                opt.step(&gradients(&opt, loss()), 0.01, &unscaled()).unwrap();
            }
            if restore {
                let state = opt.state_tensors();
                let mut fresh =
                    Adam::new(vec![("w".into(), w.clone())], params(OptimizerKind::Adamw, 0.1)).unwrap();
                fresh.load_state(&state, opt.step_count()).unwrap();
                opt = fresh;
            }
            opt.step(&gradients(&opt, loss()), 0.01, &unscaled()).unwrap();
            w.as_tensor().to_vec1::<f32>().unwrap()
        };
        assert_eq!(run(true), run(false));
    }
}
