//! The measurements a cardiologist reads, as one list: function numbers from the segmentation,
//! heart rate and cardiac output where the series gives a heart rate, values indexed to body
//! surface area where height and weight are known, and each compared with its published
//! reference range. SR, report.json, report.html and the summary page all print this list, so
//! they cannot disagree.

use serde::Serialize;

use super::reference::{self, Range};
use super::volumes::CardiacSummary;
use crate::dicom::patient::StudyContext;

/// Body surface area formula used for indexing.
pub const BSA_FORMULA: &str = "Mosteller: sqrt(height [cm] x weight [kg] / 3600)";

/// Body surface area (m2) by Mosteller (NEJM 1987), the formula CMR reference ranges index by.
pub fn bsa_mosteller(height_m: f64, weight_kg: f64) -> f64 {
    (height_m * 100.0 * weight_kg / 3600.0).sqrt()
}

/// Which quantity a measurement is: the key of report.json, the row of the report, the
/// concept of the SR (see `dicom::sr_codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// LV end-diastolic volume.
    LvEdv,
    /// LV end-systolic volume.
    LvEsv,
    /// LV stroke volume.
    LvSv,
    /// LV ejection fraction.
    LvEf,
    /// LV myocardial mass at end-diastole.
    LvMass,
    /// RV end-diastolic volume.
    RvEdv,
    /// RV end-systolic volume.
    RvEsv,
    /// RV stroke volume.
    RvSv,
    /// RV ejection fraction.
    RvEf,
    /// Heart rate during the acquisition.
    HeartRate,
    /// LV cardiac output (LV SV x heart rate).
    CardiacOutput,
    /// Body surface area.
    Bsa,
}

impl Quantity {
    /// Every quantity, in report order.
    pub const ALL: [Quantity; 12] = [
        Quantity::LvEdv,
        Quantity::LvEsv,
        Quantity::LvSv,
        Quantity::LvEf,
        Quantity::LvMass,
        Quantity::RvEdv,
        Quantity::RvEsv,
        Quantity::RvSv,
        Quantity::RvEf,
        Quantity::HeartRate,
        Quantity::CardiacOutput,
        Quantity::Bsa,
    ];

    /// Label for people.
    pub fn label(self) -> &'static str {
        match self {
            Quantity::LvEdv => "LV end-diastolic volume",
            Quantity::LvEsv => "LV end-systolic volume",
            Quantity::LvSv => "LV stroke volume",
            Quantity::LvEf => "LV ejection fraction",
            Quantity::LvMass => "LV mass (end-diastole)",
            Quantity::RvEdv => "RV end-diastolic volume",
            Quantity::RvEsv => "RV end-systolic volume",
            Quantity::RvSv => "RV stroke volume",
            Quantity::RvEf => "RV ejection fraction",
            Quantity::HeartRate => "Heart rate",
            Quantity::CardiacOutput => "Cardiac output",
            Quantity::Bsa => "Body surface area",
        }
    }

    /// UCUM unit of the absolute value.
    pub fn unit(self) -> &'static str {
        match self {
            Quantity::LvEdv
            | Quantity::LvEsv
            | Quantity::LvSv
            | Quantity::RvEdv
            | Quantity::RvEsv
            | Quantity::RvSv => "ml",
            Quantity::LvEf | Quantity::RvEf => "%",
            Quantity::LvMass => "g",
            Quantity::HeartRate => "/min",
            Quantity::CardiacOutput => "l/min",
            Quantity::Bsa => "m2",
        }
    }

    /// UCUM unit of the BSA-indexed value; `None` for quantities that are not indexed.
    pub fn indexed_unit(self) -> Option<&'static str> {
        match self {
            Quantity::LvEdv
            | Quantity::LvEsv
            | Quantity::LvSv
            | Quantity::RvEdv
            | Quantity::RvEsv
            | Quantity::RvSv => Some("ml/m2"),
            Quantity::LvMass => Some("g/m2"),
            Quantity::CardiacOutput => Some("l/min/m2"),
            _ => None,
        }
    }
}

/// Where a value lies against its reference range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Inside the range.
    Normal,
    /// Below the lower limit.
    Low,
    /// Above the upper limit.
    High,
}

impl Verdict {
    fn of(value: f64, r: &Range) -> Verdict {
        if value < r.lower {
            Verdict::Low
        } else if value > r.upper {
            Verdict::High
        } else {
            Verdict::Normal
        }
    }
}

/// One reported measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What it is.
    pub quantity: Quantity,
    /// Label for people.
    pub label: &'static str,
    /// Value in `unit`.
    pub value: f64,
    /// UCUM unit.
    pub unit: &'static str,
    /// Value divided by BSA, when height and weight are known and the quantity is indexed.
    pub indexed: Option<f64>,
    /// UCUM unit of `indexed`.
    pub indexed_unit: Option<&'static str>,
    /// Reference range of the absolute value for the patient's sex (and age where published).
    pub range: Option<Range>,
    /// Reference range of the indexed value.
    pub indexed_range: Option<Range>,
    /// The absolute value against its range.
    pub verdict: Option<Verdict>,
    /// The indexed value against its range.
    pub indexed_verdict: Option<Verdict>,
}

impl Measurement {
    /// True when the value or its index lies outside its reference range.
    pub fn abnormal(&self) -> bool {
        [self.verdict, self.indexed_verdict]
            .iter()
            .flatten()
            .any(|v| *v != Verdict::Normal)
    }
}

/// Heart and body data around the function numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Physiology {
    /// Heart rate (beats/min) and the attribute it came from.
    pub heart_rate_bpm: Option<f64>,
    /// `HeartRate` or `NominalInterval`.
    pub heart_rate_source: Option<&'static str>,
    /// BSA (m2), when height and weight are known.
    pub bsa_m2: Option<f64>,
    /// The BSA formula.
    pub bsa_formula: Option<&'static str>,
    /// Why no reference ranges were applied, when none were (e.g. sex unknown, a child).
    pub ranges_missing_because: Option<String>,
}

impl Physiology {
    /// From the patient and study data of the series.
    pub fn of(ctx: &StudyContext) -> Physiology {
        let bsa = match (ctx.height_m, ctx.weight_kg) {
            (Some(h), Some(w)) => Some(bsa_mosteller(h, w)),
            _ => None,
        };
        Physiology {
            heart_rate_bpm: ctx.heart_rate_bpm,
            heart_rate_source: ctx.heart_rate_source,
            bsa_m2: bsa,
            bsa_formula: bsa.map(|_| BSA_FORMULA),
            ranges_missing_because: reference::why_not(ctx),
        }
    }
}

/// Every measurement of a series, in report order.
pub fn measurements(s: &CardiacSummary, phys: &Physiology, ctx: &StudyContext) -> Vec<Measurement> {
    let mut values = vec![
        (Quantity::LvEdv, Some(s.lv_edv_ml)),
        (Quantity::LvEsv, Some(s.lv_esv_ml)),
        (Quantity::LvSv, Some(s.lv_sv_ml)),
        (Quantity::LvEf, s.lv_ef_percent),
        (Quantity::LvMass, Some(s.lv_mass_g)),
        (Quantity::RvEdv, Some(s.rv_edv_ml)),
        (Quantity::RvEsv, Some(s.rv_esv_ml)),
        (Quantity::RvSv, Some(s.rv_sv_ml)),
        (Quantity::RvEf, s.rv_ef_percent),
    ];
    if let Some(hr) = phys.heart_rate_bpm {
        values.push((Quantity::HeartRate, Some(hr)));
        values.push((Quantity::CardiacOutput, Some(s.lv_sv_ml * hr / 1000.0)));
    }
    values.push((Quantity::Bsa, phys.bsa_m2));
    values
        .into_iter()
        .filter_map(|(q, v)| Some((q, v.filter(|v| v.is_finite())?)))
        .map(|(q, value)| {
            let indexed = q.indexed_unit().and(phys.bsa_m2).map(|bsa| value / bsa);
            let (range, indexed_range) = reference::ranges(q, ctx);
            Measurement {
                quantity: q,
                label: q.label(),
                value,
                unit: q.unit(),
                indexed,
                indexed_unit: indexed.and(q.indexed_unit()),
                verdict: range.as_ref().map(|r| Verdict::of(value, r)),
                indexed_verdict: match (indexed, &indexed_range) {
                    (Some(v), Some(r)) => Some(Verdict::of(v, r)),
                    _ => None,
                },
                range,
                indexed_range: indexed.and(indexed_range),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosteller_bsa_matches_a_worked_example() {
        // 180 cm, 80 kg: sqrt(180 * 80 / 3600) = 2.0 m2.
        assert!((bsa_mosteller(1.80, 80.0) - 2.0).abs() < 1e-12);
    }
}
