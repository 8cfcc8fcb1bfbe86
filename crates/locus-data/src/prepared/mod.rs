//! Prepared datasets: a corpus tokenized once by [`crate::prepare()`] into memory-mapped shards
//! of token ids, read back by [`PreparedDataset`] with only its length table in memory.
//!
//! A prepared dataset is a directory:
//!
//! - `manifest.json` ([`Manifest`]): the layout version, the token width, the tokenizer's
//!   fingerprint, the filter settings, per-corpus counts, the shards of each split, and the
//!   size and XXH3 checksum of every other file;
//! - `tokenizer.json`: the joint tokenizer the ids come from;
//! - `train-NNNNN.bin`/`.idx` and `valid-NNNNN.bin`/`.idx`: the shards ([`shard`]);
//! - `valid.src.txt`, `valid.tgt.txt`: the validation corpus as text, for BLEU.
//!
//! `docs/prepared-data.md` describes the bytes and gives a numpy reader.

pub mod manifest;
pub mod shard;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::batching::{PairLengths, TokenizedPair};
use crate::error::{DataError, Result};
use crate::prepared::manifest::{Manifest, SplitIndex};
use crate::prepared::shard::{read_lengths, MappedShard, TokenWidth};
use crate::tokenizer::SubwordTokenizer;

/// The tokenizer's file name inside a prepared dataset.
pub const TOKENIZER: &str = "tokenizer.json";

/// A prepared dataset opened for training; see the [module documentation](self).
pub struct PreparedDataset {
    /// The directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The tokenizer its ids come from.
    pub tokenizer: SubwordTokenizer,
    /// The training pairs.
    pub train: PreparedSplit,
    /// The validation pairs that pass the length filter.
    pub valid: PreparedSplit,
    /// Every validation source sentence, as text.
    pub valid_sources: Vec<String>,
    /// Every validation reference, as text.
    pub valid_references: Vec<String>,
}

impl PreparedDataset {
    /// Opens the dataset in `dir`: reads its manifest, checks the size and checksum of every
    /// file (in parallel), loads its tokenizer and maps its shards.
    ///
    /// # Errors
    ///
    /// [`DataError::Prepared`] naming the manifest if it is missing or of another layout
    /// version, or naming the first file that is missing, of the wrong size, or whose checksum
    /// differs from the manifest's.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        verify_files(dir, &manifest)?;
        let manifest_path = dir.join(manifest::MANIFEST);
        let width = TokenWidth::from_bytes(manifest.token_bytes).ok_or_else(|| DataError::Prepared {
            path: manifest_path.clone(),
            message: format!("token_bytes is {}; it must be 2 or 4", manifest.token_bytes),
        })?;
        let tokenizer = SubwordTokenizer::load(&dir.join(TOKENIZER))?;
        if tokenizer.fingerprint() != manifest.tokenizer_fingerprint {
            return Err(DataError::Prepared {
                path: dir.join(TOKENIZER),
                message: "its fingerprint differs from the manifest's".into(),
            });
        }
        let train = PreparedSplit::open(dir, "train", &manifest.train, width)?;
        let valid = PreparedSplit::open(dir, "valid", &manifest.valid_split, width)?;
        let [src_text, tgt_text] = &manifest.valid_text;
        let valid_sources = crate::corpus::read_lines_allow_empty(&dir.join(src_text))?;
        let valid_references = crate::corpus::read_lines_allow_empty(&dir.join(tgt_text))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            tokenizer,
            train,
            valid,
            valid_sources,
            valid_references,
        })
    }
}

/// Checks every file the manifest lists: present, of its size, with its checksum.
fn verify_files(dir: &Path, manifest: &Manifest) -> Result<()> {
    manifest.files.par_iter().try_for_each(|(name, entry)| {
        let path = dir.join(name);
        match entry.mismatch(&path) {
            None => Ok(()),
            Some(what) => Err(DataError::Prepared {
                path,
                message: format!("{what}; the dataset is incomplete or damaged, prepare the data again"),
            }),
        }
    })
}

/// One split of a prepared dataset: its shards mapped, its length table in memory.
pub struct PreparedSplit {
    /// `<dataset>/<split name>`, for errors.
    path: PathBuf,
    shards: Vec<MappedShard>,
    /// The global index of each shard's first pair.
    starts: Vec<usize>,
    lengths: Vec<PairLengths>,
}

impl PreparedSplit {
    fn open(dir: &Path, name: &str, index: &SplitIndex, width: TokenWidth) -> Result<Self> {
        let mut shards = Vec::with_capacity(index.shards.len());
        let mut starts = Vec::with_capacity(index.shards.len());
        let mut lengths = Vec::new();
        for entry in &index.shards {
            starts.push(lengths.len());
            shards.push(MappedShard::open(dir, entry, width)?);
            lengths.extend(read_lengths(&dir.join(&entry.idx), entry.pairs)?);
        }
        if lengths.len() != index.pairs {
            return Err(DataError::Prepared {
                path: dir.join(manifest::MANIFEST),
                message: format!(
                    "{name} has {} pairs in its shards but {} in total",
                    lengths.len(),
                    index.pairs
                ),
            });
        }
        Ok(Self { path: dir.join(name), shards, starts, lengths })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether the split has no pair.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The length table, what the batch planner needs.
    pub fn lengths(&self) -> &[PairLengths] {
        &self.lengths
    }

    /// Pair `index`, read from the maps.
    ///
    /// # Errors
    ///
    /// [`DataError::Prepared`] if `index` is out of range or the shard is damaged.
    pub fn pair(&self, index: usize) -> Result<TokenizedPair> {
        let shard = self.starts.partition_point(|&start| start <= index).saturating_sub(1);
        match (self.shards.get(shard), self.lengths.get(index), self.starts.get(shard)) {
            (Some(mapped), Some(&lengths), Some(&start)) => mapped.pair(index - start, lengths),
            _ => Err(DataError::Prepared {
                path: self.path.clone(),
                message: format!("pair {index} is out of range ({} pairs)", self.len()),
            }),
        }
    }

    /// The pairs `indices` (one batch), read from the maps, whose pages are then unmapped again
    /// so that reading batches does not grow the resident set.
    ///
    /// # Errors
    ///
    /// As [`pair`](Self::pair).
    pub fn read_batch(&self, indices: &[u32]) -> Result<Vec<TokenizedPair>> {
        let pairs = indices.iter().map(|&i| self.pair(i as usize)).collect();
        self.shards.iter().for_each(MappedShard::release_pages);
        pairs
    }

    /// Every pair, in order (for small splits such as validation).
    ///
    /// # Errors
    ///
    /// As [`pair`](Self::pair).
    pub fn pairs(&self) -> Result<Vec<TokenizedPair>> {
        (0..self.len()).map(|i| self.pair(i)).collect()
    }
}
