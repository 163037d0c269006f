//! 2D image handling between files and the network: slices with physical spacing, the mapping
//! to the model's fixed grid (resample, centre crop or pad, normalise) and back.
//!
//! Training and inference both go through [`prepare_image`]; inference goes back through
//! [`restore_scores`] / [`restore_labels`] with the [`Placement`] it returned, so the masks
//! land on the scanner's native pixel grid.

pub mod preprocess;
pub mod resample;

pub use preprocess::{percentile_window, prepare_image, prepare_labels};
pub use resample::{argmax_restored, restore_labels, restore_scores, Placement};

use serde::{Deserialize, Serialize};

/// One 2D image on its native pixel grid, with the physical pixel size needed to resample it.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice2D {
    pub width: usize,
    pub height: usize,
    /// Pixel size along x (columns) and y (rows), in millimetres.
    pub spacing: [f32; 2],
    /// Row-major pixel values, x fastest: `data[y * width + x]`.
    pub data: Vec<f32>,
}

/// Which cardiac phase an image belongs to. ED and ES are the phases experts contour and the
/// clinical volumes are measured at, so training samples and reports need to tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// End-diastole (largest ventricular volume).
    #[serde(rename = "ED")]
    Ed,
    /// End-systole (smallest ventricular volume).
    #[serde(rename = "ES")]
    Es,
    /// Any other phase of the cine.
    #[serde(rename = "other")]
    Other,
}

/// Inputs the geometry code cannot work with. These come from callers (slice sizes, model
/// metadata), so they are errors rather than panics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// A buffer's length does not match the dimensions it claims.
    #[error("buffer holds {got} values but {what} needs {expected}")]
    Length {
        what: String,
        got: usize,
        expected: usize,
    },
    /// Zero-sized image, or a spacing that is not a positive finite number.
    #[error("invalid geometry: {0}")]
    Geometry(String),
    /// The preprocessing description (usually from a model file) cannot be applied.
    #[error("invalid preprocessing: {0}")]
    Preprocess(String),
}
