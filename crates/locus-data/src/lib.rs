//! Data handling for Locus: parallel corpora, a joint subword tokenizer,
//! length filtering and token-budget batching.
//!
//! The usual pipeline:
//!
//! 1. [`ParallelCorpus::read`] the training files (plain or `.gz`);
//! 2. [`SubwordTokenizer::train`] a joint tokenizer on both sides, and
//!    [`save`](SubwordTokenizer::save) it next to the model;
//! 3. [`SubwordTokenizer::encode_corpus`] into [`TokenizedPair`]s;
//! 4. [`filter_pairs`] with the [`LengthFilter`] from the [`DataConfig`];
//! 5. every epoch, [`BatchPlanner::plan`] batches of example indices.
//!
//! All errors are [`DataError`]s whose messages name the file and line, the
//! configuration field, or the example involved.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod batching;
pub mod buckets;
pub mod config;
pub mod corpus;
pub mod error;
pub mod filter;
pub mod synthetic;
pub mod tokenizer;

pub use batching::{BatchPlanner, TokenBudget, TokenizedPair};
pub use buckets::{BucketsError, LengthBucket, LengthBuckets};
pub use config::DataConfig;
pub use corpus::{read_lines, read_lines_allow_empty, ParallelCorpus};
pub use error::{DataError, Result};
pub use filter::{filter_pairs, FilterReport, LengthFilter, LengthVerdict};
pub use synthetic::{Example, Task, TaskSpec};
pub use tokenizer::{SubwordModel, SubwordTokenizer, BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID};
