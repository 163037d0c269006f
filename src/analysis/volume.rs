//! The label volume type shared by post-processing, metrics, volumes and reports.
//!
//! A cine study is segmented slice by slice, so a phase is a stack of 2D label images on one
//! grid. Keeping it as one flat buffer (x fastest, then y, then slice) lets every algorithm
//! here run without allocation per slice and lets the pipeline hand over network output as-is.

use super::error::AnalysisError;

/// Class index of background.
pub const BACKGROUND: u8 = 0;
/// Class index of the LV blood pool (cavity, papillary muscles included).
pub const LV: u8 = 1;
/// Class index of the LV myocardium.
pub const MYO: u8 = 2;
/// Class index of the RV blood pool.
pub const RV: u8 = 3;
/// The foreground classes, in order, for loops that report per class.
pub const FOREGROUND: [u8; 3] = [LV, MYO, RV];

/// One phase of a segmented short-axis stack.
///
/// `spacing` is `[x, y, slice]` in mm, the slice entry being the distance between slice
/// centres (not the slice thickness): volumes and surface distances need the sampling
/// distance.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelVolume {
    /// Columns per slice.
    pub width: usize,
    /// Rows per slice.
    pub height: usize,
    /// Number of slices.
    pub slices: usize,
    /// Pixel spacing x, y and slice spacing, in mm.
    pub spacing: [f32; 3],
    /// Class per voxel, x fastest, then y, then slice.
    pub labels: Vec<u8>,
}

impl LabelVolume {
    /// An all-background volume, the starting point for drawing or for assembling slices.
    pub fn new(width: usize, height: usize, slices: usize, spacing: [f32; 3]) -> Self {
        LabelVolume {
            width,
            height,
            slices,
            spacing,
            labels: vec![0; width * height * slices],
        }
    }

    /// Wraps an existing label buffer, checking that its length and spacing fit, so that no
    /// later index can go out of bounds.
    pub fn from_labels(
        width: usize,
        height: usize,
        slices: usize,
        spacing: [f32; 3],
        labels: Vec<u8>,
    ) -> Result<Self, AnalysisError> {
        let expected = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(slices))
            .ok_or_else(|| AnalysisError::Shape(format!("{width}x{height}x{slices} overflows")))?;
        if labels.len() != expected {
            return Err(AnalysisError::Shape(format!(
                "{} labels for a {width}x{height}x{slices} volume (expected {expected})",
                labels.len()
            )));
        }
        let v = LabelVolume {
            width,
            height,
            slices,
            spacing,
            labels,
        };
        v.check_spacing()?;
        Ok(v)
    }

    /// Checks what the fields being public cannot guarantee: the buffer matches the declared
    /// size and the spacing is usable. Every analysis entry point calls it before indexing.
    pub fn validate(&self) -> Result<(), AnalysisError> {
        let expected = self
            .width
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(self.slices));
        if expected != Some(self.labels.len()) {
            return Err(AnalysisError::Shape(format!(
                "{} labels for a {}x{}x{} volume",
                self.labels.len(),
                self.width,
                self.height,
                self.slices
            )));
        }
        self.check_spacing()
    }

    /// Rejects spacings that would turn every mm or ml value into nonsense.
    pub fn check_spacing(&self) -> Result<(), AnalysisError> {
        if self.spacing.iter().all(|s| s.is_finite() && *s > 0.0) {
            Ok(())
        } else {
            Err(AnalysisError::Spacing(self.spacing))
        }
    }

    /// Pixels per slice.
    pub fn slice_len(&self) -> usize {
        self.width * self.height
    }

    /// Flat index of voxel (x, y, z); callers guarantee the coordinates are in range.
    #[inline]
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        (z * self.height + y) * self.width + x
    }

    /// The label at (x, y, z), or `None` outside the volume.
    pub fn get(&self, x: usize, y: usize, z: usize) -> Option<u8> {
        if x < self.width && y < self.height && z < self.slices {
            self.labels.get(self.index(x, y, z)).copied()
        } else {
            None
        }
    }

    /// The labels of one slice, or `None` when `z` is out of range.
    pub fn slice(&self, z: usize) -> Option<&[u8]> {
        let n = self.slice_len();
        self.labels.get(z * n..(z + 1) * n)
    }

    /// Number of voxels of `class`.
    pub fn count(&self, class: u8) -> usize {
        self.labels.iter().filter(|&&l| l == class).count()
    }

    /// Number of voxels of `class` in slice `z` (0 when `z` is out of range).
    pub fn count_in_slice(&self, z: usize, class: u8) -> usize {
        self.slice(z)
            .map_or(0, |s| s.iter().filter(|&&l| l == class).count())
    }

    /// Volume of one voxel in ml (mm^3 / 1000).
    pub fn voxel_volume_ml(&self) -> f64 {
        self.spacing.iter().map(|&s| s as f64).product::<f64>() / 1000.0
    }

    /// Whether `other` lies on the same grid, so voxelwise comparison makes sense.
    pub fn check_same_grid(&self, other: &LabelVolume) -> Result<(), AnalysisError> {
        let same_dims =
            (self.width, self.height, self.slices) == (other.width, other.height, other.slices);
        let same_spacing = self
            .spacing
            .iter()
            .zip(other.spacing.iter())
            .all(|(a, b)| (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1e-6));
        self.validate()?;
        other.validate()?;
        if same_dims && same_spacing {
            Ok(())
        } else {
            Err(AnalysisError::Shape(format!(
                "{}x{}x{} @ {:?} mm vs {}x{}x{} @ {:?} mm",
                self.width,
                self.height,
                self.slices,
                self.spacing,
                other.width,
                other.height,
                other.slices,
                other.spacing
            )))
        }
    }

    /// Binary mask of one class, the input of the distance and component code.
    pub fn mask(&self, class: u8) -> Vec<bool> {
        self.labels.iter().map(|&l| l == class).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_labels_checks_length_and_spacing() {
        assert!(LabelVolume::from_labels(4, 3, 2, [1.0, 1.0, 5.0], vec![0; 24]).is_ok());
        assert!(matches!(
            LabelVolume::from_labels(4, 3, 2, [1.0, 1.0, 5.0], vec![0; 23]),
            Err(AnalysisError::Shape(_))
        ));
        assert!(matches!(
            LabelVolume::from_labels(4, 3, 2, [1.0, 0.0, 5.0], vec![0; 24]),
            Err(AnalysisError::Spacing(_))
        ));
    }

    #[test]
    fn indexing_is_x_fastest() {
        let mut v = LabelVolume::new(4, 3, 2, [1.0, 1.0, 1.0]);
        let i = v.index(1, 2, 1);
        v.labels[i] = LV;
        assert_eq!(i, 12 + 2 * 4 + 1);
        assert_eq!(v.get(1, 2, 1), Some(LV));
        assert_eq!(v.get(4, 0, 0), None);
        assert_eq!(v.count_in_slice(1, LV), 1);
        assert_eq!(v.count_in_slice(0, LV), 0);
        assert!(
            (LabelVolume::new(1, 1, 1, [1.5, 1.5, 10.0]).voxel_volume_ml() - 0.0225).abs() < 1e-9
        );
    }
}
