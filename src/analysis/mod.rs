//! Clinical analysis of segmentations: clean-up of network output, agreement with reference
//! contours, ventricular volumes and function, and plausibility checks.
//!
//! Everything here works on [`LabelVolume`]s (stacks of 2D label slices, one per cardiac
//! phase) in the class order used throughout cineseg: 0 background, 1 LV blood pool,
//! 2 LV myocardium, 3 RV blood pool.

pub mod clinical;
pub mod error;
pub mod label_qc;
pub mod metrics;
pub mod postprocess;
pub mod quality;
pub mod reference;
pub mod series;
pub mod volume;
pub mod volumes;

pub use error::AnalysisError;
pub use volume::{LabelVolume, BACKGROUND, LV, MYO, RV};
