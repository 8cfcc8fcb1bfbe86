//! File sizes and XXH3-64 checksums, as manifests record them: how prepared datasets and
//! checkpoints tell a complete file from a truncated, damaged or missing one.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::error::{DataError, Result};

/// The size and checksum of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its length in bytes.
    pub bytes: u64,
    /// The XXH3-64 hash of its bytes, as 16 lowercase hex digits (what `xxhsum -H3` prints).
    pub xxh3: String,
}

impl FileEntry {
    /// The size and checksum of the file `path` as it is now.
    ///
    /// # Errors
    /// [`DataError::Io`] naming `path` if it cannot be read.
    pub fn of(path: &Path) -> Result<Self> {
        let bytes = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?.len();
        Ok(Self { bytes, xxh3: checksum(path)? })
    }

    /// How the file `path` differs from this entry, in words (`None` when it matches): it
    /// cannot be read (missing), has another size (truncated or extended), or another checksum
    /// (damaged). The size is checked first, so a truncated file is not read.
    pub fn mismatch(&self, path: &Path) -> Option<String> {
        let bytes = match std::fs::metadata(path) {
            Ok(metadata) => metadata.len(),
            Err(e) => return Some(format!("cannot read it: {e}")),
        };
        if bytes != self.bytes {
            return Some(format!("{bytes} bytes, but the manifest says {}", self.bytes));
        }
        match checksum(path) {
            Err(e) => Some(format!("cannot read it: {e}")),
            Ok(digest) if digest != self.xxh3 => {
                Some(format!("XXH3 checksum {digest}, but the manifest says {}", self.xxh3))
            }
            Ok(_) => None,
        }
    }
}

/// The XXH3-64 digest as a manifest writes it.
pub(crate) fn hex_digest(hasher: &Xxh3) -> String {
    format!("{:016x}", hasher.digest())
}

/// The XXH3-64 checksum of the file `path`, as a manifest writes it.
fn checksum(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| DataError::io(path, e))?;
        if read == 0 {
            return Ok(hex_digest(&hasher));
        }
        hasher.update(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_their_file_and_name_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"hello").unwrap();
        let entry = FileEntry::of(&path).unwrap();
        // `xxhsum -H3` of "hello".
        assert_eq!(entry, FileEntry { bytes: 5, xxh3: "9555e8555c62dcfd".into() });
        assert_eq!(entry.mismatch(&path), None);
        std::fs::write(&path, b"hellO").unwrap();
        assert!(entry.mismatch(&path).unwrap().starts_with("XXH3 checksum"));
        std::fs::write(&path, b"hell").unwrap();
        assert_eq!(entry.mismatch(&path).unwrap(), "4 bytes, but the manifest says 5");
        std::fs::remove_file(&path).unwrap();
        assert!(entry.mismatch(&path).unwrap().starts_with("cannot read it"));
    }
}
