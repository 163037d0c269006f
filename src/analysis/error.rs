//! Typed errors of the analysis code, so callers can tell a caller bug (mismatched shapes)
//! from a study that simply has nothing to measure.

/// What can go wrong while measuring or comparing segmentations.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Two volumes that must share a grid do not, or a label buffer does not match its
    /// declared size; the message names both shapes.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A measurement needs at least one phase (or one value) and got none.
    #[error("nothing to analyse: {0}")]
    Empty(String),
    /// A spacing is zero, negative or not finite, which would make every mm value meaningless.
    #[error("invalid voxel spacing {0:?} (must be finite and > 0 mm)")]
    Spacing([f32; 3]),
}
