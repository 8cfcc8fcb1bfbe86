//! Checkpoint directories, written atomically.
//!
//! A checkpoint is a directory holding `model.safetensors`, the resolved `config.toml`, the
//! `tokenizer.json` and `state.json` (the update number and validation loss). Named checkpoints
//! (`last`, `best`) are symbolic links in the run directory to versioned directories under
//! `checkpoints/`: a new version is written to a temporary directory, synced, renamed into
//! place, and only then is the link replaced by an atomic rename. A crash at any moment leaves
//! `last` and `best` pointing at complete checkpoints.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;
use locus_data::SubwordTokenizer;
use locus_model::Seq2Seq;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::modeling::build_model;

const WEIGHTS: &str = "model.safetensors";
const CONFIG: &str = "config.toml";
const TOKENIZER: &str = "tokenizer.json";
const STATE: &str = "state.json";

/// Progress recorded with a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Updates applied when the checkpoint was written.
    pub step: usize,
    /// Validation negative log-likelihood per token at that step, if measured.
    pub valid_nll: Option<f64>,
}

/// A loaded checkpoint, ready to translate.
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
    /// Progress when it was written.
    pub state: CheckpointState,
}

fn checkpoint_error(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// Writes `bytes` to `path` and flushes them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|e| TrainError::io(path, e))
}

fn sync_file(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| TrainError::io(path, e))
}

/// Saves the named checkpoint (`last`, `best`) of a run in `run_dir`, atomically, and removes
/// the versions it replaces. Returns the versioned directory.
pub fn save_checkpoint(
    run_dir: &Path,
    name: &str,
    state: CheckpointState,
    varmap: &VarMap,
    config: &RunConfig,
    tokenizer: &SubwordTokenizer,
) -> Result<PathBuf> {
    let versions = run_dir.join("checkpoints");
    fs::create_dir_all(&versions).map_err(|e| TrainError::io(&versions, e))?;
    let version = format!("{name}-{:08}", state.step);
    let tmp = versions.join(format!(".tmp-{version}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;

    let weights = tmp.join(WEIGHTS);
    varmap.save(&weights)?;
    sync_file(&weights)?;
    write_synced(&tmp.join(CONFIG), config.to_toml()?.as_bytes())?;
    tokenizer.save(&tmp.join(TOKENIZER))?;
    sync_file(&tmp.join(TOKENIZER))?;
    let state_json =
        serde_json::to_string_pretty(&state).map_err(|e| checkpoint_error(&tmp, e.to_string()))?;
    write_synced(&tmp.join(STATE), state_json.as_bytes())?;

    let final_dir = versions.join(&version);
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    sync_file(&versions)?;

    point_link(run_dir, name, &Path::new("checkpoints").join(&version))?;
    remove_stale_versions(&versions, name, &version)?;
    Ok(final_dir)
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
    sync_file(run_dir)
}

/// Removes older versions of `name` and temporary directories left by interrupted saves.
fn remove_stale_versions(versions: &Path, name: &str, keep: &str) -> Result<()> {
    let entries = fs::read_dir(versions).map_err(|e| TrainError::io(versions, e))?;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let is_version = file_name.strip_prefix(name).is_some_and(|rest| {
            rest.strip_prefix('-').is_some_and(|digits| digits.chars().all(|c| c.is_ascii_digit()))
        });
        let is_stale_tmp = file_name.starts_with(&format!(".tmp-{name}-"));
        if (is_version && file_name != keep) || is_stale_tmp {
            fs::remove_dir_all(entry.path()).map_err(|e| TrainError::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Loads the checkpoint in `dir` (a versioned directory or a `last`/`best` link) onto `device`.
///
/// # Errors
/// A missing directory or file, a config or tokenizer that does not parse, or weights that do
/// not match the config's architecture, each naming the checkpoint.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    if !dir.is_dir() {
        return Err(checkpoint_error(
            dir,
            "does not exist (expected a directory such as <out_dir>/last or <out_dir>/best)",
        ));
    }
    for file in [WEIGHTS, CONFIG, TOKENIZER, STATE] {
        if !dir.join(file).is_file() {
            return Err(checkpoint_error(dir, format!("is not a Locus checkpoint: {file} is missing")));
        }
    }
    let config_path = dir.join(CONFIG);
    let text = fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
    let config = RunConfig::from_toml(&text).map_err(|e| checkpoint_error(&config_path, e.to_string()))?;
    let tokenizer = SubwordTokenizer::load(&dir.join(TOKENIZER))?;
    let state_path = dir.join(STATE);
    let state_text = fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: CheckpointState =
        serde_json::from_str(&state_text).map_err(|e| checkpoint_error(&state_path, e.to_string()))?;
    let (model, mut varmap) = build_model(&config.model, tokenizer.vocab_size(), 0, device)?;
    varmap
        .load(dir.join(WEIGHTS))
        .map_err(|e| checkpoint_error(dir, format!("weights do not match its config.toml: {e}")))?;
    Ok(Checkpoint { dir: dir.to_path_buf(), config, tokenizer, model, varmap, state })
}
