//! One writer per run directory: `locus train` holds an exclusive lock on `<run>/.lock` for as
//! long as it trains, so a second `locus train` on the same directory is refused, naming the
//! process that holds it.
//!
//! The lock is the operating system's (`flock` on Unix, through [`File::try_lock`]), not the
//! file's existence: it dies with its process, so a run killed with `kill -9` leaves no lock
//! behind, only the file with the dead holder's process id, which the next run reports taking
//! over. The file is never deleted (deleting a lock file races with a process that has just
//! opened it); a run that ends normally empties it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Result, TrainError};

/// The lock file's name in a run directory.
pub const LOCK_FILE: &str = ".lock";

/// The lock on a run directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl RunLock {
    /// Locks `run_dir` (which must exist) for this process. Returns the lock and, when the
    /// previous holder died without releasing it (killed), what that holder wrote: its process
    /// id and host.
    ///
    /// # Errors
    /// [`TrainError::Config`] when another process holds the lock, naming it; [`TrainError::Io`]
    /// if the lock file cannot be opened, read or written.
    pub fn acquire(run_dir: &Path) -> Result<(Self, Option<String>)> {
        let path = run_dir.join(LOCK_FILE);
        let io = |e| TrainError::io(&path, e);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let locked = file.try_lock();
        let mut previous = String::new();
        file.read_to_string(&mut previous).map_err(io)?;
        let previous = previous.trim().to_string();
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = if previous.is_empty() { "another process".to_string() } else { previous };
                return Err(TrainError::Config(format!(
                    "{} is in use by another `locus train` ({holder}); wait for it to finish or stop it, \
                     or choose another train.out_dir",
                    run_dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).and_then(|()| file.rewind()).map_err(io)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let holder = match host {
            "" => format!("pid {}", std::process::id()),
            host => format!("pid {} on {host}", std::process::id()),
        };
        file.write_all(holder.as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
        let stale = (!previous.is_empty()).then_some(previous);
        Ok((Self { file }, stale))
    }
}

impl Drop for RunLock {
    /// Empties the lock file (a normal end leaves nothing to take over), then the lock goes
    /// with the file handle.
    fn drop(&mut self) {
        // If this fails, the next run reports taking over from this one: nothing worse.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_naming_its_holder_and_a_released_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let (held, stale) = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(stale, None);
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())) && err.contains("in use"), "{err}");
        drop(held);
        let (_again, stale) = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(stale, None, "a lock released normally is not stale");
    }

    #[test]
    fn the_lock_of_a_dead_holder_is_taken_over() {
        // What `kill -9` leaves: the file with the holder's id, and no lock on it.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "pid 4194305 on elsewhere\n").unwrap();
        let (_lock, stale) = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(stale.as_deref(), Some("pid 4194305 on elsewhere"));
        let now = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(now.starts_with(&format!("pid {}", std::process::id())), "{now}");
    }
}
