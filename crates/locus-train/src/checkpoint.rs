//! Checkpoint directories, written atomically, and which of them to keep.
//!
//! A checkpoint is a directory `checkpoints/step-<update>` in the run directory holding
//! `model.safetensors`, `optimizer.safetensors` (Adam's moments), the resolved `config.toml`,
//! the `tokenizer.json`, `state.json` (a [`TrainerState`]: update, data position, dropout
//! stream, best-so-far, f16's loss scale) and, written last, `manifest.json`: the format
//! version and every other file's size and checksum, verified at every load
//! ([`crate::checkpoint_format`]). Weights and moments are f32 whatever
//! `train.precision` is. It is written to a temporary directory, synced and renamed into place;
//! only then are the links `last` (and `best`, when it improved) replaced by an atomic rename,
//! and old checkpoints pruned to the newest `train.keep_last` plus those the links name. A
//! crash or `kill -9` at any moment leaves `last` and `best` pointing at complete checkpoints.
//! An existing directory is never overwritten: a run resumed from an earlier checkpoint that
//! reaches the same update again writes `step-<update>-r1`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use locus_data::SubwordTokenizer;
use locus_model::Seq2Seq;

use crate::checkpoint_format::{read_state, state_json, verify, write_manifest};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::modeling::build_model;
use crate::optim::Adam;
use crate::state::TrainerState;
use locus_data::atomic_dir::{is_temporary, sync_path, write_dir_atomically, write_synced};

pub(crate) const WEIGHTS: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
pub(crate) const CONFIG: &str = "config.toml";
pub(crate) const TOKENIZER: &str = "tokenizer.json";
pub(crate) const STATE: &str = "state.json";
/// The files every checkpoint has (a training checkpoint also has the optimizer's moments; an
/// averaged one, `average.json`; format 2, `manifest.json`).
pub(crate) const REQUIRED: [&str; 4] = [WEIGHTS, CONFIG, TOKENIZER, STATE];
/// The directory of a run that holds the checkpoint directories.
pub const CHECKPOINTS: &str = "checkpoints";
/// The link to the newest checkpoint.
pub const LAST: &str = "last";
/// The link to the checkpoint with the best validation score.
pub const BEST: &str = "best";

/// A loaded checkpoint, ready to translate or to resume from.
pub struct Checkpoint {
    /// The directory it was loaded from.
    pub dir: PathBuf,
    /// The run's resolved config.
    pub config: RunConfig,
    /// The run's tokenizer.
    pub tokenizer: SubwordTokenizer,
    /// The model with the checkpoint's weights.
    pub model: Seq2Seq,
    /// The model's variables.
    pub varmap: VarMap,
    /// The trainer's position when it was written (migrated from an older format).
    pub state: TrainerState,
    /// The format version it was written in ([`crate::checkpoint_format`]).
    pub format_version: u32,
}

/// Everything one checkpoint holds.
pub struct CheckpointContents<'a> {
    /// The model's variables.
    pub varmap: &'a VarMap,
    /// The optimiser, whose moments are saved.
    pub optimizer: &'a Adam,
    /// The trainer's position.
    pub state: &'a TrainerState,
    /// The resolved run config.
    pub config: &'a RunConfig,
    /// The run's tokenizer.
    pub tokenizer: &'a SubwordTokenizer,
}

pub(crate) fn checkpoint_error(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// The name of a checkpoint directory: its update and, when that update was saved more than
/// once (a resumed run), a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckpointName {
    /// The update it was written at.
    pub step: usize,
    /// 0 for `step-<update>`, k for `step-<update>-rk`.
    pub revision: usize,
}

impl CheckpointName {
    /// Parses `step-00001200` or `step-00001200-r1`; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("step-")?;
        let (digits, revision) = match rest.split_once("-r") {
            Some((digits, revision)) => (digits, revision.parse().ok()?),
            None => (rest, 0),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(Self { step: digits.parse().ok()?, revision })
    }

    /// The directory name.
    pub fn dir_name(&self) -> String {
        match self.revision {
            0 => format!("step-{:08}", self.step),
            revision => format!("step-{:08}-r{revision}", self.step),
        }
    }
}

/// The checkpoints to delete so that only the newest `keep_last` of `saved` remain, plus any
/// in `protected` (the targets of `last` and `best`). Pure, so that the policy is tested alone.
pub fn checkpoints_to_remove(
    saved: &[CheckpointName],
    keep_last: usize,
    protected: &[CheckpointName],
) -> Vec<CheckpointName> {
    let mut sorted = saved.to_vec();
    sorted.sort();
    let old = sorted.len().saturating_sub(keep_last);
    sorted.into_iter().take(old).filter(|name| !protected.contains(name)).collect()
}

/// The checkpoint a link (`last`, `best`) of `run_dir` points to, if it exists.
fn link_target(run_dir: &Path, link: &str) -> Option<CheckpointName> {
    let target = fs::read_link(run_dir.join(link)).ok()?;
    CheckpointName::parse(&target.file_name()?.to_string_lossy())
}

/// The checkpoint directories in `run_dir/checkpoints`.
pub(crate) fn saved_checkpoints(versions: &Path) -> Result<Vec<CheckpointName>> {
    let entries = fs::read_dir(versions).map_err(|e| TrainError::io(versions, e))?;
    Ok(entries.flatten().filter_map(|e| CheckpointName::parse(&e.file_name().to_string_lossy())).collect())
}

/// Saves a checkpoint of `contents` in `run_dir`, points each of `links` at it, and prunes
/// the checkpoints beyond the newest `keep_last` that no link names. Returns its directory.
pub fn save_checkpoint(
    run_dir: &Path,
    contents: &CheckpointContents,
    links: &[&str],
    keep_last: usize,
) -> Result<PathBuf> {
    let versions = run_dir.join(CHECKPOINTS);
    fs::create_dir_all(&versions).map_err(|e| TrainError::io(&versions, e))?;
    let existing = saved_checkpoints(&versions)?;
    let step = contents.state.step;
    let revision = existing.iter().filter(|n| n.step == step).map(|n| n.revision + 1).max().unwrap_or(0);
    let name = CheckpointName { step, revision };
    let final_dir = versions.join(name.dir_name());
    write_dir_atomically(&final_dir, || Ok(()), |tmp| write_contents(tmp, contents)).map_err(|e| {
        checkpoint_error(
            &final_dir,
            format!(
                "cannot be written ({}); the earlier checkpoints, `last` and `best` are unchanged",
                with_causes(&e)
            ),
        )
    })?;
    for link in links {
        point_link(run_dir, link, &Path::new(CHECKPOINTS).join(name.dir_name()))?;
    }
    prune(run_dir, &versions, keep_last)?;
    Ok(final_dir)
}

/// `error` and its causes, `: `-separated.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

/// Writes every file of a checkpoint into `dir`, each synced.
fn write_contents(dir: &Path, contents: &CheckpointContents) -> Result<()> {
    let weights = dir.join(WEIGHTS);
    contents.varmap.save(&weights)?;
    sync_path(&weights)?;
    let optimizer = dir.join(OPTIMIZER);
    candle_core::safetensors::save(&contents.optimizer.state_tensors(), &optimizer)?;
    sync_path(&optimizer)?;
    write_synced(&dir.join(CONFIG), contents.config.to_toml()?.as_bytes())?;
    contents.tokenizer.save(&dir.join(TOKENIZER))?;
    sync_path(&dir.join(TOKENIZER))?;
    write_synced(&dir.join(STATE), state_json(dir, contents.state)?.as_bytes())?;
    write_manifest(dir)
}

/// Atomically makes `run_dir/name` a link to `target` (relative to `run_dir`).
fn point_link(run_dir: &Path, name: &str, target: &Path) -> Result<()> {
    let link = run_dir.join(name);
    let tmp_link = run_dir.join(format!(".{name}.link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp_link);
    #[cfg(unix)]
    std::os::unix::fs::symlink(target, &tmp_link).map_err(|e| TrainError::io(&tmp_link, e))?;
    #[cfg(windows)]
    std::os::windows::fs::symlink_dir(target, &tmp_link).map_err(|e| TrainError::io(&tmp_link, e))?;
    fs::rename(&tmp_link, &link).map_err(|e| TrainError::io(&link, e))?;
    Ok(sync_path(run_dir)?)
}

/// Removes the checkpoints [`checkpoints_to_remove`] names, and temporary directories left by
/// interrupted saves.
fn prune(run_dir: &Path, versions: &Path, keep_last: usize) -> Result<()> {
    let protected: Vec<CheckpointName> =
        [LAST, BEST].iter().filter_map(|l| link_target(run_dir, l)).collect();
    let saved = saved_checkpoints(versions)?;
    for name in checkpoints_to_remove(&saved, keep_last, &protected) {
        let dir = versions.join(name.dir_name());
        fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    }
    let entries = fs::read_dir(versions).map_err(|e| TrainError::io(versions, e))?;
    for entry in entries.flatten() {
        if is_temporary(&entry.file_name().to_string_lossy()) {
            fs::remove_dir_all(entry.path()).map_err(|e| TrainError::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Checks that `dir` is a checkpoint directory (weights, config, tokenizer and state present)
/// and that every file its manifest lists is intact; returns its format version.
///
/// # Errors
/// [`TrainError::Checkpoint`] naming the directory or the first damaged file.
pub(crate) fn verify_checkpoint(dir: &Path) -> Result<u32> {
    if !dir.is_dir() {
        return Err(checkpoint_error(
            dir,
            "does not exist (expected a directory such as <out_dir>/last or <out_dir>/best)",
        ));
    }
    for file in REQUIRED {
        if !dir.join(file).is_file() {
            return Err(checkpoint_error(dir, format!("is not a Locus checkpoint: {file} is missing")));
        }
    }
    verify(dir)
}

/// The run config a checkpoint was trained with.
pub(crate) fn read_config(dir: &Path) -> Result<RunConfig> {
    let path = dir.join(CONFIG);
    let text = fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    RunConfig::from_toml(&text).map_err(|e| checkpoint_error(&path, e.to_string()))
}

/// Loads the checkpoint in `dir` (a `checkpoints/step-*` directory or a `last`/`best` link)
/// onto `device`, once its files are verified against its manifest; an older format's state
/// is migrated ([`crate::checkpoint_format`]).
///
/// # Errors
/// A missing directory or file, a file that differs from the manifest, a newer format, a
/// config, tokenizer or state that does not parse, or weights that do not match the config's
/// architecture, each naming the checkpoint or the file.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let format_version = verify_checkpoint(dir)?;
    let config = read_config(dir)?;
    let tokenizer = SubwordTokenizer::load(&dir.join(TOKENIZER))?;
    let state = read_state(dir, format_version, config.train.seed)?;
    let (model, mut varmap) = build_model(&config.model, tokenizer.vocab_size(), 0, device)?;
    varmap
        .load(dir.join(WEIGHTS))
        .map_err(|e| checkpoint_error(dir, format!("weights do not match its config.toml: {e}")))?;
    Ok(Checkpoint { dir: dir.to_path_buf(), config, tokenizer, model, varmap, state, format_version })
}

/// Loads the optimizer moments of the checkpoint in `dir` onto `device`.
pub fn load_optimizer_state(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let path = dir.join(OPTIMIZER);
    if !path.is_file() {
        return Err(checkpoint_error(dir, format!("cannot be resumed from: {OPTIMIZER} is missing")));
    }
    candle_core::safetensors::load(&path, device).map_err(|e| checkpoint_error(&path, e.to_string()))
}

/// The checkpoint `--resume PATH` means: `PATH` itself if it is a checkpoint, else its `last`
/// link (a run directory).
///
/// # Errors
/// `PATH` is neither a checkpoint nor a run directory with a `last` checkpoint.
pub fn resolve_resume(path: &Path) -> Result<PathBuf> {
    if path.join(STATE).is_file() {
        return Ok(path.to_path_buf());
    }
    let last = path.join(LAST);
    if last.join(STATE).is_file() {
        return Ok(last);
    }
    Err(checkpoint_error(
        path,
        "nothing to resume: neither a checkpoint (no state.json) nor a run directory with a `last` checkpoint",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(steps: &[(usize, usize)]) -> Vec<CheckpointName> {
        steps.iter().map(|&(step, revision)| CheckpointName { step, revision }).collect()
    }

    #[test]
    fn names_round_trip_and_reject_other_entries() {
        for name in names(&[(1200, 0), (7, 3)]) {
            assert_eq!(CheckpointName::parse(&name.dir_name()), Some(name));
        }
        assert_eq!(CheckpointName::parse("step-00001200").unwrap().step, 1200);
        for other in [".tmp-step-00000010-42", "step-", "step-12a", "last", "step-00000010-rx"] {
            assert_eq!(CheckpointName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn keeps_the_newest_and_the_linked() {
        let saved = names(&[(100, 0), (200, 0), (300, 0), (400, 0), (500, 0)]);
        // keep_last 2, best at 200: 100 and 300 go.
        let remove = checkpoints_to_remove(&saved, 2, &names(&[(500, 0), (200, 0)]));
        assert_eq!(remove, names(&[(100, 0), (300, 0)]));
        // keep_last larger than what exists: nothing goes.
        assert!(checkpoints_to_remove(&saved, 10, &[]).is_empty());
        // A revision of the same update is newer than the original.
        let saved = names(&[(300, 1), (300, 0), (200, 0)]);
        assert_eq!(checkpoints_to_remove(&saved, 1, &[]), names(&[(200, 0), (300, 0)]));
    }
}
