//! Benchmarks: training steps on real batches, and the arithmetic that turns step times into
//! achieved FLOP/s and model FLOP utilisation (MFU) against the same machine's matmul.
//!
//! Model FLOPs count the matrix multiplications of the Transformer over the padded batch (2
//! FLOPs per multiply-add), as in Kaplan et al. 2020 and the PaLM paper's MFU; element-wise
//! work (softmax, norms, dropout) is left out. One forward pass over a batch of `b` sentences
//! padded to `s` source and `t` target positions, width `d`, feed-forward width `f`, vocabulary
//! `v`:
//!
//! - each encoder layer: `8·b·s·d²` (Q, K, V, O) `+ 4·b·s²·d` (scores, context) `+ 4·b·s·d·f`;
//! - each decoder layer: `8·b·t·d² + 4·b·t²·d` (self-attention) `+ 4·b·t·d² + 4·b·s·d²`
//!   (cross-attention projections) `+ 4·b·t·s·d` (cross scores, context) `+ 4·b·t·d·f`;
//! - the output projection: `2·b·t·d·v`.
//!
//! A training step costs three forward passes (the backward pass is two).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use locus_model::{DropoutRng, ModelConfig};

use crate::batch::load_update;
use crate::config::RunConfig;
use crate::distributed::Communicator;
use crate::error::Result;
use crate::progress::Observer;
use crate::setup::RunSetup;
use crate::step::{train_step, StepOptions};

/// One timed training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedStep {
    /// Wall time of the update, batch collation included (rank 0's in a data-parallel job).
    pub seconds: f64,
    /// Of that, the time spent summing the update over the ranks (0 in one process).
    pub comm_seconds: f64,
    /// Of that, the time spent collating the batches (token ids to padded tensors): what
    /// preparing batches on a background thread could hide.
    pub prepare_seconds: f64,
    /// Real (non-padding) source plus target tokens, over every rank.
    pub real_tokens: usize,
    /// Real target tokens (EOS included), over every rank.
    pub target_tokens: usize,
    /// Padded target positions: sentences × longest target, over every rank.
    pub padded_target_positions: usize,
    /// Model FLOPs of the step ([`train_step_flops`]), over every rank.
    pub flops: f64,
}

/// What [`bench_train`] measured.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// The timed steps, in order.
    pub steps: Vec<TimedStep>,
    /// Trainable parameters.
    pub parameters: usize,
    /// Size of the vocabulary trained on the corpus.
    pub vocab_size: usize,
}

/// Runs `warmup` untimed then `steps` timed training updates of the model `cfg` describes on
/// real batches of its training data, set up as `locus train` sets up a new run (tokenizer
/// trained on the corpus, batches in the seeded order of epoch 1, then 2, ...) in
/// `train.precision`; no validation, no checkpoints. In a data-parallel job every rank trains
/// on its share of each batch, as in `locus train`, and the counts are the whole job's.
pub fn bench_train(
    cfg: &RunConfig,
    device: &Device,
    steps: usize,
    warmup: usize,
    progress: Observer,
    comm: &dyn Communicator,
) -> Result<TrainBench> {
    let RunSetup { model, varmap, tokenizer, mut optimizer, state, data, planner, plan, schedule, .. } =
        RunSetup::prepare(cfg, device, None, progress, comm)?;
    let train = &cfg.train;
    let mut rng = DropoutRng::on_stream(train.seed.wrapping_add(1), comm.rank() as u64);
    let mut loss_scale = state.loss_scale;
    let later_epochs = (2u64..).map(|epoch| planner.plan(data.train.lengths(), train.seed, epoch));
    let plans = std::iter::once(Ok(plan)).chain(later_epochs);
    let mut timed = Vec::with_capacity(steps);
    let mut step = 0;
    'epochs: for plan in plans {
        let plan = plan?;
        let batches_of_epoch: Vec<&[u32]> = plan.iter().collect();
        for group in batches_of_epoch.chunks(train.update_freq) {
            step += 1;
            let started = Instant::now();
            let update = load_update(&data.train, group.iter().copied(), comm, model.tokens(), device)?;
            let prepare_seconds = started.elapsed().as_secs_f64();
            let options = StepOptions {
                lr: schedule.at(step),
                clip_norm: train.clip_norm,
                label_smoothing: train.label_smoothing,
            };
            // As `locus train`: in bf16 or f16, a low-precision copy of the weights per update.
            let step_model = train.precision.step_model(&model, &varmap)?;
            let stats = train_step(
                comm,
                &step_model,
                &mut optimizer,
                &update.batches,
                options,
                &mut rng,
                loss_scale.as_mut(),
            )?;
            // The step reads nothing back, so a GPU may still be working on it.
            device.synchronize()?;
            let seconds = started.elapsed().as_secs_f64();
            if step > warmup {
                let mut measured = TimedStep {
                    seconds,
                    comm_seconds: stats.comm_seconds,
                    prepare_seconds,
                    real_tokens: update.real_tokens,
                    target_tokens: 0,
                    padded_target_positions: 0,
                    flops: 0.0,
                };
                for batch in &update.batches {
                    let (b, s) = batch.src.dims2()?;
                    let t = batch.tgt_in.dim(1)?;
                    measured.target_tokens += batch.tgt_tokens;
                    measured.padded_target_positions += b * t;
                    measured.flops += train_step_flops(&cfg.model, tokenizer.vocab_size(), b, s, t);
                }
                timed.push(measured);
            }
            if step >= warmup + steps {
                break 'epochs;
            }
        }
    }
    // This rank's counts, summed over the ranks.
    let local: Vec<f64> = timed
        .iter()
        .flat_map(|step| [step.target_tokens as f64, step.padded_target_positions as f64, step.flops])
        .collect();
    for (step, sums) in timed.iter_mut().zip(comm.sum_host(&local)?.chunks(3)) {
        (step.target_tokens, step.padded_target_positions) = (sums[0] as usize, sums[1] as usize);
        step.flops = sums[2];
    }
    let parameters = varmap.all_vars().iter().map(|var| var.elem_count()).sum();
    Ok(TrainBench { steps: timed, parameters, vocab_size: tokenizer.vocab_size() })
}

/// Matmul FLOPs of one forward pass over a padded batch; see the [module docs](self).
pub fn forward_flops(cfg: &ModelConfig, vocab: usize, b: usize, s: usize, t: usize) -> f64 {
    let (b, s, t) = (b as f64, s as f64, t as f64);
    let (d, f, v) = (cfg.d_model as f64, cfg.d_ff as f64, vocab as f64);
    let encoder_layer = 8.0 * b * s * d * d + 4.0 * b * s * s * d + 4.0 * b * s * d * f;
    let decoder_layer = 8.0 * b * t * d * d
        + 4.0 * b * t * t * d
        + 4.0 * b * t * d * d
        + 4.0 * b * s * d * d
        + 4.0 * b * t * s * d
        + 4.0 * b * t * d * f;
    cfg.encoder_layers as f64 * encoder_layer
        + cfg.decoder_layers as f64 * decoder_layer
        + 2.0 * b * t * d * v
}

/// Matmul FLOPs of one training step (forward and backward) over a padded batch.
pub fn train_step_flops(cfg: &ModelConfig, vocab: usize, b: usize, s: usize, t: usize) -> f64 {
    3.0 * forward_flops(cfg, vocab, b, s, t)
}

/// The formula behind [`forward_flops`], for reports.
pub const FLOPS_FORMULA: &str = "train = 3 x forward; forward = L_enc (8 b s d^2 + 4 b s^2 d + 4 b s d f) \
     + L_dec (12 b t d^2 + 4 b s d^2 + 4 b t^2 d + 4 b t s d + 4 b t d f) + 2 b t d v";

/// Median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The value below which a fraction `q` of `values` lies (nearest rank); 0 for none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// FLOP/s of a `(m × k) · (k × n)` matmul in `dtype` on `device`: the median of `repeats`
/// timed runs after one untimed run.
pub fn matmul_flops_per_sec(
    m: usize,
    k: usize,
    n: usize,
    dtype: DType,
    device: &Device,
    repeats: usize,
) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (m, k), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (k, n), device)?.to_dtype(dtype)?;
    let run = || -> Result<f64> {
        let started = Instant::now();
        let c = a.matmul(&b)?;
        // Reading one value waits for the device to finish.
        c.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        Ok(started.elapsed().as_secs_f64())
    };
    run()?;
    let seconds: Vec<f64> = (0..repeats.max(1)).map(|_| run()).collect::<Result<_>>()?;
    Ok(2.0 * (m * k * n) as f64 / median(&seconds))
}

/// The shape `(m, k, n)` of the matmul whose rate MFU is measured against: on the CPU, a typical
/// batch's `positions` through the first feed-forward layer (`d_model × d_ff`), a product the
/// model really computes; on a GPU, where so small a product cannot fill the device,
/// 8192 × 8192 × 8192, near the device's peak.
pub fn reference_matmul_shape(device: &Device, positions: usize, cfg: &ModelConfig) -> (usize, usize, usize) {
    match device {
        Device::Cpu => (positions.max(1), cfg.d_model, cfg.d_ff),
        _ => (8192, 8192, 8192),
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_of_a_small_model_by_hand() {
        // d 2, f 3, v 5, one layer each, b 1, s 2, t 1:
        // encoder 8·1·2·4 + 4·1·4·2 + 4·1·2·2·3 = 64 + 32 + 48 = 144;
        // decoder 8·4 + 4·1·2 + 4·4 + 4·2·4 + 4·1·2·2 + 4·2·3 = 32 + 8 + 16 + 32 + 16 + 24 = 128;
        // output 2·1·2·5 = 20; total 292, training 876.
        let cfg = ModelConfig {
            d_model: 2,
            n_heads: 1,
            d_ff: 3,
            encoder_layers: 1,
            decoder_layers: 1,
            ..ModelConfig::tiny()
        };
        assert_eq!(forward_flops(&cfg, 5, 1, 2, 1), 292.0);
        assert_eq!(train_step_flops(&cfg, 5, 1, 2, 1), 876.0);
    }

    #[test]
    fn median_and_quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.95), 95.0);
        assert_eq!(quantile(&[7.0], 0.95), 7.0);
    }

    #[test]
    fn the_reference_matmul_is_the_models_on_the_cpu() {
        let cfg = ModelConfig { d_model: 256, d_ff: 1024, ..ModelConfig::tiny() };
        assert_eq!(reference_matmul_shape(&Device::Cpu, 4094, &cfg), (4094, 256, 1024));
        assert_eq!(reference_matmul_shape(&Device::Cpu, 0, &cfg), (1, 256, 1024));
    }

    #[test]
    fn matmul_rate_is_positive() {
        for dtype in [DType::F32, DType::BF16] {
            assert!(matmul_flops_per_sec(32, 32, 32, dtype, &Device::Cpu, 3).unwrap() > 0.0);
        }
    }
}
