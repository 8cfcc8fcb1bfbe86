//! The training loop, top to bottom: read the corpora, train the tokenizer, build the model,
//! then update, log, validate and checkpoint until `train.max_steps`.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use locus_data::{filter_pairs, ParallelCorpus, SubwordTokenizer, TokenizedPair};
use locus_model::DropoutRng;
use serde_json::json;

use crate::batch::collate;
use crate::checkpoint::{save_checkpoint, CheckpointState};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::evaluate::{corpus_loss, CorpusLoss};
use crate::log::MetricsLog;
use crate::modeling::build_model;
use crate::optim::{AdamParams, AdamW};
use crate::schedule::inverse_sqrt;
use crate::step::{train_step, StepOptions};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Updates applied.
    pub steps: usize,
    /// Validation losses at the last step.
    pub last_valid: CorpusLoss,
    /// Best validation negative log-likelihood per token.
    pub best_valid_nll: f64,
    /// Wall time of the whole run, data preparation included.
    pub wall_secs: f64,
    /// Real (non-padding) source + target tokens per second of training updates.
    pub tokens_per_sec: f64,
    /// Number of trainable parameters.
    pub parameters: usize,
    /// The run directory.
    pub out_dir: PathBuf,
}

/// Running sums between two log lines.
#[derive(Default)]
struct Window {
    loss: f64,
    nll: f64,
    target_tokens: usize,
    real_tokens: usize,
    grad_norm: f64,
    updates: usize,
    seconds: f64,
}

/// Prints a line above the progress bar; on stderr even when the bar is hidden (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    bar.suspend(|| eprintln!("{line}"));
}

fn progress_bar(max_steps: usize, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(max_steps as u64);
    let style = ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps | {msg} | {per_sec} | ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

/// Trains a model as `cfg` describes, on `device`, writing everything to `cfg.train.out_dir`.
/// `show_progress` draws a progress bar on stderr.
pub fn train(cfg: &RunConfig, device: &Device, show_progress: bool) -> Result<TrainSummary> {
    let started = Instant::now();
    let train_cfg = &cfg.train;
    let out_dir = train_cfg.out_dir.clone();
    fs::create_dir_all(&out_dir).map_err(|e| TrainError::io(&out_dir, e))?;
    let config_path = out_dir.join("config.toml");
    fs::write(&config_path, cfg.to_toml()?).map_err(|e| TrainError::io(&config_path, e))?;
    let mut log = MetricsLog::open(&out_dir.join("metrics.jsonl"))?;
    let bar = progress_bar(train_cfg.max_steps, show_progress);

    // Data: corpora, a joint tokenizer trained on both sides, filtered token ids.
    let train_corpus = ParallelCorpus::read(&cfg.data.train_src, &cfg.data.train_tgt)?;
    let valid_corpus = ParallelCorpus::read(&cfg.data.valid_src, &cfg.data.valid_tgt)?;
    let texts = train_corpus.src.iter().chain(&train_corpus.tgt);
    let tokenizer = SubwordTokenizer::train(cfg.data.tokenizer, cfg.data.vocab_size, texts)?;
    tokenizer.save(&out_dir.join("tokenizer.json"))?;
    let filter = cfg.data.length_filter();
    let (train_pairs, train_report) = filter_pairs(tokenizer.encode_corpus(&train_corpus)?, &filter);
    let (valid_pairs, valid_report) = filter_pairs(tokenizer.encode_corpus(&valid_corpus)?, &filter);
    say(&bar, format!("train: {train_report}\nvalid: {valid_report}"));
    log.write(&json!({
        "event": "data", "vocab_size": tokenizer.vocab_size(),
        "train_pairs": train_pairs.len(), "train_dropped": train_report.dropped(),
        "valid_pairs": valid_pairs.len(), "valid_dropped": valid_report.dropped(),
    }))?;
    let lengths: Vec<(usize, usize)> = train_pairs.iter().map(TokenizedPair::lengths).collect();
    let planner = cfg.data.batch_planner();

    // Model and optimiser, both seeded.
    let (model, varmap) = build_model(&cfg.model, tokenizer.vocab_size(), train_cfg.seed, device)?;
    let params = AdamParams {
        beta1: train_cfg.adam_betas[0],
        beta2: train_cfg.adam_betas[1],
        eps: train_cfg.adam_eps,
        weight_decay: train_cfg.weight_decay,
    };
    let mut optimizer = AdamW::for_varmap(&varmap, params)?;
    let parameters: usize = varmap.all_vars().iter().map(|var| var.elem_count()).sum();
    log.write(&json!({ "event": "model", "parameters": parameters }))?;
    say(&bar, format!("model: {parameters} parameters"));
    let mut dropout_rng = DropoutRng::new(train_cfg.seed.wrapping_add(1));

    let mut step = 0;
    let mut epoch = 0;
    let mut window = Window::default();
    let mut real_tokens_total = 0usize;
    let mut update_secs_total = 0f64;
    let mut best_valid_nll = f64::INFINITY;
    let mut last_valid = None;
    'epochs: loop {
        epoch += 1;
        for indices in planner.plan(&lengths, train_cfg.seed, epoch as u64)? {
            let update_started = Instant::now();
            step += 1;
            let lr = inverse_sqrt(step, train_cfg.lr, train_cfg.warmup_steps);
            let batch_pairs: Vec<&TokenizedPair> = indices.iter().map(|&i| &train_pairs[i]).collect();
            let batch = collate(&batch_pairs, model.tokens(), device)?;
            let options = StepOptions {
                lr,
                clip_norm: train_cfg.clip_norm,
                label_smoothing: train_cfg.label_smoothing,
            };
            let stats = train_step(&model, &mut optimizer, &batch, options, &mut dropout_rng)?;
            if !stats.loss_sum.is_finite() {
                return Err(TrainError::Diverged { step, loss: stats.loss_sum });
            }
            let seconds = update_started.elapsed().as_secs_f64();
            window.loss += stats.loss_sum;
            window.nll += stats.nll_sum;
            window.target_tokens += stats.target_tokens;
            window.real_tokens += batch.src_tokens + batch.tgt_tokens;
            window.grad_norm += stats.grad_norm;
            window.updates += 1;
            window.seconds += seconds;
            real_tokens_total += batch.src_tokens + batch.tgt_tokens;
            update_secs_total += seconds;
            bar.set_position(step as u64);

            if step % train_cfg.log_interval == 0 || step == train_cfg.max_steps {
                let w = std::mem::take(&mut window);
                let loss = w.loss / w.target_tokens as f64;
                let tokens_per_s = w.real_tokens as f64 / w.seconds;
                bar.set_message(format!(
                    "epoch {epoch} | loss {loss:.3} | lr {lr:.2e} | {tokens_per_s:.0} tok/s"
                ));
                log.write(&json!({
                    "event": "train", "step": step, "epoch": epoch, "loss": loss,
                    "nll": w.nll / w.target_tokens as f64, "ppl": (w.nll / w.target_tokens as f64).exp(),
                    "lr": lr, "grad_norm": w.grad_norm / w.updates as f64,
                    "tokens_per_s": tokens_per_s, "wall_s": started.elapsed().as_secs_f64(),
                }))?;
            }

            if step % train_cfg.valid_interval == 0 || step == train_cfg.max_steps {
                let valid =
                    corpus_loss(&model, &valid_pairs, cfg.data.max_tokens, train_cfg.label_smoothing)?;
                log.write(&json!({
                    "event": "valid", "step": step, "epoch": epoch, "loss": valid.loss, "nll": valid.nll,
                    "ppl": valid.ppl(), "wall_s": started.elapsed().as_secs_f64(),
                }))?;
                say(
                    &bar,
                    format!(
                        "step {step}: valid loss {:.3}, nll {:.3}, ppl {:.2}",
                        valid.loss,
                        valid.nll,
                        valid.ppl()
                    ),
                );
                let state = CheckpointState { step, valid_nll: Some(valid.nll) };
                save_checkpoint(&out_dir, "last", state, &varmap, cfg, &tokenizer)?;
                if valid.nll < best_valid_nll {
                    best_valid_nll = valid.nll;
                    save_checkpoint(&out_dir, "best", state, &varmap, cfg, &tokenizer)?;
                }
                last_valid = Some(valid);
            }
            if step >= train_cfg.max_steps {
                break 'epochs;
            }
        }
    }
    bar.finish_and_clear();
    let last_valid = last_valid.ok_or_else(|| TrainError::Config("no validation ran".into()))?;
    Ok(TrainSummary {
        steps: step,
        last_valid,
        best_valid_nll,
        wall_secs: started.elapsed().as_secs_f64(),
        tokens_per_sec: real_tokens_total as f64 / update_secs_total.max(1e-9),
        parameters,
        out_dir,
    })
}
