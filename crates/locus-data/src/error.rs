//! The crate's single error type, [`DataError`].
//!
//! Every message names what the user has to look at: the file and 1-based
//! line for corpus problems, the configuration field, its value and the rule
//! for configuration problems, and the example index and lengths for
//! batching problems.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, tokenizing, filtering or
/// batching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened, read or decompressed.
    #[error("reading {}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A file could not be created or written.
    #[error("writing {}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A line of a text file is not valid UTF-8.
    #[error("{}:{line}: invalid UTF-8", path.display())]
    InvalidUtf8 {
        /// The file holding the line.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },

    /// A line that must hold text is empty (or whitespace only).
    #[error(
        "{}:{line}: empty line (parallel corpora must have text on every line)",
        path.display()
    )]
    EmptyLine {
        /// The file holding the line.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },

    /// The two sides of a parallel corpus have different numbers of lines.
    #[error(
        "parallel corpus is misaligned: {} has {src_lines} lines but {} has {tgt_lines} lines",
        src_path.display(),
        tgt_path.display()
    )]
    LineCountMismatch {
        /// The source-side file.
        src_path: PathBuf,
        /// Number of lines in the source-side file.
        src_lines: usize,
        /// The target-side file.
        tgt_path: PathBuf,
        /// Number of lines in the target-side file.
        tgt_lines: usize,
    },

    /// Training, loading, saving or applying a subword tokenizer failed.
    #[error("{}", describe_tokenizer_error(path.as_deref(), message))]
    Tokenizer {
        /// The tokenizer file involved, if any.
        path: Option<PathBuf>,
        /// What went wrong.
        message: String,
    },

    /// A configuration value breaks a rule.
    ///
    /// Displayed as `"{field} {message}"`, so `message` continues the
    /// sentence, e.g. field `data.vocab_size` and message
    /// `(3) must be at least 5 (4 special tokens + 1)`.
    #[error("{field} {message}")]
    Config {
        /// The dotted name of the field, e.g. `data.vocab_size`.
        field: String,
        /// The value and the rule it breaks.
        message: String,
    },

    /// A prepared dataset's file is missing, damaged, or of another layout version.
    #[error("{}: {message}", path.display())]
    Prepared {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A single example does not fit into a batch of `max_tokens` tokens.
    #[error(
        "example {index} (source {src_len} tokens, target {tgt_len} tokens) needs {needed} \
         tokens including EOS/BOS, more than max_tokens = {max_tokens}; \
         raise data.max_tokens or lower data.max_len"
    )]
    ExampleTooLong {
        /// The 0-based index of the example.
        index: usize,
        /// Its source length in subword tokens (without specials).
        src_len: usize,
        /// Its target length in subword tokens (without specials).
        tgt_len: usize,
        /// Tokens it needs on its own: `max(src_len, tgt_len) + 1`.
        needed: usize,
        /// The batch budget it exceeds.
        max_tokens: usize,
    },
}

/// Shorthand for results whose error is [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

/// Formats a tokenizer error, prefixed with the file when there is one.
fn describe_tokenizer_error(path: Option<&Path>, message: &str) -> String {
    match path {
        Some(path) => format!("tokenizer {}: {message}", path.display()),
        None => format!("tokenizer: {message}"),
    }
}

impl DataError {
    /// Builds an [`DataError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }

    /// Builds a [`DataError::Tokenizer`] that names no file.
    pub fn tokenizer(message: impl Into<String>) -> Self {
        DataError::Tokenizer { path: None, message: message.into() }
    }

    /// Builds a [`DataError::Config`] for `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Config { field: field.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_line_and_field() {
        let err = DataError::InvalidUtf8 { path: PathBuf::from("corpus/train.de"), line: 17 };
        assert_eq!(err.to_string(), "corpus/train.de:17: invalid UTF-8");

        let err = DataError::config("data.vocab_size", "(3) must be at least 5");
        assert_eq!(err.to_string(), "data.vocab_size (3) must be at least 5");

        let err =
            DataError::Tokenizer { path: Some(PathBuf::from("tok.json")), message: "missing <pad>".into() };
        assert_eq!(err.to_string(), "tokenizer tok.json: missing <pad>");
        assert_eq!(DataError::tokenizer("boom").to_string(), "tokenizer: boom");
    }

    #[test]
    fn io_error_names_the_path() {
        let err = DataError::io(
            Path::new("/no/such/file.gz"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
        );
        // The I/O error is the source, printed once in the chain (not again in the message).
        assert_eq!(err.to_string(), "reading /no/such/file.gz");
        assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "not found");
    }
}
