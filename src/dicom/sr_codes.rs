//! Coded concepts of the measurement SR, each from DICOM PS3.16 (DCM), LOINC (LN), SNOMED CT
//! (SCT) or UCUM, with the context group it is listed in. `docs/sr-codes.md` is the same table
//! for people; a test keeps the two in step.

use super::writer::Code;
use crate::analysis::clinical::Quantity;

const fn c(value: &'static str, scheme: &'static str, meaning: &'static str) -> Code {
    Code {
        value,
        scheme,
        meaning,
    }
}

/// TID 1500 document title (CID 7021).
pub const IMAGING_MEASUREMENT_REPORT: Code = c("126000", "DCM", "Imaging Measurement Report");
/// Language of the content (TID 1204).
pub const LANGUAGE: Code = c("121049", "DCM", "Language of Content Item and Descendants");
/// English (RFC 5646).
pub const ENGLISH: Code = c("en-US", "RFC5646", "English (United States)");
/// Observer type (TID 1002).
pub const OBSERVER_TYPE: Code = c("121005", "DCM", "Observer Type");
/// A device observer (CID 270).
pub const DEVICE: Code = c("121007", "DCM", "Device");
/// TID 1004 device observer identification.
pub const DEVICE_OBSERVER_UID: Code = c("121012", "DCM", "Device Observer UID");
/// TID 1004.
pub const DEVICE_OBSERVER_NAME: Code = c("121013", "DCM", "Device Observer Name");
/// TID 1004.
pub const DEVICE_OBSERVER_MANUFACTURER: Code = c("121014", "DCM", "Device Observer Manufacturer");
/// TID 1004.
pub const DEVICE_OBSERVER_MODEL_NAME: Code = c("121015", "DCM", "Device Observer Model Name");
/// Procedure reported (TID 1500 row 4).
pub const PROCEDURE_REPORTED: Code = c("121058", "DCM", "Procedure reported");
/// Cardiac MRI (CID 3820, SNOMED CT "Magnetic resonance imaging of heart").
pub const CARDIAC_MRI: Code = c("241620005", "SCT", "Cardiac MRI");
/// Imaging Measurements container (TID 1500 row 6).
pub const IMAGING_MEASUREMENTS: Code = c("126010", "DCM", "Imaging Measurements");
/// Measurement Group container (TID 1411, TID 1501).
pub const MEASUREMENT_GROUP: Code = c("125007", "DCM", "Measurement Group");
/// Tracking Identifier (TID 1411 row 2).
pub const TRACKING_IDENTIFIER: Code = c("112039", "DCM", "Tracking Identifier");
/// Tracking Unique Identifier (TID 1411 row 3).
pub const TRACKING_UID: Code = c("112040", "DCM", "Tracking Unique Identifier");
/// Finding category (TID 1411).
pub const FINDING_CATEGORY: Code = c("276214006", "SCT", "Finding category");
/// Anatomical Structure (CID 7150).
pub const ANATOMICAL_STRUCTURE: Code = c("91723000", "SCT", "Anatomical Structure");
/// Finding (TID 1411).
pub const FINDING: Code = c("121071", "DCM", "Finding");
/// Finding Site (TID 1411, concept modifier).
pub const FINDING_SITE: Code = c("363698007", "SCT", "Finding Site");
/// Algorithm Name (TID 4019).
pub const ALGORITHM_NAME: Code = c("111001", "DCM", "Algorithm Name");
/// Algorithm Version (TID 4019).
pub const ALGORITHM_VERSION: Code = c("111003", "DCM", "Algorithm Version");
/// Referenced Segment (TID 1411 row 7).
pub const REFERENCED_SEGMENT: Code = c("121191", "DCM", "Referenced Segment");
/// Source series for segmentation (TID 1411 row 9).
pub const SOURCE_SERIES_FOR_SEGMENTATION: Code =
    c("121232", "DCM", "Source series for segmentation");
/// Measurement Method (TID 1419 concept modifier).
pub const MEASUREMENT_METHOD: Code = c("370129005", "SCT", "Measurement Method");
/// Volumes by voxel counting (CID 7474).
pub const SUM_OF_VOXELS: Code = c("126030", "DCM", "Sum of segmented voxel method for volume");
/// Index modifier: the value is divided by the index method (with [`BSA`]).
pub const INDEX: Code = c("121425", "DCM", "Index");
/// Body surface area (LOINC 8277-6; CID 3455 Index Method).
pub const BSA: Code = c("8277-6", "LN", "BSA");
/// Mosteller's BSA formula (CID 3663).
pub const BSA_MOSTELLER: Code = c("122244", "DCM", "BSA = (HT*WT/36)^0.5");
/// End diastole (CID 12233 Cardiac Phase).
pub const END_DIASTOLE: Code = c("416190007", "SCT", "End diastole");
/// End systole (CID 12233 Cardiac Phase).
pub const END_SYSTOLE: Code = c("416430001", "SCT", "End Systole");
/// SOP class of the Comprehensive 3D SR the report is written as (highdicom's default for TID 1500).
pub const COMPREHENSIVE_3D_SR: &str = "1.2.840.10008.5.1.4.1.1.88.34";

/// The concept name of a measurement.
pub fn concept(q: Quantity) -> Code {
    match q {
        Quantity::LvEdv => c("8821-1", "LN", "Left Ventricular ED Volume"),
        Quantity::LvEsv => c("8823-7", "LN", "Left Ventricular ES Volume"),
        Quantity::LvSv => c("90096001", "SCT", "Stroke Volume"),
        Quantity::LvEf => c("8811-2", "LN", "Left ventricular ejection fraction by MR"),
        Quantity::LvMass => c("18087-7", "LN", "Left Ventricle Mass"),
        Quantity::RvEdv => c("8822-9", "LN", "Right Ventricular ED Volume"),
        Quantity::RvEsv => c("8824-5", "LN", "Right Ventricular ES Volume"),
        Quantity::RvSv => c("429483009", "SCT", "RV Stroke Volume"),
        Quantity::RvEf => c("8818-7", "LN", "Right ventricular ejection fraction by MR"),
        Quantity::HeartRate => c("8867-4", "LN", "Heart rate"),
        Quantity::CardiacOutput => c("82799009", "SCT", "Cardiac Output"),
        Quantity::Bsa => BSA,
    }
}

/// The concept name of an indexed value, where the standard has a dedicated one (stroke and
/// cardiac index); otherwise the absolute concept with an [`INDEX`] modifier.
pub fn indexed_concept(q: Quantity) -> Option<Code> {
    match q {
        Quantity::LvSv => Some(c("277381004", "SCT", "Stroke Index")),
        Quantity::RvSv => Some(c("429619008", "SCT", "RV Stroke Index")),
        Quantity::CardiacOutput => Some(c("54993008", "SCT", "Cardiac Index")),
        _ => None,
    }
}

/// A UCUM unit code as DICOM writes it (the meaning is the UCUM string, as in the cardiac CIDs).
pub fn unit(ucum: &'static str) -> Code {
    match ucum {
        "/min" => c("{H.B.}/min", "UCUM", "BPM"),
        u => c(u, "UCUM", u),
    }
}

/// Every code above, for the documentation check.
pub fn all() -> Vec<Code> {
    let mut v = vec![
        IMAGING_MEASUREMENT_REPORT,
        LANGUAGE,
        ENGLISH,
        OBSERVER_TYPE,
        DEVICE,
        DEVICE_OBSERVER_UID,
        DEVICE_OBSERVER_NAME,
        DEVICE_OBSERVER_MANUFACTURER,
        DEVICE_OBSERVER_MODEL_NAME,
        PROCEDURE_REPORTED,
        CARDIAC_MRI,
        IMAGING_MEASUREMENTS,
        MEASUREMENT_GROUP,
        TRACKING_IDENTIFIER,
        TRACKING_UID,
        FINDING_CATEGORY,
        ANATOMICAL_STRUCTURE,
        FINDING,
        FINDING_SITE,
        ALGORITHM_NAME,
        ALGORITHM_VERSION,
        REFERENCED_SEGMENT,
        SOURCE_SERIES_FOR_SEGMENTATION,
        MEASUREMENT_METHOD,
        SUM_OF_VOXELS,
        INDEX,
        BSA_MOSTELLER,
        END_DIASTOLE,
        END_SYSTOLE,
    ];
    for q in Quantity::ALL {
        v.push(concept(q));
        v.extend(indexed_concept(q));
    }
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_code_is_in_the_documentation_table() {
        let doc = include_str!("../../docs/sr-codes.md");
        for code in super::all() {
            let row = format!("| {} | {} | {} |", code.value, code.scheme, code.meaning);
            assert!(doc.contains(&row), "docs/sr-codes.md lacks the row {row}");
        }
    }
}
