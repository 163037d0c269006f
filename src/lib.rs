//! cineseg: cardiac cine MRI segmentation for the computer beside the scanner.
//!
//! The binary (`src/main.rs`) only parses arguments; everything it does lives here so that it
//! can be tested.

pub mod analysis;
pub mod bench;
pub mod cli;
pub mod daemon;
pub mod dicom;
pub mod fsio;
pub mod image;
pub mod io;
pub mod nn;
pub mod phantom;
pub mod registry;
pub mod report;
pub mod segment;
pub mod store;
pub mod text;
pub mod train;
