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
    /// A received instance is refused with a DICOM status: it does not match its C-STORE
    /// command, is not a kind of object the service takes, or is corrupt. The sender is told
    /// with `status` and nothing is kept.
    #[error("instance {sop} refused (status 0x{status:04X}): {reason}")]
    Rejected {
        sop: String,
        status: u16,
        reason: String,
    },
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
