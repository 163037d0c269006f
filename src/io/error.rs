//! Typed errors for reading and writing medical image files, so a bad file in a folder of
//! hundreds is reported by name and reason instead of stopping the program with a panic.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing image files and dataset folders.
/// Every variant names the file, because the caller usually processes many of them.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The file or folder could not be opened, read or written at the OS level (missing,
    /// permissions, disk full).
    #[error("{path}: {source}")]
    Fs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a valid NIfTI-1 file (truncated, corrupt, bad header).
    #[error("{path}: not a readable NIfTI-1 file: {reason}")]
    Nifti { path: PathBuf, reason: String },
    /// A valid NIfTI file that cineseg cannot use (voxel type, 5-D data, bad spacing).
    #[error("{path}: unsupported NIfTI content: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    /// A dataset folder does not follow the expected layout (e.g. a bad ACDC `Info.cfg`).
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    /// A label volume holds a value outside the dataset's label set.
    #[error("{path}: label value {value} is not one of the dataset's labels")]
    Label { path: PathBuf, value: u8 },
    /// Arguments given to a writer do not describe a consistent volume.
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
}

impl IoError {
    /// Shorthand for an OS-level error on a named path.
    pub fn fs(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError::Fs {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for a dataset-layout error on a named path.
    pub fn layout(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        IoError::Layout {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
