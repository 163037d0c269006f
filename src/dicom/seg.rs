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
use super::patient::StudyContext;
use super::stack::CineStack;
use super::writer::{
    at, code_seq, ds, new_uid, now_local, save, seq, seq1, sop_ref, source_image_item, text,
    ul_multi, us, us_multi, Code, SeriesId,
};
use crate::registry::ModelIdentity;

/// AlgorithmName of everything cineseg derives.
pub const ALGORITHM_NAME: &str = "cineseg-unet";

/// The algorithm that produced a segmentation: its name, and a version that names the model's
/// content hash, so results made with swapped weights can be traced.
#[derive(Debug, Clone)]
pub struct Algorithm {
    /// AlgorithmName.
    pub name: String,
    /// AlgorithmVersion (see [`ModelIdentity::algorithm_version`]).
    pub version: String,
}

impl Algorithm {
    /// The algorithm of results made with `model`.
    pub fn of(model: &ModelIdentity) -> Algorithm {
        Algorithm {
            name: ALGORITHM_NAME.into(),
            version: model.algorithm_version(),
        }
    }
}

/// Which phases a SEG holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegScope {
    /// Every phase (a cine SEG; dimensions segment, slice, phase).
    Cine,
    /// One phase as a 3D SEG (dimensions segment, slice), named e.g. "end-diastole": the object
    /// viewers and converters (dcmqi, highdicom's volumes) handle as a volume.
    Phase(usize, &'static str),
}

impl SegScope {
    fn includes(self, p: usize) -> bool {
        match self {
            SegScope::Cine => true,
            SegScope::Phase(q, _) => p == q,
        }
    }
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
    /// (cineseg class, SegmentNumber) of every segment, for references from the SR.
    pub segments: Vec<(u8, u16)>,
}

/// PurposeOfReference of a source image in derived objects (SEG, secondary captures).
pub(crate) const SOURCE_PURPOSE: Code = Code {
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

/// Write `masks` (aligned to `stack`) as a binary DICOM SEG at `path`.
pub fn write_seg(
    stack: &CineStack,
    masks: &LabelMasks,
    algorithm: &Algorithm,
    scope: SegScope,
    context: &StudyContext,
    series: &SeriesId,
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
    let structures: Vec<Structure> = STRUCTURES
        .iter()
        .copied()
        .filter(|s| masks.labelled.contains(&s.class))
        .collect();
    if structures.is_empty() {
        return Err(werr("no labelled structure to write".into()));
    }
    let now = now_local();
    let sop_uid = new_uid();
    let dim_uid = new_uid();
    let n_px = stack.grid.rows * stack.grid.cols;

    // Frames: for every source image and structure with at least one pixel.
    let mut frames: Vec<(usize, usize, usize)> = Vec::new(); // (segment index, slice, phase)
    for (si, st) in structures.iter().enumerate() {
        for (s, slice) in stack.slices.iter().enumerate() {
            for p in (0..stack.n_phases()).filter(|&p| scope.includes(p)) {
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
            .filter(|&(_, p)| scope.includes(p))
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
        // The SEG shares the source's pixel grid: viewers may overlay it without resampling.
        let source_item = source_image_item(
            src,
            vec![text(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES")],
        );
        let segment_number = (si + 1) as u16;
        per_frame.push(InMemDicomObject::from_element_iter([
            seq1(
                tags::DERIVATION_IMAGE_SEQUENCE,
                vec![
                    seq(tags::SOURCE_IMAGE_SEQUENCE, vec![source_item]),
                    code_seq(tags::DERIVATION_CODE_SEQUENCE, DERIVATION),
                ],
            ),
            seq1(
                tags::FRAME_CONTENT_SEQUENCE,
                match scope {
                    SegScope::Cine => vec![
                        ul_multi(
                            tags::DIMENSION_INDEX_VALUES,
                            &[u32::from(segment_number), (s + 1) as u32, (p + 1) as u32],
                        ),
                        ul_multi(tags::TEMPORAL_POSITION_INDEX, &[(p + 1) as u32]),
                    ],
                    SegScope::Phase(..) => vec![ul_multi(
                        tags::DIMENSION_INDEX_VALUES,
                        &[u32::from(segment_number), (s + 1) as u32],
                    )],
                },
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
            referenced.push(InMemDicomObject::from_element_iter(sop_ref(
                &f.sop_class_uid,
                &f.sop_instance_uid,
            )));
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
    // Anonymised exports write dates such as 00000000: StudyContext empties those (type 2
    // allows empty, not invalid).
    for (tag, vr, value) in &context.identity {
        obj.put(text(*tag, *vr, value));
    }
    let mut dims = vec![
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
    ];
    let (description, instance) = match scope {
        SegScope::Cine => {
            dims.push(dim(
                tags::TEMPORAL_POSITION_INDEX,
                tags::FRAME_CONTENT_SEQUENCE,
                "Phase",
            ));
            ("cineseg segmentation, all phases".to_string(), 1)
        }
        SegScope::Phase(p, name) => (
            format!("cineseg segmentation, {name} (phase {})", p + 1),
            if name == "end-systole" { 3 } else { 2 },
        ),
    };
    let elements = vec![
        text(tags::SOP_CLASS_UID, VR::UI, uids::SEGMENTATION_STORAGE),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
        text(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY"),
        text(tags::CONTENT_DATE, VR::DA, &now.date),
        text(tags::CONTENT_TIME, VR::TM, &now.time),
        text(tags::SERIES_DATE, VR::DA, &now.date),
        text(tags::SERIES_TIME, VR::TM, &now.time),
        text(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, &now.offset),
        text(tags::MODALITY, VR::CS, "SEG"),
        text(tags::MANUFACTURER, VR::LO, "cineseg"),
        text(tags::SERIES_DESCRIPTION, VR::LO, "cineseg segmentation"),
        text(tags::CONTENT_DESCRIPTION, VR::LO, &description),
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
        text(tags::SERIES_INSTANCE_UID, VR::UI, &series.uid),
        text(tags::SERIES_NUMBER, VR::IS, &series.number.to_string()),
        text(tags::INSTANCE_NUMBER, VR::IS, &instance.to_string()),
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
        seq(tags::DIMENSION_INDEX_SEQUENCE, dims),
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
        series_uid: series.uid.clone(),
        frames: if empty_only { 0 } else { frames.len() },
        segments: structures
            .iter()
            .enumerate()
            .map(|(i, st)| (st.class, (i + 1) as u16))
            .collect(),
    })
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
