//! Prepared training data on disk: the memory-mapped frame store, the importers that fill it,
//! and the fixed patient-level validation split.

pub mod error;
pub mod frames;
pub mod import;
pub mod import_dicom;
pub mod qc;
pub mod split;

pub use error::{ImportError, StoreError};
pub use frames::{FrameMeta, FrameStore, FrameStoreWriter};
pub use import::{import_acdc, ImportSummary};
pub use split::is_validation;
