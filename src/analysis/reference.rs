//! Published reference ranges ("normal values") for adult cine CMR, by sex: what the report
//! compares each measurement with, and highlights when outside. The LV values are those of
//! Kawel-Boehm et al. (JCMR 2015;17:29, adult SSFP) as tabulated in a 2020 review; RV EDV and
//! ESV are Hudsmith et al. (JCMR 2005). The 2020 update (JCMR 2020;22:87) could not be read
//! here, so its tables (age bands, RV SV/EF, indexed RV values) are still to be entered. `docs/reference-ranges.md` lists every number, its source
//! and what is missing.
//!
//! Ranges exist only for adults of known sex: for anyone else the report says why none apply.

use serde::Serialize;

use super::clinical::Quantity;
use crate::dicom::patient::StudyContext;

/// A reference interval (mean +/- 2 SD of healthy subjects).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range {
    /// Lower limit.
    pub lower: f64,
    /// Upper limit.
    pub upper: f64,
    /// Where the limits come from.
    pub source: &'static str,
}

/// Citation of the ranges in use.
pub const SOURCE: &str =
    "Kawel-Boehm et al., JCMR 2015;17:29 (adult SSFP, mean +/- 2 SD), via Cardiovasc Diagn Ther 2020;10:1918 Table 3";

/// One row: quantity, (male absolute, male indexed), (female absolute, female indexed), source;
/// each limit as (lower, upper). `None` where the source gives no value.
type Row = (Quantity, Limits, Limits, &'static str);
type Limits = (Option<(f64, f64)>, Option<(f64, f64)>);

/// RV volumes: Hudsmith et al., J Cardiovasc Magn Reson 2005;7:775 (108 healthy adults, SSFP,
/// 1.5 T), as its abstract gives them.
pub const HUDSMITH: &str = "Hudsmith et al., JCMR 2005;7:775 (adult SSFP, mean +/- 2 SD)";

/// Mean +/- 2 SD of the published mean and SD (docs/reference-ranges.md has the means and SDs).
const TABLE: &[Row] = &[
    // quantity, (men abs, men /BSA), (women abs, women /BSA), source
    (
        Quantity::LvEdv,
        (Some((106.0, 214.0)), Some((57.0, 105.0))),
        (Some((86.0, 178.0)), Some((56.0, 96.0))),
        SOURCE,
    ),
    (
        Quantity::LvEsv,
        (Some((26.0, 82.0)), Some((14.0, 38.0))),
        (Some((22.0, 66.0)), Some((14.0, 34.0))),
        SOURCE,
    ),
    (
        Quantity::LvSv,
        (Some((72.0, 144.0)), Some((42.0, 66.0))),
        (Some((57.0, 117.0)), Some((38.0, 66.0))),
        SOURCE,
    ),
    (
        Quantity::LvEf,
        (Some((57.0, 77.0)), None),
        (Some((57.0, 77.0)), None),
        SOURCE,
    ),
    (
        Quantity::LvMass,
        (Some((92.0, 176.0)), Some((49.0, 85.0))),
        (Some((56.0, 140.0)), Some((41.0, 81.0))),
        SOURCE,
    ),
    (
        Quantity::RvEdv,
        (Some((124.0, 256.0)), None),
        (Some((78.0, 218.0)), None),
        HUDSMITH,
    ),
    (
        Quantity::RvEsv,
        (Some((38.0, 118.0)), None),
        (Some((20.0, 92.0)), None),
        HUDSMITH,
    ),
];

/// Why no reference ranges apply to this patient, or `None` when they do.
pub fn why_not(ctx: &StudyContext) -> Option<String> {
    match (ctx.sex.as_deref(), ctx.age_years) {
        (Some("M") | Some("F"), Some(a)) if a >= 18.0 => None,
        (Some("M") | Some("F"), None) => Some("age unknown (adult ranges need age >= 18)".into()),
        (Some("M") | Some("F"), Some(a)) => {
            Some(format!("age {a:.0}: adult reference ranges do not apply"))
        }
        _ => Some("sex unknown: reference ranges are sex-specific".into()),
    }
}

/// The absolute and indexed ranges of `q` for this patient.
pub fn ranges(q: Quantity, ctx: &StudyContext) -> (Option<Range>, Option<Range>) {
    if why_not(ctx).is_some() {
        return (None, None);
    }
    let Some(&(_, male, female, source)) = TABLE.iter().find(|r| r.0 == q) else {
        return (None, None);
    };
    let (abs, idx) = if ctx.sex.as_deref() == Some("M") {
        male
    } else {
        female
    };
    let range = |l: Option<(f64, f64)>| {
        l.map(|(lower, upper)| Range {
            lower,
            upper,
            source,
        })
    };
    (range(abs), range(idx))
}
