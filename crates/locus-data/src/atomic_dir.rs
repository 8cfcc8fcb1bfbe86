//! Durable, all-or-nothing directory writes: what prepared datasets, checkpoints and averaged
//! checkpoints are made of.
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

use crate::error::{DataError, Result};

/// The prefix of a directory written by [`write_dir_atomically`] and not yet renamed.
const TEMPORARY_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` and flushes them to disk.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let written = fs::File::create(path).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written.map_err(|source| DataError::Write { path: path.to_path_buf(), source })
}

/// Flushes the file or directory `path` to disk (a directory: its entries).
pub fn sync_path(path: &Path) -> Result<()> {
    let synced = fs::File::open(path).and_then(|f| f.sync_all());
    synced.map_err(|source| DataError::Write { path: path.to_path_buf(), source })
}

/// Whether `name` is the temporary directory of a write that has not finished (it may still be
/// under way in another process, or the writer died).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(TEMPORARY_PREFIX)
}

/// Removes the temporary siblings of `target` left by writers that are no longer running
/// (their process id is gone from `/proc`; where there is no `/proc`, none is removed).
///
/// # Errors
/// [`DataError::Write`] naming a directory that cannot be removed.
pub fn sweep_abandoned(target: &Path) -> Result<()> {
    let (Some(name), Some(parent)) = (target.file_name(), target.parent()) else { return Ok(()) };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let prefix = format!("{TEMPORARY_PREFIX}{}-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent) else { return Ok(()) };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let pid = file_name.strip_prefix(&prefix).and_then(|pid| pid.parse::<u32>().ok());
        let dead = pid.is_some_and(|pid| {
            Path::new("/proc/self").exists() && !Path::new("/proc").join(pid.to_string()).exists()
        });
        if dead {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|source| DataError::Write { path, source })?;
        }
    }
    Ok(())
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
pub fn write_dir_atomically<E: From<DataError>>(
    target: &Path,
    check: impl FnOnce() -> std::result::Result<(), E>,
    write: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| E::from(DataError::Write { path, source })
    };
    let name = target.file_name().ok_or_else(|| {
        let source =
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "an output directory needs a name");
        failed(target)(source)
    })?;
    let parent = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(failed(parent))?;
    let tmp = temporary_sibling(parent, &name.to_string_lossy());
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(failed(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(failed(&tmp))?;
    // Renaming onto an empty directory replaces it (POSIX rename); onto anything else, fails.
    let written = write(&tmp)
        .and_then(|()| sync_path(&tmp).map_err(E::from))
        .and_then(|()| check())
        .and_then(|()| fs::rename(&tmp, target).map_err(failed(target)));
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_path(parent).map_err(E::from)
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
                Err(DataError::config("disk", "full"))
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
        let refused = write_dir_atomically(&target, || Err(DataError::config("check", "refused")), write);
        assert!(refused.unwrap_err().to_string().contains("refused"));
        assert_eq!(names(dir.path()), ["out"]);
        assert_eq!(names(&target), ["keep.txt"]);
    }

    #[test]
    fn abandoned_temporaries_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("prepared");
        // u32::MAX is never a live process id; ours is.
        let dead = dir.path().join(format!(".tmp-prepared-{}", u32::MAX));
        let alive = temporary_sibling(dir.path(), "prepared");
        let other = dir.path().join(format!(".tmp-other-{}", u32::MAX));
        for path in [&dead, &alive, &other] {
            fs::create_dir(path).unwrap();
        }
        sweep_abandoned(&target).unwrap();
        let mut expected = vec![
            alive.file_name().unwrap().to_string_lossy().into_owned(),
            format!(".tmp-other-{}", u32::MAX),
        ];
        expected.sort();
        assert_eq!(names(dir.path()), expected);
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
