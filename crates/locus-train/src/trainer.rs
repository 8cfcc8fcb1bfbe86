//! The training loop, top to bottom: start afresh (read the corpora, train the tokenizer, build
//! the model) or resume from a checkpoint, then update, log, validate, checkpoint and decide
//! whether to stop, until `train.max_steps` or `train.max_epochs`, early stopping, or an
//! interruption.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use locus_data::{filter_pairs, ParallelCorpus, SubwordTokenizer, TokenizedPair};
use locus_model::{DropoutRng, Seq2Seq};
use serde_json::json;

use crate::batch::collate;
use crate::checkpoint::{
    load_checkpoint, load_optimizer_state, save_checkpoint, CheckpointContents, BEST, LAST,
};
use crate::config::RunConfig;
use crate::early_stopping::BestTracker;
use crate::error::{Result, TrainError};
use crate::evaluate::{validate, ValidationSet};
use crate::log::MetricsLog;
use crate::loss::sum_loss_rows;
use crate::modeling::build_model;
use crate::optim::{Adam, AdamParams};
use crate::precision::Precision;
use crate::schedule::LrSchedule;
use crate::state::{TrainerState, ValidScores};
use crate::step::{train_step, StepOptions, StepStats};

/// How a call to [`train`] runs, apart from the config.
pub struct TrainOptions<'a> {
    /// Draw a progress bar on stderr.
    pub show_progress: bool,
    /// Continue from this checkpoint directory instead of starting afresh.
    pub resume: Option<PathBuf>,
    /// Asked after every update with its number; `true` ends the run with a checkpoint, as
    /// SIGINT and SIGTERM do in `locus train`.
    pub should_stop: &'a dyn Fn(usize) -> bool,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `train.max_steps` updates were applied.
    MaxSteps,
    /// `train.max_epochs` passes over the data were made.
    MaxEpochs,
    /// `train.patience` validations in a row did not improve on the best.
    EarlyStopping,
    /// [`TrainOptions::should_stop`] asked to stop.
    Interrupted,
}

impl StopReason {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::MaxSteps => "max_steps",
            Self::MaxEpochs => "max_epochs",
            Self::EarlyStopping => "early_stopping",
            Self::Interrupted => "interrupted",
        }
    }
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Updates applied, over every session of the run.
    pub steps: usize,
    /// Why it ended.
    pub stop: StopReason,
    /// Scores of the last validation, if any ran.
    pub last_valid: Option<ValidScores>,
    /// The best validation and when it happened.
    pub best: BestTracker,
    /// Training seconds of this session, data preparation included.
    pub wall_secs: f64,
    /// Real (non-padding) source + target tokens per second of this session's updates.
    pub tokens_per_sec: f64,
    /// Number of trainable parameters.
    pub parameters: usize,
    /// The run directory.
    pub out_dir: PathBuf,
    /// The newest checkpoint.
    pub last_checkpoint: Option<PathBuf>,
}

/// Running sums between two log lines. The updates' losses and gradient norms stay on the
/// model's device (`pending`) until [`Window::read`] copies them: once per log line, and before
/// every validation and checkpoint, so that a GPU is never made to wait after each update.
#[derive(Default)]
struct Window {
    /// Updates not yet read, with their step numbers.
    pending: Vec<(usize, StepStats)>,
    loss: f64,
    nll: f64,
    target_tokens: usize,
    real_tokens: usize,
    grad_norm: f64,
    updates: usize,
    skipped: usize,
    seconds: f64,
}

impl Window {
    /// Copies the pending updates' numbers from the device (two transfers) into the sums. A
    /// skipped update's loss still measures the weights (unless its forward pass overflowed
    /// too); its gradient norm does not count. Returns the seconds spent, mostly waiting for
    /// the device to finish the updates, which count as update time (also in `seconds`).
    ///
    /// # Errors
    /// [`TrainError::Diverged`] naming the first update, not skipped, whose loss is not finite.
    fn read(&mut self) -> Result<f64> {
        if self.pending.is_empty() {
            return Ok(0.0);
        }
        let started = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let sums: Vec<&Tensor> = pending.iter().map(|(_, stats)| &stats.losses.sums).collect();
        let norms: Vec<&Tensor> = pending.iter().map(|(_, stats)| &stats.grad_norm).collect();
        let rows = Tensor::cat(&sums, 0)?.to_vec2::<f32>()?;
        let norms = Tensor::stack(&norms, 0)?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
        let mut rows = rows.as_slice();
        for ((step, stats), norm) in pending.iter().zip(norms) {
            let (update_rows, rest) = rows.split_at(stats.losses.sums.dim(0)?);
            rows = rest;
            let (loss, nll) = sum_loss_rows(update_rows);
            if stats.skipped {
                self.skipped += 1;
            } else if !loss.is_finite() {
                return Err(TrainError::Diverged { step: *step, loss });
            } else {
                self.grad_norm += norm;
                self.updates += 1;
            }
            if loss.is_finite() {
                self.loss += loss;
                self.nll += nll;
                self.target_tokens += stats.losses.target_tokens;
            }
        }
        let waited = started.elapsed().as_secs_f64();
        self.seconds += waited;
        Ok(waited)
    }
}

/// Prints a line above the progress bar; on stderr even when the bar is hidden (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    bar.suspend(|| eprintln!("{line}"));
}

fn progress_bar(total_steps: usize, position: usize, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_steps as u64);
    let style = ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps | {msg} | {per_sec} | ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_position(position as u64);
    bar.reset_eta();
    bar
}

/// The model, its tokenizer, optimiser and the trainer's position, new or from a checkpoint.
struct Start {
    model: Seq2Seq,
    varmap: VarMap,
    tokenizer: SubwordTokenizer,
    optimizer: Adam,
    state: TrainerState,
}

/// The optimiser settings of `cfg`'s `[train]` section.
pub(crate) fn adam_params(cfg: &RunConfig) -> AdamParams {
    let train = &cfg.train;
    AdamParams {
        kind: train.optimizer,
        beta1: train.adam_betas[0],
        beta2: train.adam_betas[1],
        eps: train.adam_eps,
        weight_decay: train.weight_decay,
    }
}

/// A new run: refuses a directory that already holds one, trains the tokenizer, seeds the model.
fn start_afresh(cfg: &RunConfig, corpus: &ParallelCorpus, device: &Device) -> Result<Start> {
    let out_dir = &cfg.train.out_dir;
    if out_dir.join(LAST).symlink_metadata().is_ok() {
        return Err(TrainError::Config(format!(
            "{} already holds a run (it has a `last` checkpoint); continue it with `locus train --resume {0}`, \
             or choose another train.out_dir",
            out_dir.display()
        )));
    }
    let texts = corpus.src.iter().chain(&corpus.tgt);
    let tokenizer = SubwordTokenizer::train(cfg.data.tokenizer, cfg.data.vocab_size, texts)?;
    let (model, varmap) = build_model(&cfg.model, tokenizer.vocab_size(), cfg.train.seed, device)?;
    let optimizer = Adam::for_varmap(&varmap, adam_params(cfg))?;
    let state = TrainerState {
        step: 0,
        epoch: 1,
        epoch_batches_done: 0,
        lr: 0.0,
        dropout_rng: DropoutRng::new(cfg.train.seed.wrapping_add(1)).state(),
        best: BestTracker::default(),
        last_valid: None,
        wall_s: 0.0,
        skipped_updates: 0,
        loss_scale: cfg.train.precision.loss_scaler(cfg.train.loss_scale_init),
    };
    Ok(Start { model, varmap, tokenizer, optimizer, state })
}

/// A resumed run: the checkpoint's weights, tokenizer, moments and position. The model
/// section of `cfg` must match the checkpoint's; the rest may change (e.g. `max_steps`).
fn resume_from(cfg: &RunConfig, dir: &Path, device: &Device) -> Result<Start> {
    let checkpoint = load_checkpoint(dir, device)?;
    if checkpoint.config.model != cfg.model {
        return Err(TrainError::Checkpoint {
            path: dir.to_path_buf(),
            message: "its [model] section differs from the config's; a run resumes with the architecture \
                      it was trained with"
                .into(),
        });
    }
    let mut optimizer = Adam::for_varmap(&checkpoint.varmap, adam_params(cfg))?;
    let moments = load_optimizer_state(dir, device)?;
    optimizer.load_state(&moments, checkpoint.state.applied_updates()).map_err(|e| {
        TrainError::Checkpoint {
            path: dir.to_path_buf(),
            message: format!("optimizer state does not match the model: {e}"),
        }
    })?;
    let (model, varmap, tokenizer, mut state) =
        (checkpoint.model, checkpoint.varmap, checkpoint.tokenizer, checkpoint.state);
    // The checkpoint's loss scale if it has one and this run scales its loss; a fresh one if
    // it starts to (a run switched to f16); none if it stops.
    state.loss_scale = cfg
        .train
        .precision
        .loss_scaler(cfg.train.loss_scale_init)
        .map(|fresh| state.loss_scale.unwrap_or(fresh));
    Ok(Start { model, varmap, tokenizer, optimizer, state })
}

/// Trains a model as `cfg` describes, on `device`, writing everything to `cfg.train.out_dir`.
pub fn train(cfg: &RunConfig, device: &Device, options: TrainOptions) -> Result<TrainSummary> {
    let started = Instant::now();
    let train_cfg = &cfg.train;
    let out_dir = train_cfg.out_dir.clone();
    fs::create_dir_all(&out_dir).map_err(|e| TrainError::io(&out_dir, e))?;

    // Data, then the model: new, or where the checkpoint left it.
    let train_corpus = ParallelCorpus::read(&cfg.data.train_src, &cfg.data.train_tgt)?;
    let valid_corpus = ParallelCorpus::read(&cfg.data.valid_src, &cfg.data.valid_tgt)?;
    let Start { model, varmap, tokenizer, mut optimizer, mut state } = match &options.resume {
        Some(dir) => resume_from(cfg, dir, device)?,
        None => start_afresh(cfg, &train_corpus, device)?,
    };
    let mut log = MetricsLog::open(&out_dir.join("metrics.jsonl"), options.resume.is_none())?;
    let config_path = out_dir.join("config.toml");
    fs::write(&config_path, cfg.to_toml()?).map_err(|e| TrainError::io(&config_path, e))?;
    tokenizer.save(&out_dir.join("tokenizer.json"))?;
    // `data.max_train_len` applies to the training pairs only.
    let (train_pairs, train_report) = cfg.data.filter_train(tokenizer.encode_corpus(&train_corpus)?);
    let (valid_pairs, valid_report) =
        filter_pairs(tokenizer.encode_corpus(&valid_corpus)?, &cfg.data.length_filter());
    let valid_set =
        ValidationSet { pairs: &valid_pairs, sources: &valid_corpus.src, references: &valid_corpus.tgt };
    let lengths: Vec<(usize, usize)> = train_pairs.iter().map(TokenizedPair::lengths).collect();
    let planner = cfg.data.batch_planner();
    let mut plan = planner.plan(&lengths, train_cfg.seed, state.epoch as u64)?;
    let updates_per_epoch = plan.len().div_ceil(train_cfg.update_freq);
    let epoch_limit = train_cfg.max_epochs.map(|epochs| epochs * updates_per_epoch);
    let total_steps = train_cfg.max_steps.unwrap_or(usize::MAX).min(epoch_limit.unwrap_or(usize::MAX));
    let schedule = LrSchedule {
        kind: train_cfg.schedule,
        lr: train_cfg.lr,
        warmup: train_cfg.warmup_steps,
        min_lr: train_cfg.min_lr,
        total_steps,
        d_model: cfg.model.d_model,
    };
    let parameters: usize = varmap.all_vars().iter().map(|var| var.elem_count()).sum();

    let bar = progress_bar(total_steps, state.step, options.show_progress);
    say(&bar, format!("train: {train_report}\nvalid: {valid_report}"));
    say(&bar, format!("model: {parameters} parameters; {updates_per_epoch} updates per epoch"));
    let precision = train_cfg.precision;
    if precision != Precision::F32 && device.is_cpu() {
        say(
            &bar,
            format!(
                "train.precision = \"{}\" on the CPU: slow (the fused kernels are f32 only), for testing",
                precision.name()
            ),
        );
    }
    log.write(&json!({
        "event": "data", "vocab_size": tokenizer.vocab_size(),
        "train_pairs": train_pairs.len(), "train_dropped": train_report.dropped(),
        "valid_pairs": valid_pairs.len(), "valid_dropped": valid_report.dropped(),
        "updates_per_epoch": updates_per_epoch,
    }))?;
    log.write(&json!({ "event": "model", "parameters": parameters }))?;
    if let Some(dir) = &options.resume {
        say(&bar, format!("resuming from {} at update {}, epoch {}", dir.display(), state.step, state.epoch));
        log.write(&json!({ "event": "resume", "step": state.step, "from": dir, "wall_s": state.wall_s }))?;
    }

    let mut dropout_rng = DropoutRng::from_state(&state.dropout_rng);
    let session_wall_offset = state.wall_s;
    let mut window = Window::default();
    let (mut real_tokens_total, mut update_secs_total) = (0usize, 0f64);
    let mut last_checkpoint = None;
    let stop = loop {
        if state.step >= total_steps {
            break if train_cfg.max_steps.is_some_and(|max| state.step >= max) {
                StopReason::MaxSteps
            } else {
                StopReason::MaxEpochs
            };
        }
        if state.epoch_batches_done >= plan.len() {
            state.epoch += 1;
            state.epoch_batches_done = 0;
            plan = planner.plan(&lengths, train_cfg.seed, state.epoch as u64)?;
        }

        // One update over `update_freq` batches.
        let update_started = Instant::now();
        let group_end = (state.epoch_batches_done + train_cfg.update_freq).min(plan.len());
        let batches = plan[state.epoch_batches_done..group_end]
            .iter()
            .map(|indices| {
                let pairs: Vec<&TokenizedPair> = indices.iter().map(|&i| &train_pairs[i]).collect();
                collate(&pairs, model.tokens(), device)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        state.step += 1;
        state.epoch_batches_done = group_end;
        state.lr = schedule.at(state.step);
        let step_options = StepOptions {
            lr: state.lr,
            clip_norm: train_cfg.clip_norm,
            label_smoothing: train_cfg.label_smoothing,
        };
        // In bf16 or f16, a low-precision copy of the weights as they are now.
        let step_model = precision.step_model(&model, &varmap)?;
        let stats = train_step(
            &step_model,
            &mut optimizer,
            &batches,
            step_options,
            &mut dropout_rng,
            state.loss_scale.as_mut(),
        )?;
        if stats.skipped {
            state.skipped_updates += 1;
            if let Some(scaler) = state.loss_scale.filter(|scaler| scaler.exhausted()) {
                return Err(TrainError::LossScaleExhausted { step: state.step, scale: scaler.scale });
            }
        }
        let seconds = update_started.elapsed().as_secs_f64();
        let real_tokens: usize = batches.iter().map(|b| b.src_tokens + b.tgt_tokens).sum();
        window.pending.push((state.step, stats));
        window.real_tokens += real_tokens;
        window.seconds += seconds;
        real_tokens_total += real_tokens;
        update_secs_total += seconds;
        state.wall_s = session_wall_offset + started.elapsed().as_secs_f64();
        bar.set_position(state.step as u64);
        let step = state.step;
        let last_update = step == total_steps;

        if step.is_multiple_of(train_cfg.log_interval) || last_update {
            update_secs_total += window.read()?;
            let w = std::mem::take(&mut window);
            let loss = w.loss / w.target_tokens as f64;
            let nll = w.nll / w.target_tokens as f64;
            let tokens_per_s = w.real_tokens as f64 / w.seconds;
            bar.set_message(format!(
                "epoch {} | loss {loss:.3} | lr {:.2e} | {tokens_per_s:.0} tok/s",
                state.epoch, state.lr
            ));
            let mut record = json!({
                "event": "train", "step": step, "epoch": state.epoch, "loss": loss, "nll": nll,
                "ppl": nll.exp(), "lr": state.lr, "grad_norm": w.grad_norm / w.updates as f64,
                "tokens_per_s": tokens_per_s, "wall_s": state.wall_s,
            });
            if let Some(scaler) = &state.loss_scale {
                record["loss_scale"] = json!(scaler.scale);
                record["skipped"] = json!(w.skipped);
                record["skipped_updates"] = json!(state.skipped_updates);
            }
            log.write(&record)?;
        }

        let mut improved = false;
        if step.is_multiple_of(train_cfg.valid_interval) || last_update {
            update_secs_total += window.read()?;
            let valid = validate(
                &model,
                &tokenizer,
                &valid_set,
                cfg.data.max_tokens,
                train_cfg.label_smoothing,
                train_cfg.valid_bleu,
            )?;
            let metric = train_cfg.best_metric;
            let score = valid.score(metric).ok_or_else(|| {
                TrainError::Config(format!("train.best_metric {} was not measured", metric.name()))
            })?;
            improved = state.best.observe(metric, step, score);
            state.last_valid = Some(valid);
            state.wall_s = session_wall_offset + started.elapsed().as_secs_f64();
            log.write(&json!({
                "event": "valid", "step": step, "epoch": state.epoch, "loss": valid.loss, "nll": valid.nll,
                "ppl": valid.ppl(), "bleu": valid.bleu, "chrf": valid.chrf, "best": improved,
                "wall_s": state.wall_s,
            }))?;
            say(&bar, describe_validation(step, &valid, improved));
        }

        let early_stop = state.best.should_stop(train_cfg.patience);
        let interrupted = (options.should_stop)(step);
        if improved
            || step.is_multiple_of(train_cfg.save_interval)
            || last_update
            || early_stop
            || interrupted
        {
            // A diverged update must fail the run before its weights are saved.
            update_secs_total += window.read()?;
            state.dropout_rng = dropout_rng.state();
            let contents = CheckpointContents {
                varmap: &varmap,
                optimizer: &optimizer,
                state: &state,
                config: cfg,
                tokenizer: &tokenizer,
            };
            let links: &[&str] = if improved { &[LAST, BEST] } else { &[LAST] };
            last_checkpoint = Some(save_checkpoint(&out_dir, &contents, links, train_cfg.keep_last)?);
        }
        if early_stop {
            say(
                &bar,
                format!(
                    "early stopping: no better {} for {} validations",
                    train_cfg.best_metric.name(),
                    state.best.stale_validations
                ),
            );
            break StopReason::EarlyStopping;
        }
        if interrupted {
            break StopReason::Interrupted;
        }
    };
    bar.finish_and_clear();
    log.write(
        &json!({ "event": "stop", "step": state.step, "reason": stop.name(), "wall_s": state.wall_s }),
    )?;
    Ok(TrainSummary {
        steps: state.step,
        stop,
        last_valid: state.last_valid,
        best: state.best,
        wall_secs: started.elapsed().as_secs_f64(),
        tokens_per_sec: real_tokens_total as f64 / update_secs_total.max(1e-9),
        parameters,
        out_dir,
        last_checkpoint,
    })
}

/// One line about a validation, for the terminal.
fn describe_validation(step: usize, valid: &ValidScores, improved: bool) -> String {
    let mut line =
        format!("step {step}: valid loss {:.3}, nll {:.3}, ppl {:.2}", valid.loss, valid.nll, valid.ppl());
    if let (Some(bleu), Some(chrf)) = (valid.bleu, valid.chrf) {
        line += &format!(", BLEU {bleu:.2}, chrF {chrf:.2}");
    }
    if improved {
        line += " (best)";
    }
    line
}
