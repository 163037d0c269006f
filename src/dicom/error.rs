//! Typed errors for everything DICOM, each naming the file (or folder) and the problem, so an
//! operator beside the scanner can tell a broken export from an unsupported codec without a
//! debugger, and so the daemon can quarantine one study and keep serving.

use std::path::PathBuf;

/// Everything that can go wrong while reading, assembling or writing DICOM.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    /// Plain I/O on a named file or folder.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder that could not be read or written.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file is not DICOM, or its structure could not be parsed (truncated, bad lengths...).
    #[error("{path}: not a readable DICOM file: {reason}")]
    Parse {
        /// The offending file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// A size claimed by the header (file, image, frame count) exceeds what we agree to allocate.
    #[error("{path}: refused: {reason}")]
    TooLarge {
        /// The offending file.
        path: PathBuf,
        /// Which size and which limit.
        reason: String,
    },
    /// A required attribute is absent.
    #[error("{path}: missing attribute {attribute}")]
    Missing {
        /// The offending file.
        path: PathBuf,
        /// Keyword of the attribute, e.g. `Rows`.
        attribute: &'static str,
    },
    /// An attribute is present but its value cannot be used.
    #[error("{path}: invalid {attribute}: {reason}")]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// Keyword of the attribute.
        attribute: &'static str,
        /// Why the value is unusable.
        reason: String,
    },
    /// The pixel data uses an encoding this build cannot decode.
    #[error("{path}: unsupported: {reason}")]
    Unsupported {
        /// The offending file.
        path: PathBuf,
        /// Transfer syntax or feature that is not supported, and what to do about it.
        reason: String,
    },
    /// The pixel data could not be decoded (corrupt or truncated stream).
    #[error("{path}: pixel data could not be decoded: {reason}")]
    Decode {
        /// The offending file.
        path: PathBuf,
        /// The decoder's reason.
        reason: String,
    },
    /// Instances could not be assembled into a cine stack.
    #[error("{path}: cannot assemble a cine stack: {reason}")]
    Assemble {
        /// The folder (or first file) the instances came from.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A series whose images cannot be one cine stack (see `stack::StackDefect`): refused
    /// before any number is computed, so no confident but wrong EF is reported.
    #[error("{path}: series {series_uid} is not a cine stack: {defect}")]
    NotACineStack {
        /// The folder (or first file) the instances came from.
        path: PathBuf,
        /// SeriesInstanceUID, made printable.
        series_uid: String,
        /// What is impossible about it.
        defect: super::stack::StackDefect,
    },
    /// A DICOM object could not be built or written.
    #[error("{path}: cannot write DICOM: {reason}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A contour file is malformed.
    #[error("{path}: bad contour file: {reason}")]
    Contour {
        /// The contour file.
        path: PathBuf,
        /// Line and problem.
        reason: String,
    },
}

impl DicomError {
    /// The file or folder the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            DicomError::Io { path, .. }
            | DicomError::Parse { path, .. }
            | DicomError::TooLarge { path, .. }
            | DicomError::Missing { path, .. }
            | DicomError::Invalid { path, .. }
            | DicomError::Unsupported { path, .. }
            | DicomError::Decode { path, .. }
            | DicomError::Assemble { path, .. }
            | DicomError::NotACineStack { path, .. }
            | DicomError::Write { path, .. }
            | DicomError::Contour { path, .. } => path,
        }
    }

    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DicomError::Io {
            path: path.into(),
            source,
        }
    }
}
