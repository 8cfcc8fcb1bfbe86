//! Device parity: the same model, weights and batch on the CPU and on another device (a GPU)
//! must compute the same thing. [`device_parity`] measures how far apart they are, and
//! [`Parity::checks`] holds each difference against its limit.
//!
//! Four numbers, on the first batch of the config's training data (tokenizer trained and
//! batches planned as `locus train` does, seeded order of epoch 1):
//!
//! - `init`: the largest difference between the seeded initial weights built on each device.
//!   [`SeededVarMap`](locus_model::SeededVarMap) draws them on the host and copies them over, so
//!   it must be 0;
//! - `logits`: the largest difference between the f32 logits (no dropout), limit 1e-4;
//! - `bf16_loss`: the relative difference between the CPU's f32 loss and the device's bf16 loss
//!   (the mixed-precision copy of [`cast_model`]; label-smoothed, per target token, no dropout),
//!   limit 1e-2;
//! - `step`: the largest difference between the weights after one f32 training update on each
//!   device, limit 1e-5. Both updates use the peak `train.lr` (not the warmup's first, tiny,
//!   rate) and a [`DropoutRng`] with the same seed (SHAPE's shifts are drawn from it on the
//!   host, the same on both). Every dropout probability is set to 0 for this check: off the CPU
//!   masks are drawn by the device's own generator, so the two devices would drop different
//!   elements.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use locus_data::TokenizedPair;
use locus_model::{DropoutRng, ModelConfig, Seq2Seq};

use crate::batch::{collate, TensorBatch};
use crate::config::RunConfig;
use crate::distributed::SingleProcess;
use crate::error::{Result, TrainError};
use crate::loss::label_smoothed_cross_entropy;
use crate::modeling::{build_model, cast_model};
use crate::optim::Adam;
use crate::progress::silent;
use crate::setup::{adam_params, run_dataset};
use crate::step::{train_step, StepOptions};

/// Largest allowed difference between the f32 logits.
pub const LOGITS_LIMIT: f64 = 1e-4;
/// Largest allowed relative difference between the f32 and the bf16 loss.
pub const BF16_LOSS_LIMIT: f64 = 1e-2;
/// Largest allowed difference between the weights after one f32 update.
pub const STEP_LIMIT: f64 = 1e-5;

/// What [`device_parity`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Parity {
    /// Sentences in the batch.
    pub sentences: usize,
    /// Real target tokens in the batch (EOS included).
    pub target_tokens: usize,
    /// Trainable variables compared.
    pub variables: usize,
    /// Largest |w_cpu - w_device| over the seeded initial weights.
    pub init_max_abs_diff: f64,
    /// Largest |logits_cpu - logits_device| in f32, without dropout.
    pub logits_max_abs_diff: f64,
    /// The CPU's f32 loss per target token.
    pub loss_f32: f64,
    /// The device's bf16 (mixed-precision) loss per target token.
    pub loss_bf16: f64,
    /// Largest |w_cpu - w_device| after one f32 update.
    pub step_max_abs_diff: f64,
}

/// One measured difference against its limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParityCheck {
    /// Short name: `init`, `logits`, `bf16_loss` or `step`.
    pub name: &'static str,
    /// What was compared, for reports.
    pub what: &'static str,
    /// The measured difference.
    pub value: f64,
    /// The largest difference that passes.
    pub limit: f64,
}

impl ParityCheck {
    /// Whether the difference is within the limit (a NaN never is).
    pub fn passed(&self) -> bool {
        self.value <= self.limit
    }
}

impl Parity {
    /// |loss_f32 - loss_bf16| / loss_f32.
    pub fn loss_rel_diff(&self) -> f64 {
        (self.loss_f32 - self.loss_bf16).abs() / self.loss_f32.abs()
    }

    /// The four differences, each with its limit (the [module docs](self)).
    pub fn checks(&self) -> [ParityCheck; 4] {
        [
            ParityCheck {
                name: "init",
                what: "max |w_cpu - w_dev|, seeded initial weights",
                value: self.init_max_abs_diff,
                limit: 0.0,
            },
            ParityCheck {
                name: "logits",
                what: "max |logits_cpu - logits_dev|, f32",
                value: self.logits_max_abs_diff,
                limit: LOGITS_LIMIT,
            },
            ParityCheck {
                name: "bf16_loss",
                what: "|loss_cpu_f32 - loss_dev_bf16| / loss_cpu_f32",
                value: self.loss_rel_diff(),
                limit: BF16_LOSS_LIMIT,
            },
            ParityCheck {
                name: "step",
                what: "max |w_cpu - w_dev| after one f32 update",
                value: self.step_max_abs_diff,
                limit: STEP_LIMIT,
            },
        ]
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks().iter().all(ParityCheck::passed)
    }
}

/// Measures the CPU against `device` on the first training batch of `cfg`; see the
/// [module docs](self). With `device` the CPU, every f32 difference is 0.
pub fn device_parity(cfg: &RunConfig, device: &Device) -> Result<Parity> {
    let data = run_dataset(cfg, None, &silent)?;
    let plan = cfg.data.batch_planner().plan(data.train.lengths(), cfg.train.seed, 1)?;
    let first = plan.batch(0).ok_or_else(|| TrainError::Config("parity: no training batch".into()))?;
    let pairs = data.train.read_batch(first)?;
    let rows: Vec<&TokenizedPair> = pairs.iter().collect();
    let vocab = data.tokenizer.vocab_size();
    let seed = cfg.train.seed;

    let model_cfg =
        ModelConfig { dropout: 0.0, attention_dropout: 0.0, activation_dropout: 0.0, ..cfg.model.clone() };
    let (cpu_model, cpu_vars) = build_model(&model_cfg, vocab, seed, &Device::Cpu)?;
    let (dev_model, dev_vars) = build_model(&model_cfg, vocab, seed, device)?;
    let cpu_batch = collate(&rows, cpu_model.tokens(), &Device::Cpu)?;
    let dev_batch = collate(&rows, dev_model.tokens(), device)?;
    let init_max_abs_diff = max_var_diff(&cpu_vars, &dev_vars)?;

    let cpu_logits = cpu_model.forward(&cpu_batch.src, &cpu_batch.tgt_in, None)?;
    let dev_logits = dev_model.forward(&dev_batch.src, &dev_batch.tgt_in, None)?;
    let logits_max_abs_diff = max_abs_diff(&cpu_logits, &dev_logits)?;

    let smoothing = cfg.train.label_smoothing;
    let loss_f32 = loss_per_token(&cpu_model, &cpu_batch, smoothing)?;
    let bf16_model = cast_model(&dev_model, &dev_vars, DType::BF16)?;
    let loss_bf16 = loss_per_token(&bf16_model, &dev_batch, smoothing)?;

    let options =
        StepOptions { lr: cfg.train.lr, clip_norm: cfg.train.clip_norm, label_smoothing: smoothing };
    for (model, vars, batch) in [(&cpu_model, &cpu_vars, &cpu_batch), (&dev_model, &dev_vars, &dev_batch)] {
        let mut optimizer = Adam::for_varmap(vars, adam_params(cfg))?;
        let mut rng = DropoutRng::new(seed.wrapping_add(1));
        train_step(
            &SingleProcess,
            model,
            &mut optimizer,
            std::slice::from_ref(batch),
            options,
            &mut rng,
            None,
        )?;
    }
    let step_max_abs_diff = max_var_diff(&cpu_vars, &dev_vars)?;

    Ok(Parity {
        sentences: rows.len(),
        target_tokens: cpu_batch.tgt_tokens,
        variables: cpu_vars.all_vars().len(),
        init_max_abs_diff,
        logits_max_abs_diff,
        loss_f32,
        loss_bf16,
        step_max_abs_diff,
    })
}

/// The label-smoothed loss of `batch` per target token, without dropout.
fn loss_per_token(model: &Seq2Seq, batch: &TensorBatch, smoothing: f64) -> Result<f64> {
    let logits = model.forward(&batch.src, &batch.tgt_in, None)?;
    let targets = batch.tgt_out.flatten_all()?;
    let sums = label_smoothed_cross_entropy(&logits.flatten_to(1)?, &targets, model.tokens().pad, smoothing)?;
    Ok(sums.smoothed.to_scalar::<f32>()? as f64 / batch.tgt_tokens.max(1) as f64)
}

/// Largest difference between same-named variables of two maps; a variable missing from
/// either, or of another shape, is an error.
fn max_var_diff(a: &VarMap, b: &VarMap) -> Result<f64> {
    let a = a.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let b = b.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if a.len() != b.len() {
        return Err(mismatch(format!("{} variables against {}", a.len(), b.len())));
    }
    let mut max = 0.0f64;
    for (name, var) in a.iter() {
        let other = b.get(name).ok_or_else(|| mismatch(format!("no variable {name}")))?;
        max = nan_max(max, max_abs_diff(var.as_tensor(), other.as_tensor())?);
    }
    Ok(max)
}

/// Largest |a - b| over all elements, compared on the host in f32; NaN if either holds a NaN.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.shape() != b.shape() {
        return Err(mismatch(format!("shapes {:?} and {:?}", a.shape(), b.shape())));
    }
    let host = |t: &Tensor| -> candle_core::Result<Vec<f32>> {
        t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
    };
    let (a, b) = (host(a)?, host(b)?);
    Ok(a.iter().zip(&b).fold(0.0, |max, (x, y)| nan_max(max, (x - y).abs() as f64)))
}

/// An error for two things that should have matched.
fn mismatch(message: String) -> TrainError {
    candle_core::Error::Msg(format!("parity: {message}")).into()
}

/// The larger of two differences, NaN winning.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_exact_and_nan_fails() {
        let a = Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1.0f32, 2.5, 2.0], &Device::Cpu).unwrap();
        assert_eq!(max_abs_diff(&a, &b).unwrap(), 1.0);
        let nan = Tensor::new(&[1.0f32, f32::NAN, 3.0], &Device::Cpu).unwrap();
        assert!(max_abs_diff(&a, &nan).unwrap().is_nan());
        let check = ParityCheck { name: "x", what: "x", value: f64::NAN, limit: 1.0 };
        assert!(!check.passed());
    }

    #[test]
    fn checks_hold_each_difference_against_its_limit() {
        let parity = Parity {
            sentences: 2,
            target_tokens: 9,
            variables: 3,
            init_max_abs_diff: 0.0,
            logits_max_abs_diff: 5e-5,
            loss_f32: 4.0,
            loss_bf16: 4.08,
            step_max_abs_diff: 1e-6,
        };
        let passed: Vec<bool> = parity.checks().iter().map(ParityCheck::passed).collect();
        // The loss differs by 0.08 / 4 = 2%, over the 1% limit.
        assert_eq!(passed, [true, true, false, true]);
        assert!(!parity.passed());
        assert!((parity.loss_rel_diff() - 0.02).abs() < 1e-12);
    }
}
