//! RGB Secondary Capture overlays: the segmentation burnt into a copy of the image, for viewers
//! and PACS that cannot display DICOM SEG. One file per (slice, phase) image, filed in the same
//! study as a new series.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::error::DicomError;
use super::masks::{LabelMasks, LV, MYO, RV};
use super::stack::CineStack;
use super::writer::{ds, new_uid, now_da_tm, save, text, us};

/// Overlay colours (RGB) per class, and the opacity of the overlay.
const COLOURS: [(u8, [u8; 3]); 3] = [
    (LV, [230, 40, 40]),
    (MYO, [40, 200, 60]),
    (RV, [50, 110, 240]),
];
const ALPHA: f32 = 0.45;

/// Identity of the overlay series, shared by all images written for one stack.
#[derive(Debug, Clone)]
pub struct OverlaySeries {
    /// SeriesInstanceUID of the overlay series.
    pub series_uid: String,
    /// SeriesNumber.
    pub series_number: i64,
}

impl OverlaySeries {
    /// A new overlay series.
    pub fn new(series_number: i64) -> Self {
        OverlaySeries {
            series_uid: new_uid(),
            series_number,
        }
    }
}

/// Grey levels scaled to 0..255 between the 1st and 99th percentile of the image, so overlays
/// look the same whatever the scanner's intensity range.
fn window(pixels: &[f32]) -> Vec<u8> {
    let mut sorted: Vec<f32> = pixels.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f32::total_cmp);
    let pick = |q: f32| {
        sorted
            .get(((sorted.len().saturating_sub(1)) as f32 * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (lo, hi) = (pick(0.01), pick(0.99));
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    pixels
        .iter()
        .map(|v| ((v - lo) * scale).clamp(0.0, 255.0) as u8)
        .collect()
}

/// The RGB overlay of one image, interleaved (R, G, B per pixel).
pub fn overlay_rgb(pixels: &[f32], mask: &[u8]) -> Vec<u8> {
    let grey = window(pixels);
    let mut out = Vec::with_capacity(grey.len() * 3);
    for (g, m) in grey.iter().zip(mask.iter().chain(std::iter::repeat(&0))) {
        let colour = COLOURS.iter().find(|(c, _)| c == m).map(|(_, rgb)| *rgb);
        for k in 0..3 {
            let base = f32::from(*g);
            let v = match colour {
                Some(rgb) => base * (1.0 - ALPHA) + f32::from(rgb[k]) * ALPHA,
                None => base,
            };
            out.push(v.round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// Write the overlay of image (slice, phase) as an RGB Secondary Capture at `path`.
pub fn write_overlay(
    stack: &CineStack,
    masks: &LabelMasks,
    slice: usize,
    phase: usize,
    series: &OverlaySeries,
    path: &Path,
) -> Result<String, DicomError> {
    let werr = |reason: String| DicomError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let frame = stack
        .frame(slice, phase)
        .ok_or_else(|| werr(format!("no image at slice {slice}, phase {phase}")))?;
    let mask = masks
        .image(slice, phase)
        .ok_or_else(|| werr(format!("no mask at slice {slice}, phase {phase}")))?;
    let rgb = overlay_rgb(&frame.pixels, mask);
    let (date, time) = now_da_tm();
    let sop_uid = new_uid();
    let ids = &stack.ids;
    let g = &stack.grid;
    let position = stack
        .slices
        .get(slice)
        .map(|s| s.position)
        .unwrap_or(g.position);
    let instance_number = slice * stack.n_phases() + phase + 1;
    let elements = vec![
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        text(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
        text(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY"),
        text(tags::STUDY_DATE, VR::DA, ""),
        text(tags::STUDY_TIME, VR::TM, ""),
        text(tags::CONTENT_DATE, VR::DA, &date),
        text(tags::CONTENT_TIME, VR::TM, &time),
        text(tags::ACCESSION_NUMBER, VR::SH, ""),
        text(tags::MODALITY, VR::CS, "OT"),
        text(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        text(tags::MANUFACTURER, VR::LO, "cineseg"),
        text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
        text(tags::SERIES_DESCRIPTION, VR::LO, "cineseg overlay"),
        text(tags::PATIENT_NAME, VR::PN, ""),
        text(
            tags::PATIENT_ID,
            VR::LO,
            ids.patient_id.as_deref().unwrap_or_default(),
        ),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, ""),
        text(tags::PATIENT_SEX, VR::CS, ""),
        text(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            ids.study_uid.as_deref().unwrap_or_default(),
        ),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &series.series_uid),
        text(tags::STUDY_ID, VR::SH, ""),
        text(
            tags::SERIES_NUMBER,
            VR::IS,
            &series.series_number.to_string(),
        ),
        text(tags::LATERALITY, VR::CS, ""),
        text(tags::INSTANCE_NUMBER, VR::IS, &instance_number.to_string()),
        text(tags::PATIENT_ORIENTATION, VR::CS, ""),
        ds(tags::IMAGE_POSITION_PATIENT, &position),
        ds(tags::IMAGE_ORIENTATION_PATIENT, &g.orientation),
        us(tags::SAMPLES_PER_PIXEL, 3),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"),
        us(tags::PLANAR_CONFIGURATION, 0),
        us(tags::ROWS, g.rows as u16),
        us(tags::COLUMNS, g.cols as u16),
        ds(tags::PIXEL_SPACING, &g.pixel_spacing),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
        text(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(pad_even(rgb)),
        ),
    ];
    let obj = InMemDicomObject::from_element_iter(elements);
    save(obj, uids::SECONDARY_CAPTURE_IMAGE_STORAGE, &sop_uid, path)?;
    Ok(sop_uid)
}

fn pad_even(mut v: Vec<u8>) -> Vec<u8> {
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_tints_labelled_pixels_only() {
        let pixels: Vec<f32> = (0..16).map(|i| i as f32 * 10.0).collect();
        let mut mask = vec![0u8; 16];
        mask[5] = LV;
        mask[6] = MYO;
        let rgb = overlay_rgb(&pixels, &mask);
        assert_eq!(rgb.len(), 48);
        let px = |i: usize| [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]];
        let [r, g, b] = px(4);
        assert!(r == g && g == b, "unlabelled stays grey");
        let [r, g, b] = px(5);
        assert!(r > g && r > b, "LV is red: {:?}", px(5));
        let [r, g, b] = px(6);
        assert!(g > r && g > b, "MYO is green: {:?}", px(6));
    }
}
