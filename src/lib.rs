//! cineseg: cardiac cine MRI segmentation for the computer beside the scanner.
//!
//! The binary (`src/main.rs`) only parses arguments; everything it does lives here so that it
//! can be tested.

pub mod dicom;
pub mod nn;
pub mod train;
