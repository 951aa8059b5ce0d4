//! Typed errors of the checker crate.

use thiserror::Error;

/// Bad input: a line that cannot be parsed, or a history that breaks the rules of histories.
/// Always names the file and the 1-based line.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct InputError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl InputError {
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> Self {
        InputError { file: file.to_string(), line, message: message.into() }
    }
}

/// Why a check could not produce a verdict at all (as opposed to verdict `unknown`).
#[derive(Debug, Error)]
pub enum CheckError {
    /// The input is malformed or breaks the history rules.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Several bad lines (only with strict parsing off, this is never returned).
    #[error("{0}")]
    Other(String),
    /// The history file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
