//! `metrics.jsonl`: one JSON object per logged event, appended and flushed as it happens.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Result, TrainError};

/// An append-only JSON-lines log.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens (or creates) `path` for appending; `truncate` empties it first (a new run).
    /// A last line cut short by a crash is dropped, so that the log stays one object per line.
    pub fn open(path: &Path, truncate: bool) -> Result<Self> {
        let io = |e| TrainError::io(path, e);
        if truncate {
            let file = File::create(path).map_err(io)?;
            return Ok(Self { path: path.to_path_buf(), file });
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        let bytes = fs::read(path).map_err(io)?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(complete as u64).map_err(io)?;
        }
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Appends `record` as one line.
    pub fn write(&mut self, record: &Value) -> Result<()> {
        let line = format!("{record}\n");
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reopening_drops_a_torn_last_line_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        fs::write(&path, "{\"step\":1}\n{\"st").unwrap();
        MetricsLog::open(&path, false).unwrap().write(&json!({ "step": 2 })).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"step\":1}\n{\"step\":2}\n");
        MetricsLog::open(&path, true).unwrap().write(&json!({ "step": 1 })).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"step\":1}\n");
    }
}
