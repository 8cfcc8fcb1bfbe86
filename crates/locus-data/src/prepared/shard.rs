//! Shard files: writing them pair by pair, and reading pairs back from their memory maps.
//!
//! A shard is two files. `NAME.bin` holds the token ids of its pairs, each pair's source ids
//! then its target ids, as little-endian u16 or u32 ([`TokenWidth`]). `NAME.idx` holds
//! `pairs + 1` little-endian u64 offsets (in ids, from the start of the `.bin`: pair `j` spans
//! `offsets[j]..offsets[j + 1]`), then `pairs` little-endian u16 pairs `(source length, target
//! length)`.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use xxhash_rust::xxh3::Xxh3;

use crate::batching::{PairLengths, TokenizedPair};
use crate::checksum::{hex_digest, FileEntry};
use crate::error::{DataError, Result};
use crate::prepared::manifest::{ShardEntry, SplitIndex};

/// Bytes of one offset in a `.idx` file.
const OFFSET_BYTES: usize = 8;
/// Bytes of one `(source, target)` length pair in a `.idx` file.
const LENGTHS_BYTES: usize = 4;

/// The name and entry of each file written.
pub type WrittenFiles = Vec<(String, FileEntry)>;

/// How token ids are stored: two bytes when every id fits, else four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenWidth {
    /// Little-endian u16: vocabularies of up to 65,536 entries.
    U16,
    /// Little-endian u32.
    U32,
}

impl TokenWidth {
    /// The narrowest width for a vocabulary of `vocab_size` entries.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= usize::from(u16::MAX) + 1 {
            Self::U16
        } else {
            Self::U32
        }
    }

    /// The width stored in a manifest's `token_bytes`, if it is one.
    pub fn from_bytes(bytes: u8) -> Option<Self> {
        match bytes {
            2 => Some(Self::U16),
            4 => Some(Self::U32),
            _ => None,
        }
    }

    /// Bytes per id.
    pub fn bytes(self) -> u8 {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }
}

/// A file being written, with its running size and checksum.
struct HashedFile {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Xxh3,
    bytes: u64,
}

impl HashedFile {
    fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).map_err(|source| DataError::Write { path: path.clone(), source })?;
        Ok(Self { out: BufWriter::with_capacity(1 << 20, file), path, hasher: Xxh3::new(), bytes: 0 })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| DataError::Write { path: self.path.clone(), source })?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and syncs the file; returns its name and entry.
    fn finish(self) -> Result<(String, FileEntry)> {
        let Self { path, out, hasher, bytes } = self;
        let failed = |source| DataError::Write { path: path.clone(), source };
        let file = out.into_inner().map_err(|e| failed(e.into_error()))?;
        file.sync_all().map_err(failed)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok((name, FileEntry { bytes, xxh3: hex_digest(&hasher) }))
    }
}

/// The shard being filled.
struct OpenShard {
    bin: HashedFile,
    idx_path: PathBuf,
    offsets: Vec<u64>,
    lengths: Vec<u16>,
    tokens: u64,
}

/// Writes one split's pairs into shards of at most `shard_pairs` pairs each, named
/// `{split}-00000.bin`/`.idx`, `{split}-00001.bin`/`.idx`, ...
pub struct ShardWriter {
    dir: PathBuf,
    split: String,
    width: TokenWidth,
    shard_pairs: usize,
    open: Option<OpenShard>,
    index: SplitIndex,
    files: WrittenFiles,
    encoded: Vec<u8>,
}

impl ShardWriter {
    /// A writer of `split`'s shards into `dir`.
    pub fn new(dir: &Path, split: &str, width: TokenWidth, shard_pairs: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            split: split.to_owned(),
            width,
            shard_pairs: shard_pairs.max(1),
            open: None,
            index: SplitIndex::default(),
            files: Vec::new(),
            encoded: Vec::new(),
        }
    }

    /// Appends a pair. Each side must have at most 65,535 ids, each id must fit the width.
    ///
    /// # Errors
    ///
    /// [`DataError::Write`] naming the file that cannot be written, and
    /// [`DataError::Prepared`] if a side or an id does not fit the layout.
    pub fn push(&mut self, src: &[u32], tgt: &[u32]) -> Result<()> {
        let (Ok(src_len), Ok(tgt_len)) = (u16::try_from(src.len()), u16::try_from(tgt.len())) else {
            return Err(self.layout_error("a sentence has more than 65,535 tokens"));
        };
        self.encoded.clear();
        for &id in src.iter().chain(tgt) {
            match self.width {
                TokenWidth::U16 => match u16::try_from(id) {
                    Ok(id) => self.encoded.extend_from_slice(&id.to_le_bytes()),
                    Err(_) => {
                        return Err(self.layout_error(&format!("token id {id} does not fit in two bytes")))
                    }
                },
                TokenWidth::U32 => self.encoded.extend_from_slice(&id.to_le_bytes()),
            }
        }
        if self.open.is_none() {
            self.open = Some(self.start_shard()?);
        }
        let full = match self.open.as_mut() {
            Some(shard) => {
                shard.offsets.push(shard.tokens);
                shard.lengths.extend([src_len, tgt_len]);
                shard.tokens += (src.len() + tgt.len()) as u64;
                shard.bin.write(&self.encoded)?;
                shard.offsets.len() >= self.shard_pairs
            }
            None => false,
        };
        if full {
            self.close_shard()?;
        }
        Ok(())
    }

    /// Closes the last shard; returns the split's index and the entries of every file written.
    ///
    /// # Errors
    ///
    /// [`DataError::Write`] naming a file that cannot be written.
    pub fn finish(mut self) -> Result<(SplitIndex, WrittenFiles)> {
        self.close_shard()?;
        Ok((self.index, self.files))
    }

    fn layout_error(&self, message: &str) -> DataError {
        DataError::Prepared { path: self.dir.join(&self.split), message: message.to_owned() }
    }

    fn start_shard(&self) -> Result<OpenShard> {
        let name = format!("{}-{:05}", self.split, self.index.shards.len());
        Ok(OpenShard {
            bin: HashedFile::create(self.dir.join(format!("{name}.bin")))?,
            idx_path: self.dir.join(format!("{name}.idx")),
            offsets: Vec::new(),
            lengths: Vec::new(),
            tokens: 0,
        })
    }

    fn close_shard(&mut self) -> Result<()> {
        let Some(mut shard) = self.open.take() else { return Ok(()) };
        let pairs = shard.offsets.len();
        shard.offsets.push(shard.tokens);
        let mut idx = HashedFile::create(shard.idx_path)?;
        let offsets: Vec<u8> = shard.offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        idx.write(&offsets)?;
        let lengths: Vec<u8> = shard.lengths.iter().flat_map(|l| l.to_le_bytes()).collect();
        idx.write(&lengths)?;
        let (bin_name, bin_entry) = shard.bin.finish()?;
        let (idx_name, idx_entry) = idx.finish()?;
        self.index.pairs += pairs;
        self.index.shards.push(ShardEntry {
            bin: bin_name.clone(),
            idx: idx_name.clone(),
            pairs,
            tokens: shard.tokens,
        });
        self.files.push((bin_name, bin_entry));
        self.files.push((idx_name, idx_entry));
        Ok(())
    }
}

/// A shard opened for reading: both files memory-mapped, their sizes checked against the
/// manifest's counts.
pub(crate) struct MappedShard {
    bin: Mmap,
    idx: Mmap,
    bin_path: PathBuf,
    pairs: usize,
    width: TokenWidth,
}

/// Maps `path` read-only.
fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    // SAFETY: the map is only read. Its bytes could change under us only if another process
    // rewrote the file in place; `locus prepare` never does (it writes a new directory and
    // renames it), and the layout is checked against the manifest before any use.
    unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))
}

impl MappedShard {
    /// Maps the shard `entry` of the dataset in `dir`, checking that both files have the sizes
    /// its counts imply.
    pub(crate) fn open(dir: &Path, entry: &ShardEntry, width: TokenWidth) -> Result<Self> {
        let bin_path = dir.join(&entry.bin);
        let idx_path = dir.join(&entry.idx);
        let bin = map(&bin_path)?;
        let idx = map(&idx_path)?;
        let expected_bin = entry.tokens.saturating_mul(u64::from(width.bytes()));
        // Checked: the counts come from a manifest, which may have been edited.
        let expected_idx = entry
            .pairs
            .checked_add(1)
            .and_then(|offsets| offsets.checked_mul(OFFSET_BYTES))
            .and_then(|offsets| offsets.checked_add(entry.pairs.checked_mul(LENGTHS_BYTES)?))
            .map_or(u64::MAX, |bytes| bytes as u64);
        for (path, actual, expected) in
            [(&bin_path, bin.len(), expected_bin), (&idx_path, idx.len(), expected_idx)]
        {
            if actual as u64 != expected {
                return Err(DataError::Prepared {
                    path: path.clone(),
                    message: format!("{actual} bytes, but the manifest's counts imply {expected}"),
                });
            }
        }
        let shard = Self { bin, idx, bin_path, pairs: entry.pairs, width };
        if shard.offset(entry.pairs) != Some(entry.tokens) {
            return Err(DataError::Prepared {
                path: idx_path,
                message: format!("its offsets do not end at the manifest's {} tokens", entry.tokens),
            });
        }
        Ok(shard)
    }

    /// The offset of pair `j` (`j == pairs` gives the end).
    fn offset(&self, j: usize) -> Option<u64> {
        let bytes = self.idx.get(j * OFFSET_BYTES..(j + 1) * OFFSET_BYTES)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// Unmaps the pages reads have mapped into the process (they stay in the page cache): a
    /// batch's pairs lie all over the file, and each page fault maps its cached neighbours too
    /// (the kernel's fault-around, 64 KiB, which `MADV_RANDOM` does not turn off), so without
    /// this the resident set grew by about 40 MB per update on a 5M-pair dataset.
    pub(crate) fn release_pages(&self) {
        #[cfg(unix)]
        for map in [&self.bin, &self.idx] {
            // SAFETY: both maps are read-only shared mappings of files nobody writes (see `map`).
            // `MADV_DONTNEED` only drops this process's page-table entries for them; a later
            // read faults the same bytes back in from the file, so any slice into the map still
            // reads what it read before. A failure only leaves the pages mapped.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }

    /// Pair `j`, split into its sides by `lengths`.
    pub(crate) fn pair(&self, j: usize, lengths: PairLengths) -> Result<TokenizedPair> {
        let damaged = |what: &str| DataError::Prepared {
            path: self.bin_path.clone(),
            message: format!("pair {j} {what}; the dataset is damaged, prepare it again"),
        };
        let (start, end) = match (self.offset(j), self.offset(j + 1)) {
            (Some(start), Some(end)) if j < self.pairs => (start, end),
            _ => return Err(damaged("is out of range")),
        };
        let (src_len, tgt_len) = lengths.get();
        if end.checked_sub(start) != Some((src_len + tgt_len) as u64) {
            return Err(damaged("has offsets that disagree with its lengths"));
        }
        let width = usize::from(self.width.bytes());
        let bytes = usize::try_from(start)
            .ok()
            .and_then(|start| self.bin.get(start * width..(start + src_len + tgt_len) * width))
            .ok_or_else(|| damaged("lies outside the token file"))?;
        let mut ids: Vec<u32> = match self.width {
            TokenWidth::U16 => {
                bytes.chunks_exact(2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))).collect()
            }
            TokenWidth::U32 => {
                bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
        };
        let tgt = ids.split_off(src_len);
        Ok(TokenizedPair { src: ids, tgt })
    }
}

/// The `(source, target)` lengths of the `pairs` pairs of the index file `path`, read with
/// plain reads (not through the map, so that they do not stay resident twice).
pub(crate) fn read_lengths(path: &Path, pairs: usize) -> Result<Vec<PairLengths>> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    file.seek(SeekFrom::Start(((pairs + 1) * OFFSET_BYTES) as u64)).map_err(|e| DataError::io(path, e))?;
    let mut lengths = Vec::with_capacity(pairs);
    let mut buffer = vec![0u8; LENGTHS_BYTES * 65_536];
    while lengths.len() < pairs {
        let want = (pairs - lengths.len()).min(65_536) * LENGTHS_BYTES;
        file.read_exact(&mut buffer[..want]).map_err(|e| DataError::io(path, e))?;
        lengths.extend(buffer[..want].chunks_exact(LENGTHS_BYTES).map(|b| PairLengths {
            src: u16::from_le_bytes([b[0], b[1]]),
            tgt: u16::from_le_bytes([b[2], b[3]]),
        }));
    }
    Ok(lengths)
}
