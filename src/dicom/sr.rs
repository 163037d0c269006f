//! The measurement report as a DICOM Structured Report, TID 1500 (Measurement Report) in a
//! Comprehensive 3D SR: the EF, volumes and mass reach PACS and reporting systems as coded,
//! machine-readable numbers in the patient's study, next to the SEG they were measured on.
//!
//! Layout: one TID 1411 volumetric group per structure (LV blood pool, LV myocardium, RV blood
//! pool), each referencing its segment of the cine SEG and the source series, holding that
//! structure's measurements (indexed values carry an `Index = BSA` modifier, or the dedicated
//! stroke/cardiac index concept); one TID 1501 group "Global" with heart rate, BSA (Mosteller)
//! and the trigger times of end-diastole and end-systole. Codes: [`super::sr_codes`].

use std::path::Path;

use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::error::DicomError;
use super::masks::{LV, MYO, RV};
use super::seg::SegWritten;
use super::sr_codes as codes;
use super::writer::{ds, new_uid, now_local, save, seq, seq1, sop_ref, text, us, Code};
use crate::analysis::clinical::{Measurement, Quantity};
use crate::analysis::series::SeriesAnalysis;
use crate::registry::ModelIdentity;

type Item = InMemDicomObject;

/// What the SR reports on.
pub struct SrInput<'a> {
    /// The measured series.
    pub analysis: &'a SeriesAnalysis,
    /// The model that segmented it.
    pub model: &'a ModelIdentity,
    /// The SEGs written for it; the first is the cine SEG the groups reference.
    pub segs: Vec<&'a SegWritten>,
}

fn code_item(c: Code) -> Item {
    InMemDicomObject::from_element_iter([
        text(tags::CODE_VALUE, VR::SH, c.value),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, c.scheme),
        text(tags::CODE_MEANING, VR::LO, c.meaning),
    ])
}

fn named(rel: &str, value_type: &str, name: Code, mut rest: Vec<DataElement<Item>>) -> Item {
    rest.push(text(tags::RELATIONSHIP_TYPE, VR::CS, rel));
    rest.push(text(tags::VALUE_TYPE, VR::CS, value_type));
    rest.push(seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code_item(name)]));
    InMemDicomObject::from_element_iter(rest)
}

fn text_item(rel: &str, name: Code, value: &str) -> Item {
    named(
        rel,
        "TEXT",
        name,
        vec![text(tags::TEXT_VALUE, VR::UT, value)],
    )
}

fn code_value(rel: &str, name: Code, value: Code) -> Item {
    named(
        rel,
        "CODE",
        name,
        vec![seq(tags::CONCEPT_CODE_SEQUENCE, vec![code_item(value)])],
    )
}

fn uid_item(rel: &str, name: Code, uid: &str) -> Item {
    named(rel, "UIDREF", name, vec![text(tags::UID, VR::UI, uid)])
}

fn num_item(name: Code, value: f64, unit: Code, children: Vec<Item>) -> Item {
    let mv = InMemDicomObject::from_element_iter([
        seq(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![code_item(unit)]),
        ds(tags::NUMERIC_VALUE, &[round_for_ds(value)]),
    ]);
    let mut rest = vec![seq(tags::MEASURED_VALUE_SEQUENCE, vec![mv])];
    if !children.is_empty() {
        rest.push(seq(tags::CONTENT_SEQUENCE, children));
    }
    named("CONTAINS", "NUM", name, rest)
}

/// Two decimals more than the report prints: the SR must agree with report.json to the
/// precision anyone reads, and DS allows 16 characters.
fn round_for_ds(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn container(rel: Option<&str>, name: Code, template: Option<&str>, children: Vec<Item>) -> Item {
    let mut rest = vec![
        text(tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS"),
        seq(tags::CONTENT_SEQUENCE, children),
    ];
    if let Some(t) = template {
        rest.push(seq1(
            tags::CONTENT_TEMPLATE_SEQUENCE,
            vec![
                text(tags::MAPPING_RESOURCE, VR::CS, "DCMR"),
                text(tags::TEMPLATE_IDENTIFIER, VR::CS, t),
            ],
        ));
    }
    match rel {
        Some(r) => named(r, "CONTAINER", name, rest),
        None => {
            rest.push(text(tags::VALUE_TYPE, VR::CS, "CONTAINER"));
            rest.push(seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code_item(name)]));
            InMemDicomObject::from_element_iter(rest)
        }
    }
}

fn algorithm(model: &ModelIdentity) -> Vec<Item> {
    vec![
        text_item(
            "HAS CONCEPT MOD",
            codes::ALGORITHM_NAME,
            crate::dicom::seg::ALGORITHM_NAME,
        ),
        text_item(
            "HAS CONCEPT MOD",
            codes::ALGORITHM_VERSION,
            &model.algorithm_version(),
        ),
    ]
}

/// The NUM items of one measurement: the absolute value and, where known, the indexed one.
fn measurement_items(m: &Measurement) -> Vec<Item> {
    let q = m.quantity;
    let mut method = Vec::new();
    if matches!(q, Quantity::Bsa) {
        method.push(code_value(
            "HAS CONCEPT MOD",
            codes::MEASUREMENT_METHOD,
            codes::BSA_MOSTELLER,
        ));
    } else if m.unit == "ml" {
        method.push(code_value(
            "HAS CONCEPT MOD",
            codes::MEASUREMENT_METHOD,
            codes::SUM_OF_VOXELS,
        ));
    }
    let mut out = vec![num_item(
        codes::concept(q),
        m.value,
        codes::unit(m.unit),
        method,
    )];
    if let (Some(v), Some(u)) = (m.indexed, m.indexed_unit) {
        let (name, modifier) = match codes::indexed_concept(q) {
            Some(c) => (c, Vec::new()),
            None => (
                codes::concept(q),
                vec![code_value("HAS CONCEPT MOD", codes::INDEX, codes::BSA)],
            ),
        };
        out.push(num_item(name, v, codes::unit(u), modifier));
    }
    out
}

/// Which structure's group a quantity belongs in; `None` for the global group.
fn structure_of(q: Quantity) -> Option<u8> {
    match q {
        Quantity::LvEdv
        | Quantity::LvEsv
        | Quantity::LvSv
        | Quantity::LvEf
        | Quantity::CardiacOutput => Some(LV),
        Quantity::LvMass => Some(MYO),
        Quantity::RvEdv | Quantity::RvEsv | Quantity::RvSv | Quantity::RvEf => Some(RV),
        Quantity::HeartRate | Quantity::Bsa => None,
    }
}

fn structure_group(input: &SrInput<'_>, class: u8, seg: &SegWritten) -> Option<Item> {
    let st = super::masks::STRUCTURES.iter().find(|s| s.class == class)?;
    let segment_number = seg.segments.iter().find(|(c, _)| *c == class)?.1;
    let a = input.analysis;
    let mut items = vec![
        text_item("HAS OBS CONTEXT", codes::TRACKING_IDENTIFIER, st.label),
        uid_item("HAS OBS CONTEXT", codes::TRACKING_UID, &new_uid()),
        code_value(
            "CONTAINS",
            codes::FINDING_CATEGORY,
            codes::ANATOMICAL_STRUCTURE,
        ),
        code_value("CONTAINS", codes::FINDING, st.kind),
        code_value("HAS CONCEPT MOD", codes::FINDING_SITE, st.kind),
    ];
    items.extend(algorithm(input.model));
    let before = items.len();
    for m in a
        .measurements
        .iter()
        .filter(|m| structure_of(m.quantity) == Some(class))
    {
        items.extend(measurement_items(m));
    }
    if items.len() == before {
        return None;
    }
    items.push(named(
        "CONTAINS",
        "IMAGE",
        codes::REFERENCED_SEGMENT,
        vec![seq1(tags::REFERENCED_SOP_SEQUENCE, {
            let mut r = sop_ref(uids::SEGMENTATION_STORAGE, &seg.sop_instance_uid);
            r.push(us(tags::REFERENCED_SEGMENT_NUMBER, segment_number));
            r
        })],
    ));
    items.push(uid_item(
        "CONTAINS",
        codes::SOURCE_SERIES_FOR_SEGMENTATION,
        a.stack.ids.series_uid.as_deref().unwrap_or_default(),
    ));
    Some(container(
        Some("CONTAINS"),
        codes::MEASUREMENT_GROUP,
        Some("1411"),
        items,
    ))
}

fn global_group(input: &SrInput<'_>) -> Option<Item> {
    let a = input.analysis;
    let mut items = vec![
        text_item("HAS OBS CONTEXT", codes::TRACKING_IDENTIFIER, "Global"),
        uid_item("HAS OBS CONTEXT", codes::TRACKING_UID, &new_uid()),
    ];
    items.extend(algorithm(input.model));
    let before = items.len();
    for m in a
        .measurements
        .iter()
        .filter(|m| structure_of(m.quantity).is_none())
    {
        items.extend(measurement_items(m));
    }
    for (code, t) in [
        (codes::END_DIASTOLE, a.key_times_ms.ed_ms),
        (codes::END_SYSTOLE, a.key_times_ms.es_ms),
    ] {
        if let Some(ms) = t {
            items.push(num_item(code, ms, codes::unit("ms"), Vec::new()));
        }
    }
    (items.len() > before).then(|| {
        container(
            Some("CONTAINS"),
            codes::MEASUREMENT_GROUP,
            Some("1501"),
            items,
        )
    })
}

/// CurrentRequestedProcedureEvidenceSequence: the source images and the SEGs, by series.
fn evidence(input: &SrInput<'_>) -> DataElement<Item> {
    let a = input.analysis;
    let mut sources = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in a
        .stack
        .slices
        .iter()
        .flat_map(|s| s.frames.iter().flatten())
        .filter_map(|f| f.source.as_ref())
    {
        if seen.insert(f.sop_instance_uid.clone()) {
            sources.push(InMemDicomObject::from_element_iter(sop_ref(
                &f.sop_class_uid,
                &f.sop_instance_uid,
            )));
        }
    }
    let mut series = vec![InMemDicomObject::from_element_iter([
        seq(tags::REFERENCED_SOP_SEQUENCE, sources),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            a.stack.ids.series_uid.as_deref().unwrap_or_default(),
        ),
    ])];
    for s in &input.segs {
        series.push(InMemDicomObject::from_element_iter([
            seq1(
                tags::REFERENCED_SOP_SEQUENCE,
                sop_ref(uids::SEGMENTATION_STORAGE, &s.sop_instance_uid),
            ),
            text(tags::SERIES_INSTANCE_UID, VR::UI, &s.series_uid),
        ]));
    }
    seq1(
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![
            seq(tags::REFERENCED_SERIES_SEQUENCE, series),
            text(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                a.stack.ids.study_uid.as_deref().unwrap_or_default(),
            ),
        ],
    )
}

/// A UID that stays the same for this box (its host name), as TID 1004 wants for the device.
fn device_uid() -> String {
    static UID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    UID.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let d = Sha256::digest(format!("cineseg device {}", host.trim()).as_bytes());
        let mut v: u128 = 0;
        for b in &d[..16] {
            v = v << 8 | u128::from(*b);
        }
        format!("2.25.{}", v >> 1)
    })
    .clone()
}

/// Writes the SR at `path`; returns its SOPInstanceUID.
pub fn write_sr(input: &SrInput<'_>, path: &Path) -> Result<String, DicomError> {
    let werr = |reason: &str| DicomError::Write {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    let a = input.analysis;
    let cine = input
        .segs
        .first()
        .ok_or_else(|| werr("no SEG to reference"))?;
    let mut groups: Vec<Item> = [LV, MYO, RV]
        .iter()
        .filter_map(|&c| structure_group(input, c, cine))
        .collect();
    groups.extend(global_group(input));
    if groups.is_empty() {
        return Err(werr("no measurements to report"));
    }
    let root_children = vec![
        code_value("HAS CONCEPT MOD", codes::LANGUAGE, codes::ENGLISH),
        code_value("HAS OBS CONTEXT", codes::OBSERVER_TYPE, codes::DEVICE),
        uid_item("HAS OBS CONTEXT", codes::DEVICE_OBSERVER_UID, &device_uid()),
        text_item("HAS OBS CONTEXT", codes::DEVICE_OBSERVER_NAME, "cineseg"),
        text_item(
            "HAS OBS CONTEXT",
            codes::DEVICE_OBSERVER_MANUFACTURER,
            "cineseg",
        ),
        text_item(
            "HAS OBS CONTEXT",
            codes::DEVICE_OBSERVER_MODEL_NAME,
            crate::dicom::seg::ALGORITHM_NAME,
        ),
        code_value(
            "HAS CONCEPT MOD",
            codes::PROCEDURE_REPORTED,
            codes::CARDIAC_MRI,
        ),
        container(Some("CONTAINS"), codes::IMAGING_MEASUREMENTS, None, groups),
    ];
    let mut obj = container(
        None,
        codes::IMAGING_MEASUREMENT_REPORT,
        Some("1500"),
        root_children,
    );
    for (tag, vr, value) in &a.context.identity {
        obj.put(text(*tag, *vr, value));
    }
    let now = now_local();
    let sop_uid = new_uid();
    let series_number = a.stack.ids.series_number.unwrap_or(0) + 7000;
    for e in [
        text(tags::SOP_CLASS_UID, VR::UI, codes::COMPREHENSIVE_3D_SR),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
        text(tags::INSTANCE_CREATION_DATE, VR::DA, &now.date),
        text(tags::INSTANCE_CREATION_TIME, VR::TM, &now.time),
        text(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, &now.offset),
        text(tags::CONTENT_DATE, VR::DA, &now.date),
        text(tags::CONTENT_TIME, VR::TM, &now.time),
        text(tags::MODALITY, VR::CS, "SR"),
        text(tags::MANUFACTURER, VR::LO, "cineseg"),
        text(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            "cineseg cardiac function (TID 1500)",
        ),
        seq(
            tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
            Vec::new(),
        ),
        text(
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            &format!("cineseg {}", env!("CARGO_PKG_VERSION")),
        ),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &new_uid()),
        text(tags::SERIES_NUMBER, VR::IS, &series_number.to_string()),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
        text(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"),
        text(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"),
        text(tags::PRELIMINARY_FLAG, VR::CS, "PRELIMINARY"),
        seq(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, Vec::new()),
        evidence(input),
    ] {
        obj.put(e);
    }
    save(obj, codes::COMPREHENSIVE_3D_SR, &sop_uid, path)?;
    Ok(sop_uid)
}
