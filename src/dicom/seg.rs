//! DICOM Segmentation (binary) out and back in. Written objects carry one segment per
//! structure with SNOMED CT codes, the algorithm's name and version, references to every
//! source image, per-frame plane position, and omit empty frames, so PACS and viewers can show
//! them over the source series. Reading maps frames back to (slice, phase) of a stack through
//! those source references; this is how corrected contours return for fine-tuning.

use std::collections::HashMap;
use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::attr::{self, Obj};
use super::error::DicomError;
use super::instance::{parse, read_capped, MAX_FRAMES};
use super::masks::{LabelMasks, Structure, STRUCTURES};
use super::stack::CineStack;
use super::writer::{
    at, code_seq, ds, new_uid, now_da_tm, save, seq, seq1, text, ul_multi, us, us_multi, Code,
};

/// The algorithm that produced a segmentation, as the model file names it.
#[derive(Debug, Clone)]
pub struct Algorithm {
    /// Model name, e.g. `cineseg-unet`.
    pub name: String,
    /// Model version, e.g. the weights file's version or hash.
    pub version: String,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegWritten {
    /// SOPInstanceUID of the SEG.
    pub sop_instance_uid: String,
    /// SeriesInstanceUID of the SEG.
    pub series_uid: String,
    /// Frames written (non-empty segment x image pairs).
    pub frames: usize,
}

const SOURCE_PURPOSE: Code = Code {
    value: "121322",
    scheme: "DCM",
    meaning: "Source image for image processing operation",
};
const DERIVATION: Code = Code {
    value: "113076",
    scheme: "DCM",
    meaning: "Segmentation",
};
const AI_FAMILY: Code = Code {
    value: "123110",
    scheme: "DCM",
    meaning: "Artificial Intelligence",
};

/// Patient and study attributes copied from the source so the SEG files into the same study.
const COPIED: [(dicom_core::Tag, VR); 11] = [
    (tags::SPECIFIC_CHARACTER_SET, VR::CS),
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_INSTANCE_UID, VR::UI),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
];

/// Write `masks` (aligned to `stack`) as a binary DICOM SEG at `path`.
pub fn write_seg(
    stack: &CineStack,
    masks: &LabelMasks,
    algorithm: &Algorithm,
    path: &Path,
) -> Result<SegWritten, DicomError> {
    let werr = |reason: String| DicomError::Write {
        path: path.to_path_buf(),
        reason,
    };
    if (masks.n_slices, masks.n_phases, masks.rows, masks.cols)
        != (
            stack.n_slices(),
            stack.n_phases(),
            stack.grid.rows,
            stack.grid.cols,
        )
    {
        return Err(werr("masks do not match the stack's shape".into()));
    }
    let first_source = stack
        .slices
        .iter()
        .flat_map(|s| s.frames.iter().flatten())
        .find_map(|f| f.source.as_ref())
        .ok_or_else(|| werr("the stack has no source images to reference".into()))?;
    let source_obj = parse(&read_capped(&first_source.path)?, &first_source.path)?;
    let source_root: &Obj = &source_obj;

    let structures: Vec<Structure> = STRUCTURES
        .iter()
        .copied()
        .filter(|s| masks.labelled.contains(&s.class))
        .collect();
    if structures.is_empty() {
        return Err(werr("no labelled structure to write".into()));
    }
    let (date, time) = now_da_tm();
    let sop_uid = new_uid();
    let series_uid = new_uid();
    let dim_uid = new_uid();
    let n_px = stack.grid.rows * stack.grid.cols;

    // Frames: for every source image and structure with at least one pixel.
    let mut frames: Vec<(usize, usize, usize)> = Vec::new(); // (segment index, slice, phase)
    for (si, st) in structures.iter().enumerate() {
        for (s, slice) in stack.slices.iter().enumerate() {
            for p in 0..stack.n_phases() {
                let has_source = slice
                    .frames
                    .get(p)
                    .and_then(|f| f.as_ref())
                    .is_some_and(|f| f.source.is_some());
                let any = masks.image(s, p).is_some_and(|m| m.contains(&st.class));
                if has_source && any {
                    frames.push((si, s, p));
                }
            }
        }
    }
    // A SEG needs at least one frame: with nothing found, write one empty frame.
    let empty_only = frames.is_empty();
    if empty_only {
        let (s, p) = (0..stack.n_slices())
            .flat_map(|s| (0..stack.n_phases()).map(move |p| (s, p)))
            .find(|&(s, p)| stack.frame(s, p).is_some_and(|f| f.source.is_some()))
            .ok_or_else(|| werr("no source image".into()))?;
        frames.push((0, s, p));
    }

    let mut bits = vec![0u8; (frames.len() * n_px).div_ceil(8).next_multiple_of(2)];
    let mut per_frame = Vec::with_capacity(frames.len());
    for (k, &(si, s, p)) in frames.iter().enumerate() {
        let st = structures
            .get(si)
            .ok_or_else(|| werr("segment index".into()))?;
        let mask = masks.image(s, p).ok_or_else(|| werr("mask index".into()))?;
        if !empty_only {
            for (i, &v) in mask.iter().enumerate() {
                if v == st.class {
                    let bit = k * n_px + i;
                    if let Some(b) = bits.get_mut(bit / 8) {
                        *b |= 1 << (bit % 8);
                    }
                }
            }
        }
        let slice = stack
            .slices
            .get(s)
            .ok_or_else(|| werr("slice index".into()))?;
        let src = stack
            .frame(s, p)
            .and_then(|f| f.source.as_ref())
            .ok_or_else(|| werr("source".into()))?;
        let mut source_item = vec![
            text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &src.sop_class_uid),
            text(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                &src.sop_instance_uid,
            ),
            code_seq(tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE, SOURCE_PURPOSE),
        ];
        if src.sop_class_uid == uids::ENHANCED_MR_IMAGE_STORAGE {
            source_item.push(text(
                tags::REFERENCED_FRAME_NUMBER,
                VR::IS,
                &(src.frame + 1).to_string(),
            ));
        }
        let segment_number = (si + 1) as u16;
        per_frame.push(InMemDicomObject::from_element_iter([
            seq1(
                tags::DERIVATION_IMAGE_SEQUENCE,
                vec![
                    seq1(tags::SOURCE_IMAGE_SEQUENCE, source_item),
                    code_seq(tags::DERIVATION_CODE_SEQUENCE, DERIVATION),
                ],
            ),
            seq1(
                tags::FRAME_CONTENT_SEQUENCE,
                vec![
                    ul_multi(
                        tags::DIMENSION_INDEX_VALUES,
                        &[u32::from(segment_number), (s + 1) as u32, (p + 1) as u32],
                    ),
                    ul_multi(tags::TEMPORAL_POSITION_INDEX, &[(p + 1) as u32]),
                ],
            ),
            seq1(
                tags::PLANE_POSITION_SEQUENCE,
                vec![ds(tags::IMAGE_POSITION_PATIENT, &slice.position)],
            ),
            seq1(
                tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                vec![us(tags::REFERENCED_SEGMENT_NUMBER, segment_number)],
            ),
        ]));
    }

    let segments: Vec<InMemDicomObject> = structures
        .iter()
        .enumerate()
        .map(|(i, st)| {
            InMemDicomObject::from_element_iter([
                us(tags::SEGMENT_NUMBER, (i + 1) as u16),
                text(tags::SEGMENT_LABEL, VR::LO, st.label),
                text(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC"),
                text(tags::SEGMENT_ALGORITHM_NAME, VR::LO, &algorithm.name),
                seq1(
                    tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
                    vec![
                        code_seq(tags::ALGORITHM_FAMILY_CODE_SEQUENCE, AI_FAMILY),
                        text(tags::ALGORITHM_NAME, VR::LO, &algorithm.name),
                        text(tags::ALGORITHM_VERSION, VR::LO, &algorithm.version),
                    ],
                ),
                code_seq(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE, st.category),
                code_seq(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, st.kind),
                us_multi(tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE, &st.cielab),
            ])
        })
        .collect();

    let mut referenced: Vec<InMemDicomObject> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in stack
        .slices
        .iter()
        .flat_map(|s| s.frames.iter().flatten())
        .filter_map(|f| f.source.as_ref())
    {
        if seen.insert(f.sop_instance_uid.clone()) {
            referenced.push(InMemDicomObject::from_element_iter([
                text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &f.sop_class_uid),
                text(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &f.sop_instance_uid,
                ),
            ]));
        }
    }

    let dim = |pointer, group, label: &str| {
        InMemDicomObject::from_element_iter([
            text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_uid),
            at(tags::DIMENSION_INDEX_POINTER, pointer),
            at(tags::FUNCTIONAL_GROUP_POINTER, group),
            text(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    let g = &stack.grid;
    let mut obj = InMemDicomObject::new_empty();
    for (tag, vr) in COPIED {
        let mut value = attr::string(source_root, tag).unwrap_or_default();
        // Anonymised exports write dates such as 00000000; type 2 allows empty, not invalid.
        if vr == VR::DA && !valid_date(&value) {
            value.clear();
        }
        obj.put(text(tag, vr, &value));
    }
    let elements = vec![
        text(tags::SOP_CLASS_UID, VR::UI, uids::SEGMENTATION_STORAGE),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
        text(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY"),
        text(tags::CONTENT_DATE, VR::DA, &date),
        text(tags::CONTENT_TIME, VR::TM, &time),
        text(tags::SERIES_DATE, VR::DA, &date),
        text(tags::SERIES_TIME, VR::TM, &time),
        text(tags::MODALITY, VR::CS, "SEG"),
        text(tags::MANUFACTURER, VR::LO, "cineseg"),
        text(tags::SERIES_DESCRIPTION, VR::LO, "cineseg segmentation"),
        seq(
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                seq(tags::REFERENCED_INSTANCE_SEQUENCE, referenced),
                text(
                    tags::SERIES_INSTANCE_UID,
                    VR::UI,
                    stack.ids.series_uid.as_deref().unwrap_or_default(),
                ),
            ])],
        ),
        text(tags::MANUFACTURER_MODEL_NAME, VR::LO, &algorithm.name),
        text(tags::DEVICE_SERIAL_NUMBER, VR::LO, "0"),
        text(
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            &format!("cineseg {}", env!("CARGO_PKG_VERSION")),
        ),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid),
        text(tags::SERIES_NUMBER, VR::IS, "9901"),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
        text(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            stack
                .ids
                .frame_of_reference_uid
                .as_deref()
                .unwrap_or_default(),
        ),
        text(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        seq1(
            tags::DIMENSION_ORGANIZATION_SEQUENCE,
            vec![text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_uid)],
        ),
        seq(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                dim(
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    "Segment",
                ),
                dim(
                    tags::IMAGE_POSITION_PATIENT,
                    tags::PLANE_POSITION_SEQUENCE,
                    "Slice",
                ),
                dim(
                    tags::TEMPORAL_POSITION_INDEX,
                    tags::FRAME_CONTENT_SEQUENCE,
                    "Phase",
                ),
            ],
        ),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.len().to_string()),
        us(tags::ROWS, g.rows as u16),
        us(tags::COLUMNS, g.cols as u16),
        us(tags::BITS_ALLOCATED, 1),
        us(tags::BITS_STORED, 1),
        us(tags::HIGH_BIT, 0),
        us(tags::PIXEL_REPRESENTATION, 0),
        text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        seq(tags::SEGMENT_SEQUENCE, segments),
        text(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        text(tags::CONTENT_LABEL, VR::CS, "CINESEG"),
        text(
            tags::CONTENT_DESCRIPTION,
            VR::LO,
            "LV, myocardium and RV segmentation",
        ),
        text(tags::CONTENT_CREATOR_NAME, VR::PN, ""),
        seq1(
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![
                seq1(
                    tags::PIXEL_MEASURES_SEQUENCE,
                    vec![
                        ds(tags::PIXEL_SPACING, &g.pixel_spacing),
                        ds(
                            tags::SLICE_THICKNESS,
                            &[stack.slice_thickness.unwrap_or(stack.slice_spacing)],
                        ),
                        ds(tags::SPACING_BETWEEN_SLICES, &[stack.slice_spacing]),
                    ],
                ),
                seq1(
                    tags::PLANE_ORIENTATION_SEQUENCE,
                    vec![ds(tags::IMAGE_ORIENTATION_PATIENT, &g.orientation)],
                ),
            ],
        ),
        seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(bits)),
    ];
    for e in elements {
        obj.put(e);
    }
    save(obj, uids::SEGMENTATION_STORAGE, &sop_uid, path)?;
    Ok(SegWritten {
        sop_instance_uid: sop_uid,
        series_uid,
        frames: if empty_only { 0 } else { frames.len() },
    })
}

/// A DICOM DA value: YYYYMMDD with a plausible month and day.
fn valid_date(s: &str) -> bool {
    let digits = s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit());
    let field =
        |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    digits && field(0..4) >= 1 && (1..=12).contains(&field(4..6)) && (1..=31).contains(&field(6..8))
}

/// Read a binary SEG back into masks aligned to `stack` (frames matched by their source SOP
/// instance, then by slice/phase dimension indices). Every source image of the stack counts as
/// annotated: a SEG omits empty frames, so absence means background.
pub fn read_seg(path: &Path, stack: &CineStack) -> Result<LabelMasks, DicomError> {
    let obj = parse(&read_capped(path)?, path)?;
    let root: &Obj = &obj;
    let invalid = |attribute: &'static str, reason: String| DicomError::Invalid {
        path: path.to_path_buf(),
        attribute,
        reason,
    };
    if attr::string(root, tags::SOP_CLASS_UID).as_deref() != Some(uids::SEGMENTATION_STORAGE) {
        return Err(invalid(
            "SOPClassUID",
            "not a Segmentation Storage object".into(),
        ));
    }
    if attr::string(root, tags::SEGMENTATION_TYPE).as_deref() != Some("BINARY") {
        return Err(DicomError::Unsupported {
            path: path.to_path_buf(),
            reason: "only BINARY segmentations are read".into(),
        });
    }
    let rows = attr::int(root, tags::ROWS).unwrap_or(-1);
    let cols = attr::int(root, tags::COLUMNS).unwrap_or(-1);
    if (rows, cols) != (stack.grid.rows as i64, stack.grid.cols as i64) {
        return Err(invalid(
            "Rows/Columns",
            format!(
                "{rows} x {cols}, stack is {} x {}",
                stack.grid.rows, stack.grid.cols
            ),
        ));
    }
    let n_frames = attr::int(root, tags::NUMBER_OF_FRAMES).unwrap_or(1);
    if !(1..=MAX_FRAMES as i64).contains(&n_frames) {
        return Err(invalid("NumberOfFrames", n_frames.to_string()));
    }
    let n_frames = n_frames as usize;
    let n_px = stack.grid.rows * stack.grid.cols;
    let bits = root
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.to_bytes().ok())
        .ok_or_else(|| invalid("PixelData", "absent".into()))?;
    if bits.len() < (n_frames * n_px).div_ceil(8) {
        return Err(invalid(
            "PixelData",
            format!(
                "{} bytes for {n_frames} frames of {n_px} pixels",
                bits.len()
            ),
        ));
    }
    // Segment number -> class, by SNOMED type code, then by label.
    let mut class_of: HashMap<i64, u8> = HashMap::new();
    for item in attr::items(root, tags::SEGMENT_SEQUENCE) {
        let number = attr::int(item, tags::SEGMENT_NUMBER).unwrap_or(0);
        let code = attr::first_item(item, tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE)
            .and_then(|c| attr::string(c, tags::CODE_VALUE));
        let label = attr::string(item, tags::SEGMENT_LABEL);
        let st = STRUCTURES
            .iter()
            .find(|s| code.as_deref() == Some(s.kind.value))
            .or_else(|| {
                STRUCTURES
                    .iter()
                    .find(|s| label.as_deref() == Some(s.label))
            });
        if let Some(st) = st {
            class_of.insert(number, st.class);
        }
    }
    let mut by_source: HashMap<(String, u32), (usize, usize)> = HashMap::new();
    for (s, slice) in stack.slices.iter().enumerate() {
        for (p, f) in slice.frames.iter().enumerate() {
            if let Some(src) = f.as_ref().and_then(|f| f.source.as_ref()) {
                by_source.insert((src.sop_instance_uid.clone(), src.frame), (s, p));
            }
        }
    }
    let mut labelled: Vec<u8> = class_of.values().copied().collect();
    labelled.sort_unstable();
    labelled.dedup();
    let mut masks = LabelMasks::empty(
        stack.n_slices(),
        stack.n_phases(),
        stack.grid.rows,
        stack.grid.cols,
        labelled,
    );
    for (s, slice) in stack.slices.iter().enumerate() {
        for (p, f) in slice.frames.iter().enumerate() {
            let has_source = f.as_ref().is_some_and(|f| f.source.is_some());
            if let (true, Some(a)) = (
                has_source,
                masks.annotated.get_mut(s * stack.n_phases() + p),
            ) {
                a.clone_from(&masks.labelled);
            }
        }
    }
    let per_frame = attr::items(root, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    for k in 0..n_frames {
        let Some(item) = per_frame.get(k) else { break };
        let segment = attr::first_item(item, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .and_then(|i| attr::int(i, tags::REFERENCED_SEGMENT_NUMBER));
        let Some(class) = segment.and_then(|n| class_of.get(&n).copied()) else {
            continue;
        };
        let Some((s, p)) = locate(item, &by_source, stack) else {
            continue;
        };
        let Some(mask) = masks.image_mut(s, p) else {
            continue;
        };
        for (i, m) in mask.iter_mut().enumerate() {
            let bit = k * n_px + i;
            if bits.get(bit / 8).is_some_and(|b| b >> (bit % 8) & 1 == 1) {
                *m = class;
            }
        }
    }
    Ok(masks)
}

/// (slice, phase) of one SEG frame.
fn locate(
    item: &Obj,
    by_source: &HashMap<(String, u32), (usize, usize)>,
    stack: &CineStack,
) -> Option<(usize, usize)> {
    let source = attr::first_item(item, tags::DERIVATION_IMAGE_SEQUENCE)
        .and_then(|d| attr::first_item(d, tags::SOURCE_IMAGE_SEQUENCE));
    if let Some(src) = source {
        let uid = attr::string(src, tags::REFERENCED_SOP_INSTANCE_UID)?;
        let frame =
            attr::int(src, tags::REFERENCED_FRAME_NUMBER).map_or(0, |f| (f.max(1) - 1) as u32);
        if let Some(hit) = by_source.get(&(uid, frame)) {
            return Some(*hit);
        }
    }
    let content = attr::first_item(item, tags::FRAME_CONTENT_SEQUENCE)?;
    let idx = attr::floats(content, tags::DIMENSION_INDEX_VALUES)?;
    let (s, p) = (*idx.get(1)? as usize, *idx.get(2)? as usize);
    (s >= 1 && p >= 1 && s <= stack.n_slices() && p <= stack.n_phases()).then(|| (s - 1, p - 1))
}
