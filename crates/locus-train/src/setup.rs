//! A training session's set-up, shared by `locus train` and `locus bench train`: the training
//! corpus read and tokenized (the tokenizer trained on it, or a checkpoint's), the pairs that
//! pass the length filters, the batch planner, the model, its optimiser and the trainer's
//! position (new, or where a checkpoint left them) and the learning-rate schedule.

use std::path::Path;

use candle_core::Device;
use candle_nn::VarMap;
use locus_data::config::TrainFilterReport;
use locus_data::{BatchPlanner, ParallelCorpus, SubwordTokenizer, TokenizedPair};
use locus_model::{DropoutRng, Seq2Seq};

use crate::checkpoint::{load_checkpoint, load_optimizer_state};
use crate::config::RunConfig;
use crate::early_stopping::BestTracker;
use crate::error::{Result, TrainError};
use crate::modeling::build_model;
use crate::optim::{Adam, AdamParams};
use crate::schedule::LrSchedule;
use crate::state::TrainerState;

/// Everything a session trains with, before its first update.
pub struct RunSetup {
    /// The model (f32 master weights).
    pub model: Seq2Seq,
    /// Its variables.
    pub varmap: VarMap,
    /// The tokenizer: trained on the corpus, or the checkpoint's.
    pub tokenizer: SubwordTokenizer,
    /// Adam (or AdamW) over `varmap`, with the checkpoint's moments on a resume.
    pub optimizer: Adam,
    /// The trainer's position: update 0 of epoch 1, or the checkpoint's.
    pub state: TrainerState,
    /// The training pairs that pass the length filters.
    pub train_pairs: Vec<TokenizedPair>,
    /// What the filters kept and dropped.
    pub train_report: TrainFilterReport,
    /// `(source, target)` token counts of `train_pairs`, what the planner batches by.
    pub lengths: Vec<(usize, usize)>,
    /// Plans each epoch's batches.
    pub planner: BatchPlanner,
    /// The batches (indices into `train_pairs`) of the epoch in progress, `state.epoch`.
    pub plan: Vec<Vec<usize>>,
    /// Updates in that epoch: `train.update_freq` batches each.
    pub updates_per_epoch: usize,
    /// The last update: the smaller of `train.max_steps` and `train.max_epochs` worth.
    pub total_steps: usize,
    /// The learning rate of each update, up to `total_steps`.
    pub schedule: LrSchedule,
}

impl RunSetup {
    /// Reads and tokenizes the training corpus of `cfg`, and builds a new model on `device`, or,
    /// with `resume`, loads that checkpoint (whose `[model]` must match the config's).
    ///
    /// # Errors
    /// A corpus that cannot be read, a checkpoint that is missing, incomplete or of another
    /// architecture, and a model the config cannot build.
    pub fn prepare(cfg: &RunConfig, device: &Device, resume: Option<&Path>) -> Result<Self> {
        let corpus = ParallelCorpus::read(&cfg.data.train_src, &cfg.data.train_tgt)?;
        let Start { model, varmap, tokenizer, optimizer, state } = match resume {
            Some(dir) => resume_from(cfg, dir, device)?,
            None => start_afresh(cfg, &corpus, device)?,
        };
        // `data.max_train_len` applies to the training pairs only.
        let (train_pairs, train_report) = cfg.data.filter_train(tokenizer.encode_corpus(&corpus)?);
        let lengths: Vec<(usize, usize)> = train_pairs.iter().map(TokenizedPair::lengths).collect();
        let planner = cfg.data.batch_planner();
        let train = &cfg.train;
        let plan = planner.plan(&lengths, train.seed, state.epoch as u64)?;
        let updates_per_epoch = plan.len().div_ceil(train.update_freq);
        let epoch_limit = train.max_epochs.map(|epochs| epochs * updates_per_epoch);
        let total_steps = train.max_steps.unwrap_or(usize::MAX).min(epoch_limit.unwrap_or(usize::MAX));
        let schedule = LrSchedule {
            kind: train.schedule,
            lr: train.lr,
            warmup: train.warmup_steps,
            min_lr: train.min_lr,
            total_steps,
            d_model: cfg.model.d_model,
        };
        Ok(Self {
            model,
            varmap,
            tokenizer,
            optimizer,
            state,
            train_pairs,
            train_report,
            lengths,
            planner,
            plan,
            updates_per_epoch,
            total_steps,
            schedule,
        })
    }

    /// Trainable parameters of the model.
    pub fn parameters(&self) -> usize {
        self.varmap.all_vars().iter().map(|var| var.elem_count()).sum()
    }
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
pub fn adam_params(cfg: &RunConfig) -> AdamParams {
    let train = &cfg.train;
    AdamParams {
        kind: train.optimizer,
        beta1: train.adam_betas[0],
        beta2: train.adam_betas[1],
        eps: train.adam_eps,
        weight_decay: train.weight_decay,
    }
}

/// The tokenizer `locus train` trains on `corpus` (sources and targets together).
fn train_tokenizer(cfg: &RunConfig, corpus: &ParallelCorpus) -> Result<SubwordTokenizer> {
    let texts = corpus.src.iter().chain(&corpus.tgt);
    Ok(SubwordTokenizer::train(cfg.data.tokenizer, cfg.data.vocab_size, texts)?)
}

/// A new run: trains the tokenizer, seeds the model.
fn start_afresh(cfg: &RunConfig, corpus: &ParallelCorpus, device: &Device) -> Result<Start> {
    let tokenizer = train_tokenizer(cfg, corpus)?;
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

/// The tokenizer trained on `cfg`'s training corpus as `locus train` trains it, and the
/// corpus's pairs that pass the training length filters.
pub fn training_pairs(cfg: &RunConfig) -> Result<(SubwordTokenizer, Vec<TokenizedPair>)> {
    let corpus = ParallelCorpus::read(&cfg.data.train_src, &cfg.data.train_tgt)?;
    let tokenizer = train_tokenizer(cfg, &corpus)?;
    let (pairs, _) = cfg.data.filter_train(tokenizer.encode_corpus(&corpus)?);
    Ok((tokenizer, pairs))
}
