//! The model crate's error type.

use thiserror::Error;

/// Errors raised while building or running a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A configuration value breaks a rule; the message names the field, the value and the rule.
    #[error("invalid model config: {0}")]
    Config(String),
    /// Decoding settings that cannot work together (e.g. an n-best list longer than the beam).
    #[error("invalid search settings: {0}")]
    Search(String),
    /// An input is longer than a learned positional table can represent.
    #[error(
        "sequence needs position {position}, but the learned position table holds max_len {max_len} \
         (learned positions cannot extrapolate; raise max_len and retrain, or use another kind)"
    )]
    PositionOutOfRange {
        /// The highest position (0-based) the input needs.
        position: usize,
        /// The size of the learned table.
        max_len: usize,
    },
    /// An error from a tensor operation.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
