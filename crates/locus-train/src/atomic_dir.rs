//! Durable, all-or-nothing directory writes: what checkpoints and averaged checkpoints are made
//! of.
//!
//! [`write_dir_atomically`] fills a temporary sibling directory, `.tmp-<name>-<pid>`, syncs
//! every file and the directory itself, and renames it into place, then syncs the parent: a
//! crash or `kill -9` at any moment leaves either no directory or the complete one, never half
//! of one (the temporary directory of a killed process is what [`is_temporary`] recognises, so
//! the next writer can sweep it away). The same recipe as fairseq's `torch_persistent_save`
//! and Marian's `.temp` model files, for directories.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// The prefix of a directory written by [`write_dir_atomically`] and not yet renamed.
const TEMPORARY_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` and flushes them to disk.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|e| TrainError::io(path, e))
}

/// Flushes the file or directory `path` to disk (a directory: its entries).
pub(crate) fn sync_path(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| TrainError::io(path, e))
}

/// Whether `name` is the temporary directory of a write that has not finished (it may still be
/// under way in another process, or the writer died).
pub(crate) fn is_temporary(name: &str) -> bool {
    name.starts_with(TEMPORARY_PREFIX)
}

/// The temporary sibling that [`write_dir_atomically`] fills before renaming it to `target`.
fn temporary_sibling(parent: &Path, name: &str) -> PathBuf {
    parent.join(format!("{TEMPORARY_PREFIX}{name}-{}", std::process::id()))
}

/// Creates the directory `target` with the contents `write` puts into the path it is given,
/// all or nothing: `write` fills a fresh temporary sibling, which is synced and renamed to
/// `target`, and the parent is synced. `check` runs just before the rename (e.g. to make sure
/// nothing appeared at `target` meanwhile); the rename fails if `target` exists and is not an
/// empty directory. The temporary directory is removed if anything fails.
///
/// # Errors
/// `target` without a file name, any I/O error (naming its path), and whatever `write` or
/// `check` return.
pub(crate) fn write_dir_atomically(
    target: &Path,
    check: impl FnOnce() -> Result<()>,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let name = target.file_name().ok_or_else(|| {
        TrainError::Config(format!("{} cannot be an output directory: it has no name", target.display()))
    })?;
    let parent = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    let tmp = temporary_sibling(parent, &name.to_string_lossy());
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    // Renaming onto an empty directory replaces it (POSIX rename); onto anything else, fails.
    let written = write(&tmp)
        .and_then(|()| sync_path(&tmp))
        .and_then(|()| check())
        .and_then(|()| fs::rename(&tmp, target).map_err(|e| TrainError::io(target, e)));
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_path(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_finished_write_leaves_only_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        write_dir_atomically(&target, || Ok(()), |tmp| write_synced(&tmp.join("a.txt"), b"hello")).unwrap();
        assert_eq!(names(dir.path()), ["out"]);
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"hello");
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let err = write_dir_atomically(
            &target,
            || Ok(()),
            |tmp| {
                write_synced(&tmp.join("a.txt"), b"half")?;
                Err(TrainError::Config("disk full".into()))
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn a_failed_check_or_an_occupied_target_leaves_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep.txt"), b"old").unwrap();
        let write = |tmp: &Path| write_synced(&tmp.join("a.txt"), b"new");
        assert!(write_dir_atomically(&target, || Ok(()), write).is_err());
        let refused = write_dir_atomically(&target, || Err(TrainError::Config("refused".into())), write);
        assert!(refused.unwrap_err().to_string().contains("refused"));
        assert_eq!(names(dir.path()), ["out"]);
        assert_eq!(names(&target), ["keep.txt"]);
    }

    #[test]
    fn the_temporary_directory_is_recognised() {
        let tmp = temporary_sibling(Path::new("x"), "step-10");
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_temporary(&name), "{name}");
        assert!(name.ends_with(&format!("-{}", std::process::id())), "{name}");
        assert!(!is_temporary("step-10"));
    }
}
