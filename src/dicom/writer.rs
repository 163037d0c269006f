//! Small helpers shared by the SEG and secondary-capture writers: new UIDs, the current date
//! and time in DICOM form, element constructors, coded concepts, and saving with a file meta
//! group. dicom-rs has no IOD builders, so the writers assemble objects element by element.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::error::DicomError;

/// A coded concept (code value, scheme, meaning), e.g. SNOMED CT `87878005 SCT Left Ventricle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Code {
    /// CodeValue.
    pub value: &'static str,
    /// CodingSchemeDesignator (SCT, DCM...).
    pub scheme: &'static str,
    /// CodeMeaning.
    pub meaning: &'static str,
}

/// The series a written object belongs to: the SEGs of a result share one, the secondary
/// captures another.
#[derive(Debug, Clone)]
pub struct SeriesId {
    /// SeriesInstanceUID.
    pub uid: String,
    /// SeriesNumber.
    pub number: i64,
}

impl SeriesId {
    /// A new series numbered `number`.
    pub fn new(number: i64) -> SeriesId {
        SeriesId {
            uid: new_uid(),
            number,
        }
    }
}

/// A fresh UID under the `2.25` (UUID-derived) root, so no organisation root is needed.
pub(crate) fn new_uid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let hi = h.finish();
    let mut h2 = RandomState::new().build_hasher();
    h2.write_u64(hi);
    let value = ((hi as u128) << 64 | h2.finish() as u128) >> 1; // < 2^127 keeps it short
    format!("2.25.{value}")
}

/// The moment an object is written, in the box's local time with its offset from UTC, as
/// DICOM wants it: viewers show DA/TM as written, so a UTC time without an offset reads an hour
/// or two wrong in a European hospital.
#[derive(Debug, Clone)]
pub(crate) struct DicomNow {
    /// DA: YYYYMMDD, local.
    pub date: String,
    /// TM: HHMMSS, local.
    pub time: String,
    /// TimezoneOffsetFromUTC (0008,0201): `+HHMM` or `-HHMM`.
    pub offset: String,
}

/// The current local date, time and UTC offset.
pub(crate) fn now_local() -> DicomNow {
    let now = chrono::Local::now();
    let secs = now.offset().local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let m = secs.unsigned_abs() / 60;
    DicomNow {
        date: now.format("%Y%m%d").to_string(),
        time: now.format("%H%M%S").to_string(),
        offset: format!("{sign}{:02}{:02}", m / 60, m % 60),
    }
}

/// A string-valued element.
pub(crate) fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// A multi-valued decimal string.
pub(crate) fn ds(tag: Tag, values: &[f64]) -> DataElement<InMemDicomObject> {
    let parts: Vec<String> = values.iter().map(|v| format_ds(*v)).collect();
    text(tag, VR::DS, &parts.join("\\"))
}

/// A DS value within the 16-character limit.
fn format_ds(v: f64) -> String {
    for precision in (0..=10).rev() {
        let s = format!("{v:.precision$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.len() <= 16 {
            return if s == "-0" { "0".into() } else { s };
        }
    }
    format!("{v:.3e}")
}

/// An unsigned short.
pub(crate) fn us(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// An unsigned-short list.
pub(crate) fn us_multi(tag: Tag, values: &[u16]) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        VR::US,
        PrimitiveValue::U16(values.iter().copied().collect()),
    )
}

/// An unsigned long list.
pub(crate) fn ul_multi(tag: Tag, values: &[u32]) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        VR::UL,
        PrimitiveValue::U32(values.iter().copied().collect()),
    )
}

/// An attribute-tag list (AT), used by dimension index pointers.
pub(crate) fn at(tag: Tag, value: Tag) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        VR::AT,
        PrimitiveValue::Tags([value].into_iter().collect()),
    )
}

/// A sequence of items.
pub(crate) fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// A sequence with a single item built from elements.
pub(crate) fn seq1(
    tag: Tag,
    elements: Vec<DataElement<InMemDicomObject>>,
) -> DataElement<InMemDicomObject> {
    seq(tag, vec![InMemDicomObject::from_element_iter(elements)])
}

/// ReferencedSOPClassUID and ReferencedSOPInstanceUID: the pair every reference to an
/// object (source image, SEG, evidence) starts with.
pub(crate) fn sop_ref(class: &str, instance: &str) -> Vec<DataElement<InMemDicomObject>> {
    vec![
        text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class),
        text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, instance),
    ]
}

/// A SourceImageSequence item for a derived object: the source image, the purpose of the
/// reference, its frame within an Enhanced MR file, and `extra` elements.
pub(crate) fn source_image_item(
    src: &super::stack::SourceRef,
    extra: Vec<DataElement<InMemDicomObject>>,
) -> InMemDicomObject {
    let mut item = sop_ref(&src.sop_class_uid, &src.sop_instance_uid);
    item.push(code_seq(
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        super::seg::SOURCE_PURPOSE,
    ));
    if src.sop_class_uid == uids::ENHANCED_MR_IMAGE_STORAGE {
        item.push(text(
            tags::REFERENCED_FRAME_NUMBER,
            VR::IS,
            &(src.frame + 1).to_string(),
        ));
    }
    item.extend(extra);
    InMemDicomObject::from_element_iter(item)
}

/// A code sequence with one coded concept.
pub(crate) fn code_seq(tag: Tag, code: Code) -> DataElement<InMemDicomObject> {
    seq1(
        tag,
        vec![
            text(tags::CODE_VALUE, VR::SH, code.value),
            text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, code.scheme),
            text(tags::CODE_MEANING, VR::LO, code.meaning),
        ],
    )
}

/// Write `obj` as a Part 10 file in explicit VR little endian.
pub(crate) fn save(
    obj: InMemDicomObject,
    sop_class: &str,
    sop_instance: &str,
    path: &Path,
) -> Result<(), DicomError> {
    let werr = |reason: String| DicomError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .build()
        .map_err(|e| werr(super::instance::error_chain(&e)))?;
    let file = obj.with_exact_meta(meta);
    file.write_to_file(path)
        .map_err(|e| werr(super::instance::error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_unique_valid_and_short() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        for u in [a, b] {
            assert!(u.len() <= 64 && u.starts_with("2.25."), "{u}");
            assert!(u[5..].chars().all(|c| c.is_ascii_digit()) && !u[5..].starts_with('0'));
        }
    }

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        for v in [
            0.0,
            -0.0,
            1.3671875,
            -162.67312345678,
            1e-9,
            123456.123456789,
        ] {
            let s = format_ds(v);
            assert!(s.len() <= 16, "{s}");
            assert!(
                (s.parse::<f64>().unwrap() - v).abs() < 1e-6 * v.abs().max(1.0),
                "{v} -> {s}"
            );
        }
    }

    #[test]
    fn date_is_plausible() {
        let n = now_local();
        assert_eq!((n.date.len(), n.time.len(), n.offset.len()), (8, 6, 5));
        assert!(n.date.as_str() >= "20240101");
        assert!(n.offset.starts_with('+') || n.offset.starts_with('-'));
    }
}
