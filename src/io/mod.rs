//! Reading and writing image files and dataset folders: NIfTI volumes and the ACDC layout.
//! (DICOM lives in `crate::dicom`.)

pub mod acdc;
pub mod error;
pub mod nifti;

pub use error::IoError;
pub use nifti::{read_volume, write_labels, Volume};
