//! What several test files need: the committed format-1 checkpoint, and copies of checkpoints.

use std::path::{Path, PathBuf};

use locus_train::checkpoint::{save_checkpoint, CheckpointContents};
use locus_train::optim::Adam;
use locus_train::setup::adam_params;
use locus_train::Checkpoint;

/// The committed fixture: `checkpoint/` (format 1), the first lines of test_2016_flickr.de and
/// their translations when it was written (its README.md says how it was made).
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint-format-1")
}

/// The fixture's checkpoint directory.
pub fn fixture_checkpoint() -> PathBuf {
    fixture().join("checkpoint")
}

/// Copies the files of `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Saves `checkpoint` as a training checkpoint of today's format in `run_dir` (fresh Adam
/// moments); returns its directory.
pub fn save_as_today(checkpoint: &Checkpoint, run_dir: &Path) -> PathBuf {
    let optimizer = Adam::for_varmap(&checkpoint.varmap, adam_params(&checkpoint.config)).unwrap();
    let contents = CheckpointContents {
        varmap: &checkpoint.varmap,
        optimizer: &optimizer,
        state: &checkpoint.state,
        config: &checkpoint.config,
        tokenizer: &checkpoint.tokenizer,
    };
    save_checkpoint(run_dir, &contents, &["last"], 1).unwrap()
}
