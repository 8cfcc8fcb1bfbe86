//! The checkpoint format: its version, the manifest that lists every file with its size and
//! checksum (written last, verified at every load), and the migration of older formats.
//!
//! | version | written by | what it holds |
//! | --- | --- | --- |
//! | 0 | the first trainer (issue 2) | `state.json` with only `step` and `valid_nll`: no data position, dropout stream or best-checkpoint bookkeeping |
//! | 1 | issues 4 to 18 | the whole [`TrainerState`] in `state.json`; no version, no checksums |
//! | 2 | since issue 19 | `format_version` in `state.json`, and `manifest.json`: the version again and each other file's size and XXH3-64 checksum |
//!
//! A version-2 checkpoint loads only if every file of its manifest is present, of its size and
//! checksum: a flipped bit, a truncated or a missing file is an error naming the file and what
//! differs (as safetensors states what it loaded, and sacreBLEU what it scored). A checkpoint
//! of a newer version is refused. Versions 0 and 1 carry no checksums and load as they are;
//! version 0's state is migrated ([`migrate_version_0`]), and training cannot resume from it,
//! since it does not say where in the data or the dropout stream it stopped. Checkpoints are
//! never rewritten in place: a resumed run writes new ones in the current version.

use std::collections::BTreeMap;
use std::path::Path;

use locus_data::checksum::FileEntry;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{checkpoint_error, REQUIRED, STATE};
use crate::early_stopping::BestTracker;
use crate::error::{Result, TrainError};
use crate::state::TrainerState;
use locus_data::atomic_dir::write_synced;

/// The version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 2;
/// The manifest's file name.
pub(crate) const MANIFEST: &str = "manifest.json";

/// `manifest.json`: the format version and every other file of the checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    files: BTreeMap<String, FileEntry>,
}

/// `state.json` as version 2 writes it: the trainer state with the format version first.
#[derive(Serialize)]
struct StateFile<'a> {
    format_version: u32,
    #[serde(flatten)]
    state: &'a TrainerState,
}

/// The text of `state.json` for `state`.
pub(crate) fn state_json(dir: &Path, state: &TrainerState) -> Result<String> {
    serde_json::to_string_pretty(&StateFile { format_version: FORMAT_VERSION, state })
        .map_err(|e| checkpoint_error(dir, e.to_string()))
}

/// Writes `dir/manifest.json`, listing the size and checksum of every other file in `dir`, and
/// syncs it: the last file of a checkpoint, written once the others are on disk.
pub(crate) fn write_manifest(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST && entry.path().is_file() {
            names.push(name);
        }
    }
    let files = names
        .into_par_iter()
        .map(|name| Ok((name.clone(), FileEntry::of(&dir.join(&name))?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let manifest = Manifest { format_version: FORMAT_VERSION, files };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| checkpoint_error(dir, e.to_string()))?;
    Ok(write_synced(&dir.join(MANIFEST), text.as_bytes())?)
}

/// The format version of the checkpoint in `dir`, once every file its manifest lists has been
/// checked (version 2 and later; versions 0 and 1 have no manifest, and are told apart by their
/// `state.json`).
///
/// # Errors
/// [`TrainError::Checkpoint`] naming the file: a malformed manifest, a version newer than
/// [`FORMAT_VERSION`], a file that is missing, of another size or of another checksum than
/// the manifest says, a `state.json` that is not JSON or names another version than the
/// manifest, or a `state.json` of version 2 or later without its manifest.
pub(crate) fn verify(dir: &Path) -> Result<u32> {
    let manifest_path = dir.join(MANIFEST);
    let state_path = dir.join(STATE);
    if !manifest_path.exists() {
        let state = read_json(&state_path)?;
        return match state.get("format_version") {
            Some(version) => Err(checkpoint_error(
                &manifest_path,
                format!(
                    "is missing, but state.json says format version {version}; the checkpoint is incomplete"
                ),
            )),
            None => Ok(if state.get("epoch").is_some() { 1 } else { 0 }),
        };
    }
    let manifest: Manifest = serde_json::from_value(read_json(&manifest_path)?)
        .map_err(|e| checkpoint_error(&manifest_path, format!("not a checkpoint manifest: {e}")))?;
    let version = manifest.format_version;
    if version > FORMAT_VERSION {
        return Err(checkpoint_error(
            dir,
            format!(
                "format version {version} is newer than this locus reads (up to {FORMAT_VERSION}); \
                 use a newer locus"
            ),
        ));
    }
    manifest.files.par_iter().try_for_each(|(name, entry)| match entry.mismatch(&dir.join(name)) {
        None => Ok(()),
        Some(what) => {
            Err(checkpoint_error(&dir.join(name), format!("{what}; the checkpoint is damaged or incomplete")))
        }
    })?;
    if let Some(unlisted) = REQUIRED.iter().find(|name| !manifest.files.contains_key(**name)) {
        return Err(checkpoint_error(&manifest_path, format!("does not list {unlisted}")));
    }
    let state_version = read_json(&state_path)?.get("format_version").and_then(Value::as_u64);
    if state_version != Some(u64::from(version)) {
        let named = state_version.map_or("no format version".into(), |v| format!("format version {v}"));
        return Err(checkpoint_error(&state_path, format!("names {named}, but the manifest says {version}")));
    }
    Ok(version)
}

/// The trainer state in `dir/state.json`, a checkpoint of format `version` (from [`verify`]),
/// migrated to today's; `seed` is the run's (`train.seed`), which version 0 did not record.
pub(crate) fn read_state(dir: &Path, version: u32, seed: u64) -> Result<TrainerState> {
    let path = dir.join(STATE);
    let json = read_json(&path)?;
    let parsed = match version {
        0 => serde_json::from_value(json).map(|old| migrate_version_0(old, seed)),
        _ => serde_json::from_value(json),
    };
    parsed.map_err(|e| checkpoint_error(&path, format!("not a format-{version} trainer state: {e}")))
}

/// `state.json` of format version 0.
#[derive(Debug, Deserialize)]
pub(crate) struct StateVersion0 {
    step: usize,
    valid_nll: Option<f64>,
}

/// A version-0 state as today's: its update count, and its validation NLL as the best so far
/// at that update; the data position and dropout stream at the start of the run (they were
/// not recorded, which is why such a checkpoint cannot be resumed from).
pub(crate) fn migrate_version_0(old: StateVersion0, seed: u64) -> TrainerState {
    TrainerState {
        step: old.step,
        epoch: 1,
        epoch_batches_done: 0,
        lr: 0.0,
        dropout_rng: TrainerState::first_dropout_rng(seed),
        world_size: 1,
        rank_dropout_rngs: Vec::new(),
        best: BestTracker {
            best: old.valid_nll,
            best_step: old.valid_nll.map(|_| old.step),
            stale_validations: 0,
        },
        last_valid: None,
        wall_s: 0.0,
        skipped_updates: 0,
        loss_scale: None,
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| checkpoint_error(path, format!("not JSON: {e}")))
}
