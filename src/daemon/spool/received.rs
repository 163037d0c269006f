//! What the receiver checks in a data set before it acknowledges it. A success status tells
//! the scanner it may forget the image, so everything that can be known without decoding
//! pixels is checked here, while the scanner can still be told: the bytes parse (bounded, see
//! `dicom::instance::parse`), the pixel data is as long as the header says, the data set is
//! the one the C-STORE command announced (SOP class and instance), and it is something this
//! service takes (MR images; segmentations only when the overnight hook wants them).

use super::super::net::dimse::status;
use super::super::net::syntax::{ENHANCED_MR_IMAGE, MR_IMAGE, SEGMENTATION};
use super::super::DaemonError;
use crate::dicom::instance::{parse_checked, read_capped};
use crate::text::printable;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use std::path::Path;

/// What the spool keeps from a received data set's header.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub series: String,
    /// ImagePositionPatient rounded to 0.01 mm, as a key.
    pub slice: Option<String>,
    pub images_in_acquisition: Option<u64>,
    pub cardiac_images: Option<u64>,
    pub frames: u64,
}

/// The C-STORE command a data set arrived with.
pub(super) struct Announced<'a> {
    pub sop_instance: &'a str,
    pub sop_class: &'a str,
    /// Whether segmentations are taken (corrected contours for the overnight hook).
    pub accept_segmentations: bool,
}

/// Reads and checks the received file at `path` against the command; a refusal carries the
/// DICOM status to answer with.
pub(super) fn check(path: &Path, cmd: &Announced<'_>) -> Result<Received, DaemonError> {
    let refuse = |status: u16, reason: String| DaemonError::Rejected {
        sop: printable(cmd.sop_instance).into_owned(),
        status,
        reason,
    };
    let bytes = read_capped(path).map_err(|e| refuse(status::CANNOT_UNDERSTAND, e.to_string()))?;
    let obj = parse_checked(&bytes, path).map_err(|e| {
        refuse(
            status::CANNOT_UNDERSTAND,
            format!(
                "not a usable DICOM data set: {}",
                strip_path(&e.to_string(), path)
            ),
        )
    })?;
    let text = |t| text(&obj, t);
    let class = text(tags::SOP_CLASS_UID).unwrap_or_default();
    let announced_class = cmd.sop_class.trim_end_matches(['\0', ' ']);
    if class != announced_class {
        return Err(refuse(
            status::DATA_SET_MISMATCH,
            format!(
                "data set SOPClassUID {} differs from the command's {}",
                printable(&class),
                printable(announced_class)
            ),
        ));
    }
    let sop = text(tags::SOP_INSTANCE_UID).unwrap_or_default();
    let announced_sop = cmd.sop_instance.trim_end_matches(['\0', ' ']);
    if sop != announced_sop {
        return Err(refuse(
            status::DATA_SET_MISMATCH,
            format!(
                "data set SOPInstanceUID {} differs from the command's",
                printable(&sop)
            ),
        ));
    }
    check_kind(&obj, &class, cmd.accept_segmentations).map_err(|(s, r)| refuse(s, r))?;
    let series = text(tags::SERIES_INSTANCE_UID)
        .ok_or_else(|| refuse(status::DATA_SET_MISMATCH, "no SeriesInstanceUID".into()))?;
    let int = |t| {
        obj.element(t)
            .ok()
            .and_then(|e| e.to_int::<i64>().ok())
            .and_then(|v| u64::try_from(v).ok())
    };
    let slice = obj
        .element(tags::IMAGE_POSITION_PATIENT)
        .ok()
        .and_then(|e| e.to_multi_float64().ok())
        .filter(|v| v.len() == 3 && v.iter().all(|x| x.is_finite()))
        .map(|v| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join("\\")
        });
    Ok(Received {
        series,
        slice,
        images_in_acquisition: int(tags::IMAGES_IN_ACQUISITION),
        cardiac_images: int(tags::CARDIAC_NUMBER_OF_IMAGES),
        frames: int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
    })
}

/// Only what the service processes: MR images (Modality MR, with pixel data), and
/// segmentations when the overnight hook takes them.
fn check_kind(
    obj: &DefaultDicomObject,
    class: &str,
    accept_segmentations: bool,
) -> Result<(), (u16, String)> {
    let modality = text(obj, tags::MODALITY).unwrap_or_default();
    match class {
        MR_IMAGE | ENHANCED_MR_IMAGE => {
            if modality != "MR" {
                return Err((
                    status::DATA_SET_MISMATCH,
                    format!(
                        "an MR image with Modality {}",
                        if modality.is_empty() {
                            "missing".into()
                        } else {
                            printable(&modality).into_owned()
                        }
                    ),
                ));
            }
            if obj.get(tags::PIXEL_DATA).is_none() {
                return Err((
                    status::DATA_SET_MISMATCH,
                    "an MR image without PixelData".into(),
                ));
            }
            Ok(())
        }
        SEGMENTATION if accept_segmentations => Ok(()),
        SEGMENTATION => Err((
            status::SOP_CLASS_NOT_SUPPORTED,
            "segmentations are taken only when overnight fine-tuning is enabled".into(),
        )),
        other => Err((
            status::SOP_CLASS_NOT_SUPPORTED,
            format!(
                "SOP class {} is not processed here (MR images only)",
                printable(other)
            ),
        )),
    }
}

fn text(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .filter(|s| !s.is_empty())
}

/// A reader error without the spool's generated file name in front: the sender and the log
/// want the defect, and the log line names the instance already.
fn strip_path(msg: &str, path: &Path) -> String {
    let p = format!("{}: ", path.display());
    msg.strip_prefix(&p).unwrap_or(msg).to_string()
}
