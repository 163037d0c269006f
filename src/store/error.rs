//! Typed errors of the frame store and the importers that fill it, naming the file involved so
//! a broken store or a bad source file can be found and fixed.

use crate::image::ImageError;
use crate::io::IoError;
use std::path::PathBuf;

/// Everything that can go wrong while writing or opening a frame store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// OS-level failure on a named file (missing, permissions, disk full).
    #[error("{path}: {source}")]
    Fs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store on disk is incomplete, truncated or inconsistent with its index.
    #[error("{path}: damaged frame store: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A frame handed to the writer does not match the store's geometry or classes.
    #[error("invalid frame for store {path}: {reason}")]
    Frame { path: PathBuf, reason: String },
}

impl StoreError {
    pub(crate) fn fs(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Fs {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Everything that can stop a dataset import; each variant names the source file or folder.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A source file or folder could not be read or is malformed.
    #[error(transparent)]
    Source(#[from] IoError),
    /// A slice could not be put on the model grid (bad geometry or preprocessing).
    #[error("{path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    /// An image and its labels do not describe the same grid.
    #[error("{path}: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    /// The source folder holds nothing to import.
    #[error("{path}: {reason}")]
    Empty { path: PathBuf, reason: String },
    /// Writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A DICOM series or its contours could not be read (the error names the file).
    #[error(transparent)]
    Dicom(#[from] crate::dicom::DicomError),
}
