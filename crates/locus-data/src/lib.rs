//! Data handling for Locus: parallel corpora, a joint subword tokenizer,
//! length filtering and token-budget batching.
//!
//! The pipeline:
//!
//! 1. [`prepare()`] the corpora a [`DataConfig`] names, of any size, into a prepared dataset:
//!    a joint [`SubwordTokenizer`] trained on a sample (or given), every pair encoded in
//!    parallel, filtered ([`LengthFilter`]) and written to memory-mapped shards;
//! 2. [`PreparedDataset::open`] it, checking every file's checksum: its length table is all
//!    that is held in memory;
//! 3. every epoch, [`BatchPlanner::plan`] batches of example indices by their lengths, and read
//!    each batch's pairs from the maps.
//!
//! All errors are [`DataError`]s whose messages name the file and line, the
//! configuration field, or the example involved.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod atomic_dir;
pub mod batching;
pub mod buckets;
pub mod checksum;
pub mod config;
pub mod corpus;
pub mod error;
pub mod filter;
pub mod prepare;
pub mod prepared;
pub mod synthetic;
pub mod tokenizer;

pub use batching::{
    pair_lengths, token_share, BatchPlan, BatchPlanner, PairLengths, TokenBudget, TokenizedPair,
};
pub use buckets::{BucketsError, LengthBucket, LengthBuckets};
pub use config::{CorpusPaths, DataConfig};
pub use corpus::{read_lines, read_lines_allow_empty, LineReader, PairReader, ParallelCorpus};
pub use error::{DataError, Result};
pub use filter::{filter_pairs, FilterReport, LengthFilter, LengthVerdict};
pub use prepare::{prepare, PrepareOptions, PrepareProgress};
pub use prepared::PreparedDataset;
pub use synthetic::{Example, Task, TaskSpec};
pub use tokenizer::{SubwordModel, SubwordTokenizer, BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID};
