//! The training loop, top to bottom: set-up (the data, the model new or resumed from a
//! checkpoint, the log), then for each update: its batches, forward and backward, the optimiser
//! step, then the periodic actions ([`crate::periodic`]): log, validate, save, stop; until
//! `train.max_steps` or `train.max_epochs`, early stopping, or an interruption.
//!
//! In a data-parallel job ([`crate::distributed`]) every rank runs this loop in step: each
//! trains on its share of every batch, validates its share of the validation set, and takes
//! every decision (stop, save, best) on numbers all ranks share. Rank 0 alone writes the log,
//! the config, the tokenizer and the checkpoints.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use locus_data::FilterReport;
use locus_model::DropoutRng;

use crate::batch::load_update;
use crate::checkpoint::{save_checkpoint, CheckpointContents, LAST};
use crate::config::RunConfig;
use crate::distributed::Communicator;
use crate::early_stopping::BestTracker;
use crate::error::{Result, TrainError};
use crate::evaluate::{validate, ValidationSet};
use crate::log::{
    DataRecord, Event, MetricsLog, ModelRecord, ResumeRecord, StopRecord, TrainRecord, ValidRecord,
};
use crate::loss::sum_loss_rows;
use crate::periodic::{Cadence, Outcome, StopReason};
use crate::precision::Precision;
use crate::progress::{Observer, Progress};
use crate::run_lock::RunLock;
use crate::setup::{valid_report, RunSetup};
use crate::state::{TrainerState, ValidScores};
use crate::step::{train_step, StepOptions, StepStats};

/// How a call to [`train`] runs, apart from the config.
pub struct TrainOptions<'a> {
    /// Receives the run's progress; [`crate::progress::silent`] shows none.
    pub progress: Observer<'a>,
    /// Continue from this checkpoint directory instead of starting afresh.
    pub resume: Option<PathBuf>,
    /// Asked after every update with its number; `true` ends the run with a checkpoint, as
    /// SIGINT and SIGTERM do in `locus train`. With several ranks, a stop asked on any rank stops all.
    pub should_stop: &'a dyn Fn(usize) -> bool,
    /// This process's place in the job: [`crate::distributed::SingleProcess`] when it trains
    /// alone.
    pub comm: &'a dyn Communicator,
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
    /// The newest checkpoint (written by rank 0; `None` on the other ranks).
    pub last_checkpoint: Option<PathBuf>,
}

/// Trains a model as `cfg` describes, on `device`, writing everything to `cfg.train.out_dir`.
pub fn train(cfg: &RunConfig, device: &Device, options: TrainOptions) -> Result<TrainSummary> {
    let started = Instant::now();
    let train_cfg = &cfg.train;
    let out_dir = train_cfg.out_dir.clone();
    let (progress, comm) = (options.progress, options.comm);
    // Rank 0 writes the run directory, and holds its lock until training ends.
    let _lock = if comm.is_root() {
        fs::create_dir_all(&out_dir).map_err(|e| TrainError::io(&out_dir, e))?;
        let (lock, stale) = RunLock::acquire(&out_dir)?;
        if let Some(holder) = stale {
            progress(Progress::Info(&format!(
                "took over the lock of {}: its holder ({holder}) stopped without releasing it",
                out_dir.display()
            )));
        }
        Some(lock)
    } else {
        None
    };
    if options.resume.is_none() {
        refuse_a_second_run(&out_dir)?;
    }

    // Set-up: the data, the model (new, or where the checkpoint left it), the log.
    let setup = RunSetup::prepare(cfg, device, options.resume.as_deref(), progress, comm)?;
    let log = if comm.is_root() {
        let config_path = out_dir.join("config.toml");
        fs::write(&config_path, cfg.to_toml()?).map_err(|e| TrainError::io(&config_path, e))?;
        setup.tokenizer.save(&out_dir.join("tokenizer.json"))?;
        Some(MetricsLog::open(&out_dir.join("metrics.jsonl"), options.resume.is_none())?)
    } else {
        None
    };
    let valid_report = valid_report(&setup.data.manifest);
    let valid_pairs = setup.data.valid.pairs()?;
    let (sources, references) = (setup.data.valid_sources.clone(), setup.data.valid_references.clone());
    let valid_set = ValidationSet { pairs: &valid_pairs, sources: &sources, references: &references };
    let cadence = Cadence {
        log_interval: train_cfg.log_interval,
        valid_interval: train_cfg.valid_interval,
        save_interval: train_cfg.save_interval,
        total_steps: setup.total_steps,
        max_steps: train_cfg.max_steps,
    };
    let parameters = setup.parameters();
    let mut session = Session::new(cfg, setup, log, comm, started);
    session.begin(device, &valid_report, options.resume.as_deref(), progress)?;

    let mut last_checkpoint = None;
    let stop = loop {
        if let Some(reason) = cadence.limit(session.setup.state.step) {
            break reason;
        }
        // One update: its batches, forward and backward, the optimiser step.
        let step = session.update(device)?;
        progress(Progress::Updated { step });

        // Then the periodic actions: log, validate, save, stop.
        let due = cadence.measure(step);
        if due.log {
            progress(Progress::Logged(&session.log_window()?));
        }
        let improved = if due.validate {
            let record = session.validate(&valid_set)?;
            progress(Progress::Validated(&record));
            record.best
        } else {
            false
        };
        let state = &session.setup.state;
        let outcome = Outcome {
            improved,
            early_stop: state.best.should_stop(train_cfg.patience),
            interrupted: comm.any((options.should_stop)(step))?,
        };
        let conclusion = cadence.conclude(step, outcome);
        if let Some(links) = conclusion.save {
            last_checkpoint = session.save(links)?.or(last_checkpoint);
        }
        if let Some(reason) = conclusion.stop {
            if reason == StopReason::EarlyStopping {
                progress(Progress::Info(&format!(
                    "early stopping: no better {} for {} validations",
                    train_cfg.best_metric.name(),
                    session.setup.state.best.stale_validations
                )));
            }
            break reason;
        }
    };
    let state = &session.setup.state;
    session.record(&Event::Stop(StopRecord { step: state.step, reason: stop, wall_s: state.wall_s }))?;
    let Session { setup, totals, .. } = session;
    Ok(TrainSummary {
        steps: setup.state.step,
        stop,
        last_valid: setup.state.last_valid,
        best: setup.state.best,
        wall_secs: started.elapsed().as_secs_f64(),
        tokens_per_sec: totals.real_tokens as f64 / totals.update_secs.max(1e-9),
        parameters,
        out_dir,
        last_checkpoint,
    })
}

/// Refuses to start a new run in a directory that already holds one.
fn refuse_a_second_run(out_dir: &Path) -> Result<()> {
    if out_dir.join(LAST).symlink_metadata().is_ok() {
        return Err(TrainError::Config(format!(
            "{} already holds a run (it has a `last` checkpoint); continue it with `locus train --resume {0}`, \
             or choose another train.out_dir",
            out_dir.display()
        )));
    }
    Ok(())
}

/// The dropout stream of `comm`'s rank: where the checkpoint left it when the job has as
/// many ranks as the one that wrote it, else (and in a new run) rank 0's stream as it stands
/// and a fresh stream, numbered by rank, for each other rank.
fn rank_dropout_rng(cfg: &RunConfig, state: &TrainerState, comm: &dyn Communicator) -> DropoutRng {
    let rank = comm.rank();
    match rank.checked_sub(1) {
        None => DropoutRng::from_state(&state.dropout_rng),
        Some(other) if state.world_size == comm.world_size() && other < state.rank_dropout_rngs.len() => {
            DropoutRng::from_state(&state.rank_dropout_rngs[other])
        }
        Some(_) => DropoutRng::on_stream(cfg.train.seed.wrapping_add(1), rank as u64),
    }
}

/// Real tokens and update seconds of a whole session, for its throughput.
#[derive(Default)]
struct Totals {
    real_tokens: usize,
    update_secs: f64,
}

/// A session's moving parts: the set-up the updates change, the dropout stream, the log (rank
/// 0's), the job's communicator, the current log window and the clocks.
struct Session<'a> {
    cfg: &'a RunConfig,
    setup: RunSetup,
    dropout_rng: DropoutRng,
    log: Option<MetricsLog>,
    comm: &'a dyn Communicator,
    window: Window,
    totals: Totals,
    /// When this session started.
    started: Instant,
    /// Training seconds of the run's earlier sessions.
    earlier_wall_s: f64,
}

impl<'a> Session<'a> {
    fn new(
        cfg: &'a RunConfig,
        setup: RunSetup,
        log: Option<MetricsLog>,
        comm: &'a dyn Communicator,
        started: Instant,
    ) -> Self {
        let dropout_rng = rank_dropout_rng(cfg, &setup.state, comm);
        let earlier_wall_s = setup.state.wall_s;
        Self {
            cfg,
            setup,
            dropout_rng,
            log,
            comm,
            window: Window::default(),
            totals: Totals::default(),
            started,
            earlier_wall_s,
        }
    }

    /// Appends `event` to `metrics.jsonl` (rank 0's; the other ranks write nothing).
    fn record(&mut self, event: &Event) -> Result<()> {
        match &mut self.log {
            Some(log) => log.write(event),
            None => Ok(()),
        }
    }

    /// Reports the session's start and its data and model (`progress` and `metrics.jsonl`),
    /// and, on a resume, the checkpoint it continues from.
    fn begin(
        &mut self,
        device: &Device,
        valid_report: &FilterReport,
        resume: Option<&Path>,
        progress: Observer,
    ) -> Result<()> {
        let setup = &self.setup;
        let (state, train_cfg) = (&setup.state, &self.cfg.train);
        let (parameters, updates_per_epoch) = (setup.parameters(), setup.updates_per_epoch);
        progress(Progress::Started { step: state.step, total_steps: setup.total_steps });
        progress(Progress::Info(&format!("train: {}\nvalid: {valid_report}", setup.train_report)));
        progress(Progress::Info(&format!(
            "model: {parameters} parameters; {updates_per_epoch} updates per epoch"
        )));
        let precision = train_cfg.precision;
        if precision != Precision::F32 && device.is_cpu() {
            progress(Progress::Info(&format!(
                "train.precision = \"{}\" on the CPU: slow (the fused kernels are f32 only), for testing",
                precision.name()
            )));
        }
        let world = self.comm.world_size();
        if world > 1 {
            progress(Progress::Info(&format!(
                "data parallel: {world} ranks, each training on its share of every batch; gradients summed by {}",
                self.comm.engine()
            )));
        }
        if resume.is_some() && state.world_size != world {
            progress(Progress::Info(&format!(
                "the checkpoint was trained on {} rank(s), this job has {world}: training continues, \
                 but not bit-exactly as it would have (batches are split, and dropout drawn, otherwise)",
                state.world_size
            )));
        }
        let mut events = vec![
            Event::Data(DataRecord {
                vocab_size: setup.tokenizer.vocab_size(),
                train_pairs: setup.data.train.len(),
                train_dropped: setup.train_report.dropped(),
                valid_pairs: valid_report.kept,
                valid_dropped: valid_report.dropped(),
                updates_per_epoch,
                setup_s: self.started.elapsed().as_secs_f64(),
            }),
            Event::Model(ModelRecord { parameters }),
        ];
        if let Some(dir) = resume {
            let at = format!("at update {}, epoch {}", state.step, state.epoch);
            progress(Progress::Info(&format!("resuming from {} {at}", dir.display())));
            let record = ResumeRecord { step: state.step, from: dir.to_path_buf(), wall_s: state.wall_s };
            events.push(Event::Resume(record));
        }
        events.iter().try_for_each(|event| self.record(event))
    }

    /// Training seconds of the run so far, over every session.
    fn wall_s(&self) -> f64 {
        self.earlier_wall_s + self.started.elapsed().as_secs_f64()
    }

    /// Applies the next update, over the next `train.update_freq` batches of the epoch's plan
    /// (starting the next epoch's when it is done), and returns its number. Its loss and
    /// gradient norm join the window, still on the device.
    fn update(&mut self, device: &Device) -> Result<usize> {
        let train_cfg = &self.cfg.train;
        let setup = &mut self.setup;
        let state = &mut setup.state;
        if state.epoch_batches_done >= setup.plan.len() {
            state.epoch += 1;
            state.epoch_batches_done = 0;
            setup.plan =
                setup.planner.plan(setup.data.train.lengths(), train_cfg.seed, state.epoch as u64)?;
        }
        let update_started = Instant::now();
        let group_end = (state.epoch_batches_done + train_cfg.update_freq).min(setup.plan.len());
        let group = (state.epoch_batches_done..group_end).filter_map(|i| setup.plan.batch(i));
        let update = load_update(&setup.data.train, group, self.comm, setup.model.tokens(), device)?;
        state.step += 1;
        state.epoch_batches_done = group_end;
        state.lr = setup.schedule.at(state.step);
        let step_options = StepOptions {
            lr: state.lr,
            clip_norm: train_cfg.clip_norm,
            label_smoothing: train_cfg.label_smoothing,
        };
        // In bf16 or f16, a low-precision copy of the weights as they are now.
        let step_model = train_cfg.precision.step_model(&setup.model, &setup.varmap)?;
        let stats = train_step(
            self.comm,
            &step_model,
            &mut setup.optimizer,
            &update.batches,
            step_options,
            &mut self.dropout_rng,
            state.loss_scale.as_mut(),
        )?;
        if stats.skipped {
            state.skipped_updates += 1;
            if let Some(scaler) = state.loss_scale.filter(|scaler| scaler.exhausted()) {
                return Err(TrainError::LossScaleExhausted { step: state.step, scale: scaler.scale });
            }
        }
        let seconds = update_started.elapsed().as_secs_f64();
        let real_tokens = update.real_tokens;
        let step = state.step;
        self.window.pending.push((step, stats));
        self.window.real_tokens += real_tokens;
        self.window.seconds += seconds;
        self.totals.real_tokens += real_tokens;
        self.totals.update_secs += seconds;
        self.setup.state.wall_s = self.wall_s();
        Ok(step)
    }

    /// Reads the window's pending updates from the device; the wait counts as update time.
    fn read_window(&mut self) -> Result<()> {
        self.totals.update_secs += self.window.read()?;
        Ok(())
    }

    /// Closes the log window: writes and returns its `train` record.
    fn log_window(&mut self) -> Result<TrainRecord> {
        self.read_window()?;
        let w = std::mem::take(&mut self.window);
        let state = &self.setup.state;
        let loss = w.loss / w.target_tokens as f64;
        let nll = w.nll / w.target_tokens as f64;
        let record = TrainRecord {
            step: state.step,
            epoch: state.epoch,
            loss,
            nll,
            ppl: nll.exp(),
            lr: state.lr,
            grad_norm: w.grad_norm / w.updates as f64,
            tokens_per_s: w.real_tokens as f64 / w.seconds,
            wall_s: state.wall_s,
            loss_scale: state.loss_scale.map(|scaler| scaler.scale),
            skipped: state.loss_scale.map(|_| w.skipped),
            skipped_updates: state.loss_scale.map(|_| state.skipped_updates),
        };
        self.record(&Event::Train(record))?;
        Ok(record)
    }

    /// Validates the model, notes whether it is the best so far, and writes and returns the
    /// `valid` record.
    fn validate(&mut self, valid_set: &ValidationSet) -> Result<ValidRecord> {
        self.read_window()?;
        let (cfg, setup) = (self.cfg, &self.setup);
        let valid = validate(
            self.comm,
            &setup.model,
            &setup.tokenizer,
            valid_set,
            cfg.data.max_tokens,
            cfg.train.label_smoothing,
            cfg.train.valid_bleu,
        )?;
        let metric = cfg.train.best_metric;
        let score = valid.score(metric).ok_or_else(|| {
            TrainError::Config(format!("train.best_metric {} was not measured", metric.name()))
        })?;
        let wall_s = self.wall_s();
        let state = &mut self.setup.state;
        let improved = state.best.observe(metric, state.step, score);
        state.last_valid = Some(valid);
        state.wall_s = wall_s;
        let record = ValidRecord {
            step: state.step,
            epoch: state.epoch,
            loss: valid.loss,
            nll: valid.nll,
            ppl: valid.ppl(),
            bleu: valid.bleu,
            chrf: valid.chrf,
            best: improved,
            wall_s,
        };
        self.record(&Event::Valid(record))?;
        Ok(record)
    }

    /// Writes a checkpoint pointed to by `links` (rank 0; every rank gives it its dropout
    /// stream); returns its directory, `None` on the other ranks. A diverged update fails the
    /// run first, before its weights are saved.
    fn save(&mut self, links: &[&str]) -> Result<Option<PathBuf>> {
        self.read_window()?;
        let streams = self.comm.all_gather(&self.dropout_rng.state())?;
        if !self.comm.is_root() {
            return Ok(None);
        }
        let setup = &mut self.setup;
        setup.state.world_size = streams.len();
        setup.state.dropout_rng = streams[0];
        setup.state.rank_dropout_rngs = streams[1..].to_vec();
        let contents = CheckpointContents {
            varmap: &setup.varmap,
            optimizer: &setup.optimizer,
            state: &setup.state,
            config: self.cfg,
            tokenizer: &setup.tokenizer,
        };
        save_checkpoint(&self.cfg.train.out_dir, &contents, links, self.cfg.train.keep_last).map(Some)
    }
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
