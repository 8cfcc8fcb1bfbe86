//! `manifest.json`: what a prepared dataset holds, how it was made, and the size and XXH3
//! checksum of every file in it. The byte layout it describes is in `docs/prepared-data.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::checksum::FileEntry;
use crate::config::{DataConfig, DropReason};
use crate::error::{DataError, Result};
use crate::tokenizer::SubwordModel;

/// The manifest's file name inside a prepared dataset directory.
pub const MANIFEST: &str = "manifest.json";

/// The value of [`Manifest::format`].
pub const FORMAT: &str = "locus-prepared";

/// The layout version this build writes and reads. Bump it whenever a file's bytes change
/// meaning; [`Manifest::check_format`] refuses any other.
pub const FORMAT_VERSION: u32 = 1;

/// Everything about a prepared dataset; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version, [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// Bytes per token id in the `.bin` shards: 2 (little-endian u16) when the vocabulary has
    /// fewer than 65,536 entries, else 4 (little-endian u32).
    pub token_bytes: u8,
    /// Entries in the tokenizer's vocabulary.
    pub vocab_size: usize,
    /// The tokenizer's [fingerprint](crate::SubwordTokenizer::fingerprint).
    pub tokenizer_fingerprint: String,
    /// Where the tokenizer came from.
    pub tokenizer_origin: TokenizerOrigin,
    /// The filter settings the training pairs passed.
    pub filter: FilterSettings,
    /// A hash of the inputs (paths, sizes and modification times) and of every setting that
    /// shapes the result: equal keys mean the same dataset.
    pub source_key: String,
    /// Per training corpus, in the config's order: its lines and what was kept and dropped.
    pub corpora: Vec<CorpusStats>,
    /// The validation corpus, filtered by the length filter alone.
    pub valid: CorpusStats,
    /// The training pairs, corpus after corpus, in file order.
    pub train: SplitIndex,
    /// The validation pairs that pass the length filter.
    pub valid_split: SplitIndex,
    /// The validation corpus as text, every line: `[source file, target file]`.
    pub valid_text: [String; 2],
    /// Size and checksum of every other file in the directory, by name.
    pub files: BTreeMap<String, FileEntry>,
    /// Seconds the preparation took.
    pub seconds: f64,
}

/// How the tokenizer of a prepared dataset was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenizerOrigin {
    /// Trained on a seeded sample of the training pairs (every pair when there are fewer than
    /// the sample's size).
    Trained {
        /// The subword model.
        model: SubwordModel,
        /// The vocabulary size asked for.
        vocab_size: usize,
        /// Lines (both sides counted) trained on.
        sample_lines: usize,
        /// The sampling seed.
        sample_seed: u64,
    },
    /// An existing tokenizer, used as it is.
    Given {
        /// The `tokenizer.json` it was read from (`data.tokenizer_file`); none when the caller
        /// supplied it (a resumed run's checkpoint).
        path: Option<PathBuf>,
    },
}

/// The length filter of a prepared dataset's training pairs (`data.min_len` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FilterSettings {
    /// `data.min_len`.
    pub min_len: usize,
    /// `data.max_len`.
    pub max_len: usize,
    /// `data.max_len_ratio`.
    pub max_len_ratio: f64,
    /// `data.max_train_len`.
    pub max_train_len: Option<usize>,
}

impl FilterSettings {
    /// The settings of `config`.
    pub fn of(config: &DataConfig) -> Self {
        Self {
            min_len: config.min_len,
            max_len: config.max_len,
            max_len_ratio: config.max_len_ratio,
            max_train_len: config.max_train_len,
        }
    }
}

/// One input corpus: its files, its lines, and what was kept and dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusStats {
    /// The source-side file.
    pub src: PathBuf,
    /// The target-side file.
    pub tgt: PathBuf,
    /// Lines on each side.
    pub lines: usize,
    /// Pairs kept.
    pub pairs: usize,
    /// Source tokens kept (without specials).
    pub src_tokens: u64,
    /// Target tokens kept (without specials).
    pub tgt_tokens: u64,
    /// Pairs dropped, by reason.
    pub dropped: DropCounts,
}

/// Pairs dropped, by the first rule they break: an empty side, then the length filter's rules,
/// then `data.max_train_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DropCounts {
    /// A side was empty or whitespace only.
    pub empty: usize,
    /// A side was shorter than `data.min_len` tokens.
    pub too_short: usize,
    /// A side was longer than `data.max_len` tokens.
    pub too_long: usize,
    /// The length ratio exceeded `data.max_len_ratio`.
    pub bad_ratio: usize,
    /// A side was longer than `data.max_train_len` (training corpora only).
    pub over_max_train_len: usize,
}

impl DropCounts {
    /// Pairs dropped for any reason.
    pub fn total(&self) -> usize {
        self.empty + self.too_short + self.too_long + self.bad_ratio + self.over_max_train_len
    }

    /// Counts one dropped pair.
    pub fn count(&mut self, reason: DropReason) {
        match reason {
            DropReason::Empty => self.empty += 1,
            DropReason::TooShort => self.too_short += 1,
            DropReason::TooLong => self.too_long += 1,
            DropReason::BadRatio => self.bad_ratio += 1,
            DropReason::OverMaxTrainLen => self.over_max_train_len += 1,
        }
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &DropCounts) {
        self.empty += other.empty;
        self.too_short += other.too_short;
        self.too_long += other.too_long;
        self.bad_ratio += other.bad_ratio;
        self.over_max_train_len += other.over_max_train_len;
    }
}

/// The shards of one split.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SplitIndex {
    /// Pairs in all shards.
    pub pairs: usize,
    /// The shards, in pair order.
    pub shards: Vec<ShardEntry>,
}

/// One shard: a `.bin` file of token ids and its `.idx` file of offsets and lengths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// The token file's name.
    pub bin: String,
    /// The index file's name.
    pub idx: String,
    /// Pairs in the shard.
    pub pairs: usize,
    /// Token ids in the `.bin` file (both sides).
    pub tokens: u64,
}

impl Manifest {
    /// Reads `dir/manifest.json` and checks its format and version.
    ///
    /// # Errors
    ///
    /// [`DataError::Prepared`] naming the manifest if it is missing, not a manifest, or of
    /// another layout version.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::Prepared {
            path: path.clone(),
            message: format!(
                "cannot read it ({e}); is {} a dataset written by `locus prepare`?",
                dir.display()
            ),
        })?;
        // The format and version first, so that another version is named as such even when its
        // other fields no longer parse.
        #[derive(Deserialize)]
        struct Header {
            format: String,
            format_version: u32,
        }
        let header: Header = serde_json::from_str(&text).map_err(|e| DataError::Prepared {
            path: path.clone(),
            message: format!("not a manifest: {e}"),
        })?;
        check_format(&path, &header.format, header.format_version)?;
        serde_json::from_str(&text)
            .map_err(|e| DataError::Prepared { path, message: format!("not a valid manifest: {e}") })
    }

    /// The manifest as pretty-printed JSON.
    ///
    /// # Errors
    ///
    /// Never in practice; serialization of these types cannot fail.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| DataError::Prepared { path: PathBuf::from(MANIFEST), message: e.to_string() })
    }
}

/// Refuses a manifest of another format or layout version.
fn check_format(path: &Path, format: &str, version: u32) -> Result<()> {
    if format != FORMAT {
        return Err(DataError::Prepared {
            path: path.to_path_buf(),
            message: format!("its format is {format:?}, not {FORMAT:?}"),
        });
    }
    if version != FORMAT_VERSION {
        return Err(DataError::Prepared {
            path: path.to_path_buf(),
            message: format!(
                "layout version {version}, but this build of locus reads version {FORMAT_VERSION}; \
                 prepare the data again with `locus prepare`"
            ),
        });
    }
    Ok(())
}
