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
    /// A daemon thread could not be started (the system is out of threads or memory).
    #[error("starting the {name} thread: {source}")]
    Thread {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The compute backend or the model could not be set up for serving.
    #[error("inference stage: {0}")]
    Inference(#[from] crate::segment::SegmentError),
    /// A stage did not report ready in time (a backend that hangs while opening).
    #[error("the {0} stage did not start within 120 s")]
    NotStarted(&'static str),
    /// The model registry failed while choosing the serving model.
    #[error("model registry: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    /// A DICOM object could not be read or written (the context says which).
    #[error("{context}: {source}")]
    Dicom {
        context: &'static str,
        #[source]
        source: crate::dicom::DicomError,
    },
    /// A record or report could not be encoded as JSON.
    #[error("encoding {what} as JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl From<crate::fsio::PathIoError> for DaemonError {
    fn from(e: crate::fsio::PathIoError) -> Self {
        DaemonError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl DaemonError {
    /// A file-system error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DaemonError::Io {
            path: path.into(),
            source,
        }
    }

    /// A JSON encoding error of `what`, for `map_err`.
    pub fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| DaemonError::Json { what, source }
    }

    /// A DICOM error in `context`, for `map_err`.
    pub fn dicom(context: &'static str) -> impl Fn(crate::dicom::DicomError) -> Self + Copy {
        move |source| DaemonError::Dicom { context, source }
    }

    /// A failed thread start of `name`, for `map_err`.
    pub fn thread(name: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| DaemonError::Thread { name, source }
    }
}

/// Why one stage of a series' processing failed. The series is quarantined with this
/// message, so it names the stage's own error, not a flattened string.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Reading the received instances failed.
    #[error(transparent)]
    Dicom(#[from] crate::dicom::DicomError),
    /// Preparing, segmenting or measuring the images failed.
    #[error(transparent)]
    Segment(#[from] crate::segment::SegmentError),
    /// Keeping contours failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// Writing the results (DICOM objects, report.json, report.html) failed.
    #[error("writing the results: {0}")]
    Results(#[from] crate::report::ReportError),
    /// The received instances do not make one image stack; `why` lists the first defects.
    #[error("no image stack could be assembled from the {instances} received instances{why}")]
    NoStack { instances: usize, why: String },
    /// A stage received data inconsistent with what an earlier stage promised (a bug).
    #[error("internal inconsistency: {0}")]
    Internal(&'static str),
}
