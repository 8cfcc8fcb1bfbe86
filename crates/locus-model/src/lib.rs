//! The Locus encoder-decoder Transformer (Vaswani et al. 2017, <https://arxiv.org/abs/1706.03762>)
//! on candle, with pluggable positional encodings.
//!
//! The model is built from small modules, each with one job: [`attention`] (multi-head
//! attention with an additive bias and a key/value cache), [`feed_forward`], [`norm`],
//! [`positional`] (how the model learns position), [`encoder`], [`decoder`] and
//! [`transformer`], which ties them into [`Seq2Seq`]. [`search`] decodes with the cache: greedy,
//! beam search and sampling.
//!
//! Every forward pass that can drop out takes an `Option<&mut DropoutRng>`: `Some` while
//! training (seeded, so a CPU run is repeatable), `None` at inference.
#![warn(missing_docs)]
// Library code returns errors: no unwrap or expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod attention;
pub mod config;
pub mod decoder;
pub mod dropout;
pub mod encoder;
pub mod error;
pub mod feed_forward;
pub mod init;
pub mod kv_cache;
pub mod linear;
pub mod mask;
pub mod norm;
pub mod ops;
pub mod positional;
mod residual;
pub mod search;
pub mod stack;
#[cfg(test)]
mod testing;
pub mod transformer;

pub use attention::AttentionMaps;
pub use config::{Activation, ModelConfig, NormPosition, StackConfig};
pub use dropout::{DropoutRng, DropoutRngState};
pub use error::{ModelError, Result};
pub use init::SeededVarMap;
pub use linear::Quantization;
pub use positional::{PositionalConfig, PositionalEncoding};
pub use search::beam::{beam_search, BeamOptions};
pub use search::continuous::{Admission, Finished, RunningBatch};
pub use search::greedy::{greedy_decode, greedy_decode_to};
pub use search::sampling::{sample, SamplingOptions};
pub use search::{Hypothesis, LengthLimits, Scorer, Seq2SeqScorer};
pub use transformer::{Memory, Seq2Seq, TokenIds};
