//! DICOM in and out: read what real scanners write, assemble cine stacks with the corrections
//! public data needs, and write results back as objects PACS and viewers accept.

mod attr;
pub mod contours;
pub mod error;
pub mod geometry;
pub mod inspect;
pub mod instance;
mod jpegls;
pub mod masks;
pub mod patient;
pub mod precheck;
pub mod sc;
pub mod seg;
pub mod seg_refs;
pub mod sr;
pub mod sr_codes;
pub mod stack;
mod stack_build;
mod stack_check;
pub mod writer;

pub use error::DicomError;
pub use inspect::{inspect, InspectReport};
pub use instance::{read_file, Geometry, Identifiers, Instance};
pub use stack::{assemble, AssembleOptions, CineStack, Correction};
