//! Label masks aligned to a `CineStack`: one class value per pixel of every (slice, phase)
//! image, and the set of classes that were actually labelled. The class order is cineseg's
//! (0 background, 1 LV, 2 MYO, 3 RV); a mask set that only labels some classes says so, so
//! training can treat the rest as unknown rather than as background.

use serde::Serialize;

use super::writer::Code;

/// The class ids, from their one definition in [`crate::analysis::volume`].
pub use crate::analysis::volume::{BACKGROUND, LV, MYO, RV};

/// A structure written as one DICOM SEG segment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Structure {
    /// The cineseg class value.
    pub class: u8,
    /// SegmentLabel.
    pub label: &'static str,
    /// SegmentedPropertyCategoryCodeSequence (SNOMED CT).
    pub category: Code,
    /// SegmentedPropertyTypeCodeSequence (SNOMED CT).
    pub kind: Code,
    /// RecommendedDisplayCIELabValue, scaled as the standard asks (0..65535).
    pub cielab: [u16; 3],
}

/// Segmented property category of all three structures (CID 7150; 123037004, used before, is
/// SNOMED's "Body structure" and in no context group).
const ANATOMICAL_STRUCTURE: Code = Code {
    value: "91723000",
    scheme: "SCT",
    meaning: "Anatomical Structure",
};

/// The three structures cineseg segments, in class order.
pub const STRUCTURES: [Structure; 3] = [
    Structure {
        class: LV,
        label: "LV blood pool",
        category: ANATOMICAL_STRUCTURE,
        kind: Code {
            value: "87878005",
            scheme: "SCT",
            meaning: "Left Ventricle",
        },
        cielab: [34_000, 53_000, 50_000],
    },
    Structure {
        class: MYO,
        label: "LV myocardium",
        category: ANATOMICAL_STRUCTURE,
        // CID 12305; the generic "Myocardium" (74281007) used before is in no context group and
        // does not say which ventricle.
        kind: Code {
            value: "49848007",
            scheme: "SCT",
            meaning: "Left Ventricle Myocardium",
        },
        cielab: [50_000, 20_000, 60_000],
    },
    Structure {
        class: RV,
        label: "RV blood pool",
        category: ANATOMICAL_STRUCTURE,
        kind: Code {
            value: "53085002",
            scheme: "SCT",
            meaning: "Right Ventricle",
        },
        cielab: [40_000, 30_000, 10_000],
    },
];

/// Class values per pixel for every image of a stack, slice-major (slice * n_phases + phase).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMasks {
    /// Slices of the stack.
    pub n_slices: usize,
    /// Phases of the stack.
    pub n_phases: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// Class values, `n_slices * n_phases * rows * cols`.
    pub labels: Vec<u8>,
    /// Which classes were labelled (e.g. LV and MYO only for Sunnybrook).
    pub labelled: Vec<u8>,
    /// The classes drawn in each (slice, phase) image (slice-major). Empty: not annotated, so
    /// unknown rather than background; e.g. a Sunnybrook end-systole image has LV but no MYO.
    pub annotated: Vec<Vec<u8>>,
}

impl LabelMasks {
    /// All-background masks with nothing annotated.
    pub fn empty(
        n_slices: usize,
        n_phases: usize,
        rows: usize,
        cols: usize,
        labelled: Vec<u8>,
    ) -> Self {
        LabelMasks {
            n_slices,
            n_phases,
            rows,
            cols,
            labels: vec![BACKGROUND; n_slices * n_phases * rows * cols],
            labelled,
            annotated: vec![Vec::new(); n_slices * n_phases],
        }
    }

    /// The mask of one image.
    pub fn image(&self, slice: usize, phase: usize) -> Option<&[u8]> {
        let n = self.rows * self.cols;
        let start = (slice * self.n_phases + phase) * n;
        if slice >= self.n_slices || phase >= self.n_phases {
            return None;
        }
        self.labels.get(start..start + n)
    }

    /// The mask of one image, mutable.
    pub fn image_mut(&mut self, slice: usize, phase: usize) -> Option<&mut [u8]> {
        let n = self.rows * self.cols;
        let start = (slice * self.n_phases + phase) * n;
        if slice >= self.n_slices || phase >= self.n_phases {
            return None;
        }
        self.labels.get_mut(start..start + n)
    }
}
