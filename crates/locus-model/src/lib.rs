//! The Locus encoder-decoder Transformer (Vaswani et al. 2017, <https://arxiv.org/abs/1706.03762>)
//! on candle, with pluggable positional encodings.
//!
//! The model is built from small modules, each with one job: [`attention`] (multi-head
//! attention with an additive bias and a key/value cache), [`feed_forward`], [`norm`],
//! [`positional`] (how the model learns position), [`encoder`], [`decoder`] and
//! [`transformer`], which ties them into [`Seq2Seq`]. [`greedy`] decodes with the cache.
//!
//! Every forward pass that can drop out takes an `Option<&mut DropoutRng>`: `Some` while
//! training (seeded, so a CPU run is repeatable), `None` at inference.
#![warn(missing_docs)]

pub mod attention;
pub mod config;
pub mod decoder;
pub mod dropout;
pub mod encoder;
pub mod error;
pub mod feed_forward;
pub mod greedy;
pub mod init;
pub mod mask;
pub mod norm;
pub mod positional;
mod residual;
#[cfg(test)]
mod testing;
pub mod transformer;

pub use config::{Activation, ModelConfig, NormPosition, StackConfig};
pub use dropout::{DropoutRng, DropoutRngState};
pub use error::{ModelError, Result};
pub use greedy::{greedy_decode, GreedyOptions};
pub use init::SeededVarMap;
pub use positional::{PositionalConfig, PositionalEncoding};
pub use transformer::{Memory, Seq2Seq, TokenIds};
