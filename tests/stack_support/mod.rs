//! A small builder of synthetic cine series for the stack assembly tests: every image is
//! described by an [`Img`] (geometry, timing, header counts), its pixels are a phantom heart
//! drawn in patient coordinates (so an image on another raster shows the same anatomy), and
//! [`write`] stores a list of them as MR files under names that fix the order they are read in.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

/// One image of a synthetic series.
#[derive(Clone, Debug)]
pub struct Img {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SOPInstanceUID.
    pub sop_uid: String,
    /// InstanceNumber.
    pub instance: usize,
    /// Phase index and phase count: they set the LV radius.
    pub phase: usize,
    /// Phases in the cycle (for the radius).
    pub phases: usize,
    /// Rows and columns.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// PixelSpacing [row, column] (mm).
    pub spacing: [f64; 2],
    /// ImagePositionPatient.
    pub position: [f64; 3],
    /// ImageOrientationPatient.
    pub orientation: [f64; 6],
    /// TriggerTime (ms).
    pub trigger: Option<f64>,
    /// CardiacNumberOfImages.
    pub cni: Option<usize>,
    /// FrameOfReferenceUID.
    pub frame_of_reference: String,
}

/// Slice spacing of [`cine`] (mm).
pub const SLICE_MM: f64 = 8.0;
/// Trigger time step of [`cine`] (ms).
pub const STEP_MS: f64 = 40.0;

/// A regular axial cine: `slices` x `phases`, 40x40 px at 1.5 mm, 8 mm apart, trigger times
/// 40 ms apart, CardiacNumberOfImages = `phases`, one frame of reference.
pub fn cine(series_uid: &str, slices: usize, phases: usize) -> Vec<Img> {
    let mut out = Vec::new();
    for s in 0..slices {
        for p in 0..phases {
            let n = s * phases + p + 1;
            out.push(Img {
                series_uid: series_uid.into(),
                sop_uid: format!("{series_uid}.{n}"),
                instance: n,
                phase: p,
                phases,
                rows: 40,
                cols: 40,
                spacing: [1.5, 1.5],
                position: [-30.0, -30.0, s as f64 * SLICE_MM],
                orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                trigger: Some(p as f64 * STEP_MS),
                cni: Some(phases),
                frame_of_reference: format!("{series_uid}.98"),
            });
        }
    }
    out
}

/// Slice index of an image of [`cine`] (from its z position).
pub fn slice_of(img: &Img) -> usize {
    (img.position[2] / SLICE_MM).round() as usize
}

/// The phantom value at patient point (x, y): LV pool, myocardial ring, textured background.
fn phantom(x: f64, y: f64, phase: usize, phases: usize) -> u16 {
    let r_lv = 15.0 - 4.5 * phase as f64 / phases.max(1) as f64;
    let d = (x * x + y * y).sqrt();
    if d < r_lv {
        900
    } else if d < r_lv + 4.5 {
        300
    } else {
        100 + ((x.abs() * 7.0 + y.abs() * 13.0) as u16 % 50)
    }
}

fn pixels(img: &Img) -> Vec<u8> {
    let o = img.orientation;
    let mut px = Vec::with_capacity(img.rows * img.cols * 2);
    for r in 0..img.rows {
        for c in 0..img.cols {
            let (dc, dr) = (c as f64 * img.spacing[1], r as f64 * img.spacing[0]);
            let x = img.position[0] + o[0] * dc + o[3] * dr;
            let y = img.position[1] + o[1] * dc + o[4] * dr;
            px.extend_from_slice(&phantom(x, y, img.phase, img.phases).to_le_bytes());
        }
    }
    px
}

fn ds(v: &[f64]) -> PrimitiveValue {
    let s: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
    PrimitiveValue::from(s.join("\\"))
}

/// Writes one image to `path`.
pub fn write_one(img: &Img, path: &Path) {
    let el = |t, vr, v: PrimitiveValue| DataElement::new(t, vr, v);
    let s = |v: &str| PrimitiveValue::from(v);
    let mut elements = vec![
        el(tags::SOP_CLASS_UID, VR::UI, s("1.2.840.10008.5.1.4.1.1.4")),
        el(tags::SOP_INSTANCE_UID, VR::UI, s(&img.sop_uid)),
        el(tags::MODALITY, VR::CS, s("MR")),
        el(tags::PATIENT_ID, VR::LO, s("STACK-TEST")),
        el(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            s("1.2.826.0.1.3680043.99.1"),
        ),
        el(tags::SERIES_INSTANCE_UID, VR::UI, s(&img.series_uid)),
        el(tags::SERIES_NUMBER, VR::IS, s("7")),
        el(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            s(&img.frame_of_reference),
        ),
        el(tags::INSTANCE_NUMBER, VR::IS, s(&img.instance.to_string())),
        el(tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&img.position)),
        el(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            ds(&img.orientation),
        ),
        el(tags::PIXEL_SPACING, VR::DS, ds(&img.spacing)),
        el(tags::SLICE_THICKNESS, VR::DS, s("8")),
        el(tags::SPACING_BETWEEN_SLICES, VR::DS, s("8")),
        el(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, s("MONOCHROME2")),
        el(tags::ROWS, VR::US, PrimitiveValue::from(img.rows as u16)),
        el(tags::COLUMNS, VR::US, PrimitiveValue::from(img.cols as u16)),
        el(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
        el(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)),
        el(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)),
        el(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        el(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(pixels(img))),
    ];
    if let Some(t) = img.trigger {
        elements.push(el(tags::TRIGGER_TIME, VR::DS, ds(&[t])));
    }
    if let Some(n) = img.cni {
        elements.push(el(
            tags::CARDIAC_NUMBER_OF_IMAGES,
            VR::IS,
            s(&n.to_string()),
        ));
    }
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax("1.2.840.10008.1.2.1")
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.4")
        .media_storage_sop_instance_uid(img.sop_uid.as_str());
    InMemDicomObject::from_element_iter(elements)
        .with_meta(meta)
        .expect("with meta")
        .write_to_file(path)
        .expect("write dcm");
}

/// Writes `imgs` into `dir` in the read order given by a shuffle with `seed` (0: as listed):
/// files are named by their position in that order, which is the order a folder is read in.
pub fn write(dir: &Path, imgs: &[Img], seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("series dir");
    let order = shuffled(imgs.len(), seed);
    order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let path = dir.join(format!("{k:05}.dcm"));
            write_one(&imgs[i], &path);
            path
        })
        .collect()
}

/// A permutation of 0..n from a small linear congruential generator (seed 0: identity).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    if seed == 0 {
        return v;
    }
    let mut x = seed;
    for i in (1..n).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = ((x >> 33) as usize) % (i + 1);
        v.swap(i, j);
    }
    v
}
