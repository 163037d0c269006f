//! Who and what a series belongs to, read once from its first source image: the identity every
//! object cineseg writes must carry so a PACS files it under the same patient and study (a SEG,
//! SR or overlay with an empty PatientName is quarantined or filed under "unknown"), and the
//! body and heart data the report needs (sex, age, height, weight, heart rate).

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use serde::Serialize;

use super::attr::{self, Obj};
use super::error::DicomError;
use super::instance::{parse, read_capped};
use super::stack::CineStack;

/// Patient and study attributes copied verbatim into every object written for a series.
pub const COPIED: [(Tag, VR); 13] = [
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
    (tags::STUDY_DESCRIPTION, VR::LO),
    (tags::INSTITUTION_NAME, VR::LO),
];

/// The patient, study and physiology of one series.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StudyContext {
    /// The [`COPIED`] attributes as the source has them (dates that are not valid DA emptied).
    #[serde(skip)]
    pub identity: Vec<(Tag, VR, String)>,
    /// PatientName (DICOM PN, `^`-separated).
    pub patient_name: Option<String>,
    /// PatientID.
    pub patient_id: Option<String>,
    /// PatientBirthDate (YYYYMMDD).
    pub birth_date: Option<String>,
    /// PatientSex: `M`, `F` or `O`.
    pub sex: Option<String>,
    /// Age in years: PatientAge, else from the birth and study dates.
    pub age_years: Option<f64>,
    /// PatientSize (m).
    pub height_m: Option<f64>,
    /// PatientWeight (kg).
    pub weight_kg: Option<f64>,
    /// Heart rate (beats/min) during the acquisition.
    pub heart_rate_bpm: Option<f64>,
    /// Where the heart rate came from (`HeartRate` or `NominalInterval`).
    pub heart_rate_source: Option<&'static str>,
    /// StudyDate (YYYYMMDD).
    pub study_date: Option<String>,
    /// StudyDescription.
    pub study_description: Option<String>,
    /// AccessionNumber.
    pub accession_number: Option<String>,
    /// InstitutionName.
    pub institution: Option<String>,
}

impl StudyContext {
    /// Reads the context from the first source image of `stack`.
    pub fn of_stack(stack: &CineStack) -> Result<StudyContext, DicomError> {
        let src = stack
            .slices
            .iter()
            .flat_map(|s| s.frames.iter().flatten())
            .find_map(|f| f.source.as_ref())
            .ok_or_else(|| DicomError::Assemble {
                path: std::path::PathBuf::new(),
                reason: "the stack has no source image to read the patient and study from".into(),
            })?;
        let obj = parse(&read_capped(&src.path)?, &src.path)?;
        Ok(StudyContext::of_object(&obj))
    }

    /// The context when no source image can be read: the identifiers the stack kept
    /// (PatientID, StudyInstanceUID), every other copied attribute empty (type 2), so the
    /// written objects still file under the right patient and study.
    pub fn of_identifiers(ids: &super::Identifiers) -> StudyContext {
        let identity = COPIED
            .iter()
            .map(|&(tag, vr)| {
                let v = match tag {
                    tags::PATIENT_ID => ids.patient_id.clone(),
                    tags::STUDY_INSTANCE_UID => ids.study_uid.clone(),
                    _ => None,
                };
                (tag, vr, v.unwrap_or_default())
            })
            .collect();
        StudyContext {
            identity,
            patient_id: ids.patient_id.clone(),
            ..StudyContext::default()
        }
    }

    /// Reads the context from one source object.
    pub fn of_object(o: &Obj) -> StudyContext {
        let s = |tag| attr::string(o, tag).filter(|v: &String| !v.trim().is_empty());
        let positive = |tag| attr::float(o, tag).filter(|v| v.is_finite() && *v > 0.0);
        let identity = COPIED
            .iter()
            .map(|&(tag, vr)| {
                let mut v = attr::string(o, tag).unwrap_or_default();
                if vr == VR::DA && !valid_date(&v) {
                    v.clear();
                }
                (tag, vr, v)
            })
            .collect();
        let birth_date = s(tags::PATIENT_BIRTH_DATE).filter(|d| valid_date(d));
        let study_date = s(tags::STUDY_DATE).filter(|d| valid_date(d));
        let age_years = s(tags::PATIENT_AGE)
            .and_then(|a| parse_age(&a))
            .or_else(|| age_from_dates(birth_date.as_deref()?, study_date.as_deref()?));
        let (heart_rate_bpm, heart_rate_source) = heart_rate(o);
        StudyContext {
            identity,
            patient_name: s(tags::PATIENT_NAME),
            patient_id: s(tags::PATIENT_ID),
            birth_date,
            sex: s(tags::PATIENT_SEX).map(|v| v.trim().to_uppercase()),
            age_years,
            // Plausible adult and child ranges only: 0 or 999 are common placeholders.
            height_m: positive(tags::PATIENT_SIZE).filter(|h| (0.3..=2.5).contains(h)),
            weight_kg: positive(tags::PATIENT_WEIGHT).filter(|w| (1.0..=400.0).contains(w)),
            heart_rate_bpm,
            heart_rate_source,
            study_date,
            study_description: s(tags::STUDY_DESCRIPTION),
            accession_number: s(tags::ACCESSION_NUMBER),
            institution: s(tags::INSTITUTION_NAME),
        }
    }

    /// The patient name for people: `Doe^John` as `Doe, John`.
    pub fn display_name(&self) -> Option<String> {
        let n = self.patient_name.as_deref()?;
        let parts: Vec<&str> = n.split('^').filter(|p| !p.trim().is_empty()).collect();
        Some(match parts.as_slice() {
            [] => return None,
            [family] => family.to_string(),
            [family, rest @ ..] => format!("{family}, {}", rest.join(" ")),
        })
    }
}

/// HeartRate (0018,1088) when plausible, else 60000 / NominalInterval (the R-R interval, ms).
fn heart_rate(o: &Obj) -> (Option<f64>, Option<&'static str>) {
    let plausible = |v: &f64| (20.0..=250.0).contains(v);
    if let Some(hr) = attr::float(o, tags::HEART_RATE).filter(plausible) {
        return (Some(hr), Some("HeartRate"));
    }
    match attr::float(o, tags::NOMINAL_INTERVAL)
        .filter(|rr| *rr > 0.0)
        .map(|rr| 60_000.0 / rr)
        .filter(plausible)
    {
        Some(hr) => (Some(hr), Some("NominalInterval")),
        None => (None, None),
    }
}

/// A DICOM DA value: YYYYMMDD with a plausible month and day.
pub fn valid_date(s: &str) -> bool {
    let digits = s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit());
    let field = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<u32>().ok());
    digits
        && field(0..4).is_some_and(|y| y >= 1850)
        && field(4..6).is_some_and(|m| (1..=12).contains(&m))
        && field(6..8).is_some_and(|d| (1..=31).contains(&d))
}

/// PatientAge (AS): `nnnD`, `nnnW`, `nnnM` or `nnnY`.
fn parse_age(a: &str) -> Option<f64> {
    let a = a.trim();
    let (num, unit) = a.split_at(a.len().checked_sub(1)?);
    let n: f64 = num.parse().ok()?;
    let years = match unit {
        "Y" | "y" => n,
        "M" | "m" => n / 12.0,
        "W" | "w" => n * 7.0 / 365.25,
        "D" | "d" => n / 365.25,
        _ => return None,
    };
    (0.0..=130.0).contains(&years).then_some(years)
}

/// Whole years between two DA dates.
fn age_from_dates(birth: &str, at: &str) -> Option<f64> {
    let ymd = |d: &str| -> Option<(i32, i32)> {
        Some((d.get(0..4)?.parse().ok()?, d.get(4..8)?.parse().ok()?))
    };
    let ((by, bmd), (ay, amd)) = (ymd(birth)?, ymd(at)?);
    let years = ay - by - i32::from(amd < bmd);
    (0..=130).contains(&years).then_some(f64::from(years))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_in_every_unit_and_reject_nonsense() {
        assert_eq!(parse_age("045Y"), Some(45.0));
        assert_eq!(parse_age("006M"), Some(0.5));
        assert!(
            parse_age("").is_none() && parse_age("12X").is_none() && parse_age("999Y").is_none()
        );
        assert_eq!(age_from_dates("19800615", "20260614"), Some(45.0));
        assert_eq!(age_from_dates("19800615", "20260615"), Some(46.0));
    }

    #[test]
    fn dates_must_be_real_calendar_dates() {
        assert!(valid_date("20261203"));
        assert!(!valid_date("00000000") && !valid_date("2026123") && !valid_date("20261301"));
    }
}
