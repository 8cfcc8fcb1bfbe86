//! A training session's set-up, shared by `locus train` and `locus bench train`: the prepared
//! dataset (`data.prepared`, or the corpora prepared into the run directory), the batch
//! planner, the model, its optimiser and the trainer's position (new, or where a checkpoint
//! left them) and the learning-rate schedule.

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;
use locus_data::config::TrainFilterReport;
use locus_data::prepared::manifest::{DropCounts, FilterSettings, Manifest};
use locus_data::{
    prepare, BatchPlan, BatchPlanner, FilterReport, PrepareOptions, PreparedDataset, SubwordTokenizer,
};
use locus_model::Seq2Seq;

use crate::checkpoint::{load_checkpoint, load_optimizer_state};
use crate::config::RunConfig;
use crate::distributed::Communicator;
use crate::early_stopping::BestTracker;
use crate::error::{Result, TrainError};
use crate::modeling::build_model;
use crate::optim::{Adam, AdamParams};
use crate::progress::{Observer, Progress};
use crate::schedule::LrSchedule;
use crate::state::TrainerState;

/// Everything a session trains with, before its first update.
pub struct RunSetup {
    /// The model (f32 master weights).
    pub model: Seq2Seq,
    /// Its variables.
    pub varmap: VarMap,
    /// The tokenizer: the prepared dataset's, which is the checkpoint's on a resume.
    pub tokenizer: SubwordTokenizer,
    /// Adam (or AdamW) over `varmap`, with the checkpoint's moments on a resume.
    pub optimizer: Adam,
    /// The trainer's position: update 0 of epoch 1, or the checkpoint's.
    pub state: TrainerState,
    /// The prepared dataset: the training pairs (with their length table), the validation set.
    pub data: PreparedDataset,
    /// What the filters kept and dropped of the training corpora.
    pub train_report: TrainFilterReport,
    /// Plans each epoch's batches.
    pub planner: BatchPlanner,
    /// The batches (indices into `data.train`) of the epoch in progress, `state.epoch`.
    pub plan: BatchPlan,
    /// Updates in that epoch: `train.update_freq` batches each.
    pub updates_per_epoch: usize,
    /// The last update: the smaller of `train.max_steps` and `train.max_epochs` worth.
    pub total_steps: usize,
    /// The learning rate of each update, up to `total_steps`.
    pub schedule: LrSchedule,
}

impl RunSetup {
    /// Opens the run's prepared dataset ([`run_dataset`]), and builds a new model on `device`,
    /// or, with `resume`, loads that checkpoint (whose `[model]` must match the config's, and
    /// whose tokenizer the dataset's). In a data-parallel job rank 0 prepares the data (when
    /// it must be) while the others wait, then they open what it wrote.
    ///
    /// # Errors
    /// A corpus that cannot be prepared, a prepared dataset that is damaged or does not match,
    /// a checkpoint that is missing, incomplete or of another architecture, and a model the
    /// config cannot build.
    pub fn prepare(
        cfg: &RunConfig,
        device: &Device,
        resume: Option<&Path>,
        progress: Observer,
        comm: &dyn Communicator,
    ) -> Result<Self> {
        let dataset = |tokenizer: Option<&SubwordTokenizer>| -> Result<PreparedDataset> {
            let first = comm.is_root().then(|| run_dataset(cfg, tokenizer, progress)).transpose()?;
            comm.barrier()?;
            first.map_or_else(|| run_dataset(cfg, tokenizer, progress), Ok)
        };
        let (Start { model, varmap, tokenizer, optimizer, state }, data) = match resume {
            Some(dir) => {
                let start = resume_from(cfg, dir, device)?;
                let data = dataset(Some(&start.tokenizer))?;
                (start, data)
            }
            None => {
                let data = dataset(None)?;
                (start_afresh(cfg, &data.tokenizer, device)?, data)
            }
        };
        let train_report = train_report(&data.manifest);
        let planner = cfg.data.batch_planner();
        let train = &cfg.train;
        let plan = planner.plan(data.train.lengths(), train.seed, state.epoch as u64)?;
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
            data,
            train_report,
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

/// A new run: seeds the model for `tokenizer`'s vocabulary.
fn start_afresh(cfg: &RunConfig, tokenizer: &SubwordTokenizer, device: &Device) -> Result<Start> {
    let tokenizer = tokenizer.clone();
    let (model, varmap) = build_model(&cfg.model, tokenizer.vocab_size(), cfg.train.seed, device)?;
    let optimizer = Adam::for_varmap(&varmap, adam_params(cfg))?;
    let state = TrainerState {
        step: 0,
        epoch: 1,
        epoch_batches_done: 0,
        lr: 0.0,
        dropout_rng: TrainerState::first_dropout_rng(cfg.train.seed),
        world_size: 1,
        rank_dropout_rngs: Vec::new(),
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
    if checkpoint.format_version == 0 {
        return Err(TrainError::Checkpoint {
            path: dir.to_path_buf(),
            message: "format version 0 (from the first trainer) does not record where in the data and the \
                      dropout stream it stopped, so training cannot resume from it; it still translates and \
                      evaluates"
                .into(),
        });
    }
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

/// The directory inside a run where its corpora are prepared when the config names raw files.
pub const RUN_PREPARED: &str = "prepared";

/// The prepared dataset a run trains on: `data.prepared` when set (its filter settings must be
/// the config's), else the config's corpora prepared into `<out_dir>/prepared`, reused while
/// its inputs and settings are unchanged. `tokenizer`, when given (a resumed run's), must be
/// the dataset's; a dataset in the run directory is prepared again with it if not.
///
/// # Errors
/// A dataset that cannot be prepared or opened, whose filter settings differ from the config's,
/// or whose tokenizer differs from `tokenizer`.
pub fn run_dataset(
    cfg: &RunConfig,
    tokenizer: Option<&SubwordTokenizer>,
    progress: Observer,
) -> Result<PreparedDataset> {
    let same_tokenizer = |manifest: &Manifest| {
        tokenizer.is_none_or(|tokenizer| tokenizer.fingerprint() == manifest.tokenizer_fingerprint)
    };
    if let Some(dir) = &cfg.data.prepared {
        let data = PreparedDataset::open(dir)?;
        check_filter(&cfg.data, dir, &data.manifest.filter)?;
        if !same_tokenizer(&data.manifest) {
            return Err(TrainError::Config(format!(
                "the prepared dataset {} was encoded with another tokenizer than the checkpoint's; \
                 prepare it with the checkpoint's tokenizer (data.tokenizer_file = <checkpoint>/tokenizer.json)",
                dir.display()
            )));
        }
        return Ok(data);
    }
    let dir: PathBuf = cfg.train.out_dir.join(RUN_PREPARED);
    let key = locus_data::prepare::source_key(&cfg.data)?;
    if let Ok(manifest) = Manifest::read(&dir) {
        if manifest.source_key == key && same_tokenizer(&manifest) {
            match PreparedDataset::open(&dir) {
                Ok(data) => return Ok(data),
                Err(e) => progress(Progress::Info(&format!("{e}; preparing the data again"))),
            }
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    let show = |event: locus_data::PrepareProgress<'_>| progress(Progress::Prepare(event));
    prepare(&cfg.data, &dir, PrepareOptions { tokenizer, progress: &show })?;
    Ok(PreparedDataset::open(&dir)?)
}

/// Refuses a prepared dataset filtered otherwise than the config says.
fn check_filter(data: &locus_data::DataConfig, dir: &Path, prepared: &FilterSettings) -> Result<()> {
    let wanted = FilterSettings::of(data);
    let fields = [
        ("min_len", wanted.min_len.to_string(), prepared.min_len.to_string()),
        ("max_len", wanted.max_len.to_string(), prepared.max_len.to_string()),
        ("max_len_ratio", wanted.max_len_ratio.to_string(), prepared.max_len_ratio.to_string()),
        ("max_train_len", format!("{:?}", wanted.max_train_len), format!("{:?}", prepared.max_train_len)),
    ];
    match fields.into_iter().find(|(_, wanted, prepared)| wanted != prepared) {
        Some((field, wanted, prepared)) => Err(TrainError::Config(format!(
            "data.{field} is {wanted}, but the prepared dataset {} was filtered with {prepared}; \
             set data.{field} to match, or prepare the data again",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// What the filters kept and dropped of a prepared dataset's training corpora.
pub fn train_report(manifest: &Manifest) -> TrainFilterReport {
    let mut dropped = DropCounts::default();
    for corpus in &manifest.corpora {
        dropped.add(&corpus.dropped);
    }
    TrainFilterReport {
        kept: manifest.train.pairs,
        dropped,
        max_ratio: manifest.filter.max_len_ratio,
        max_train_len: manifest.filter.max_train_len,
    }
}

/// What the length filter kept and dropped of a prepared dataset's validation corpus.
pub fn valid_report(manifest: &Manifest) -> FilterReport {
    let dropped = &manifest.valid.dropped;
    FilterReport {
        kept: manifest.valid.pairs,
        too_short: dropped.too_short,
        too_long: dropped.too_long,
        bad_ratio: dropped.bad_ratio,
        max_ratio: manifest.filter.max_len_ratio,
    }
}
