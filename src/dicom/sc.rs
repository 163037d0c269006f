//! RGB Secondary Captures: pictures for viewers and PACS that show neither SEG nor SR (the
//! segmentation burnt into a copy of each image with a caption and colour key, and the summary
//! page with the numbers), filed in the source's patient and study as a new series, each
//! referencing the images it was made from.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::error::DicomError;
use super::patient::StudyContext;
use super::stack::SourceRef;
use super::writer::{new_uid, now_local, save, seq, source_image_item, text, us, SeriesId};
use crate::report::RgbImage;

/// The series of a result's secondary captures (overlays and the summary page).
pub type ScSeries = SeriesId;

/// One RGB picture to store as a secondary capture.
pub struct ScImage<'a> {
    /// The picture.
    pub image: &'a RgbImage,
    /// The source images it was derived from (referenced in SourceImageSequence).
    pub sources: Vec<&'a SourceRef>,
    /// InstanceNumber within the series.
    pub instance_number: usize,
    /// What it shows (DerivationDescription), e.g. "Slice 3 of 12, ED".
    pub description: String,
}

/// Writes `sc` as an RGB Secondary Capture at `path`, in the source's patient and study (so a
/// PACS files it with the images), referencing its source images; returns its SOPInstanceUID.
pub fn write_sc(
    context: &StudyContext,
    sc: &ScImage<'_>,
    series: &ScSeries,
    series_description: &str,
    path: &Path,
) -> Result<String, DicomError> {
    let img = sc.image;
    let werr = |reason: String| DicomError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let (Ok(rows), Ok(cols)) = (u16::try_from(img.height), u16::try_from(img.width)) else {
        return Err(werr(format!(
            "{}x{} is too large for DICOM",
            img.width, img.height
        )));
    };
    if img.data.len() != img.width * img.height * 3 {
        return Err(werr("RGB buffer does not match its size".into()));
    }
    let now = now_local();
    let sop_uid = new_uid();
    let sources: Vec<InMemDicomObject> = sc
        .sources
        .iter()
        .map(|src| source_image_item(src, Vec::new()))
        .collect();
    let mut obj = InMemDicomObject::new_empty();
    for (tag, vr, value) in &context.identity {
        obj.put(text(*tag, *vr, value));
    }
    let mut elements = vec![
        text(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
        text(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY"),
        text(tags::CONTENT_DATE, VR::DA, &now.date),
        text(tags::CONTENT_TIME, VR::TM, &now.time),
        text(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, &now.offset),
        text(tags::MODALITY, VR::CS, "OT"),
        text(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        text(tags::MANUFACTURER, VR::LO, "cineseg"),
        text(tags::SERIES_DESCRIPTION, VR::LO, series_description),
        text(tags::DERIVATION_DESCRIPTION, VR::ST, &sc.description),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &series.uid),
        text(tags::SERIES_NUMBER, VR::IS, &series.number.to_string()),
        // Type 2C; dciodvfy cannot evaluate the condition and wants it present (empty: unpaired).
        text(tags::LATERALITY, VR::CS, ""),
        text(
            tags::INSTANCE_NUMBER,
            VR::IS,
            &sc.instance_number.to_string(),
        ),
        text(tags::PATIENT_ORIENTATION, VR::CS, ""),
        us(tags::SAMPLES_PER_PIXEL, 3),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"),
        us(tags::PLANAR_CONFIGURATION, 0),
        us(tags::ROWS, rows),
        us(tags::COLUMNS, cols),
        us(tags::BITS_ALLOCATED, 8),
        us(tags::BITS_STORED, 8),
        us(tags::HIGH_BIT, 7),
        us(tags::PIXEL_REPRESENTATION, 0),
        // Slice, phase and the colour key are drawn in; no patient identity is.
        text(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"),
        text(
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            &format!("cineseg {}", env!("CARGO_PKG_VERSION")),
        ),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(pad_even(img.data.clone())),
        ),
    ];
    if !sources.is_empty() {
        elements.push(seq(tags::SOURCE_IMAGE_SEQUENCE, sources));
    }
    for e in elements {
        obj.put(e);
    }
    save(obj, uids::SECONDARY_CAPTURE_IMAGE_STORAGE, &sop_uid, path)?;
    Ok(sop_uid)
}

fn pad_even(mut v: Vec<u8>) -> Vec<u8> {
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}
