//! Typed errors of the engine, so the CLI and the daemon can say exactly what was wrong.

use std::path::PathBuf;

/// Everything that can go wrong while loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor or batch has a shape the model cannot take; the message names both shapes.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The model configuration itself is unusable (e.g. depth 0, base 0).
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// A weights file could not be read or does not describe this model.
    #[error("weights file {path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    /// Plain I/O on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The selected device cannot be used.
    #[error("device unavailable: {0}")]
    Device(String),
}

impl NnError {
    /// Shorthand for a weights-file error naming the file.
    pub fn weights(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        NnError::Weights {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
