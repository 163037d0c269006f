//! Errors of the daemon, each naming the file or peer concerned, so a log line is enough to act.

use std::path::{Path, PathBuf};

/// Why a daemon operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration file is unreadable or wrong.
    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A spool or queue record is malformed.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A received object cannot be used (not DICOM, no series UID...).
    #[error("received object: {0}")]
    BadObject(String),
    /// A DICOM network exchange failed.
    #[error("network: {0}")]
    Net(String),
    /// Processing a series failed.
    #[error("{0}")]
    Pipeline(String),
}

impl DaemonError {
    /// A file-system error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DaemonError::Io {
            path: path.into(),
            source,
        }
    }
}
