//! `report.json`: every number of the result for other programs, with a `schema_version` so a
//! reader can tell what it gets. Patient identity is not in it (the DICOM objects carry it);
//! sex, age, height and weight are, since the indexed values and ranges depend on them.

use serde::Serialize;

use crate::analysis::clinical::{Measurement, Physiology};
use crate::analysis::quality::QualityFlag;
use crate::analysis::series::{KeyTimes, SeriesAnalysis, SliceRow};
use crate::analysis::volumes::CardiacSummary;
use crate::dicom::seg::SegWritten;
use crate::registry::ModelIdentity;

/// Version of the report.json layout; raised whenever a field changes meaning or goes away.
/// 2: measurements with units, indexed values and reference ranges, physiology, per-slice
/// table, key-phase trigger times, the SR and per-phase SEGs.
pub const SCHEMA_VERSION: u32 = 2;

/// Which result this is: the daemon's job, or a one-off `cineseg segment`.
#[derive(Debug, Clone, Serialize)]
pub struct ResultIdentity<'a> {
    /// Result id, also the folder name (`job` in report.json, as in schema 1).
    #[serde(rename = "job")]
    pub id: &'a str,
    /// Reception of the series this result is from (1 the first time): a higher version of the
    /// same series supersedes the lower ones.
    pub version: u32,
    /// The result this one replaces.
    pub supersedes: Option<&'a str>,
    /// Why the series was considered complete.
    pub closed_because: &'a str,
    /// SeriesInstanceUID of the source.
    pub series_instance_uid: &'a str,
}

/// The DICOM objects written for a result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Written {
    /// The cine SEG (every phase).
    pub seg_cine: Option<SegWritten>,
    /// The 3D SEG at end-diastole.
    pub seg_ed: Option<SegWritten>,
    /// The 3D SEG at end-systole.
    pub seg_es: Option<SegWritten>,
    /// SOPInstanceUID of the measurement SR.
    pub sr: Option<String>,
    /// SOPInstanceUID of the summary page secondary capture.
    pub summary_page: Option<String>,
    /// Overlay secondary captures written.
    pub overlays: usize,
}

/// The JSON report.
#[derive(Serialize)]
pub struct Report<'a> {
    schema_version: u32,
    #[serde(flatten)]
    identity: &'a ResultIdentity<'a>,
    series_description: Option<&'a str>,
    model: &'a ModelIdentity,
    slices: usize,
    phases: usize,
    matrix: [usize; 2],
    pixel_spacing_mm: [f64; 2],
    slice_spacing_mm: f64,
    missing_frames: usize,
    patient: PatientPart<'a>,
    physiology: &'a Physiology,
    key_phase_trigger_times_ms: KeyTimes,
    measurements: &'a [Measurement],
    summary: Option<&'a CardiacSummary>,
    per_slice: Vec<SliceRow>,
    /// True when an error-severity quality flag makes the EF and volumes unreliable.
    ef_flagged: bool,
    quality_flags: &'a [QualityFlag],
    notes: &'a [String],
    confidence_per_phase: &'a [f32],
    corrections: Vec<String>,
    written: &'a Written,
}

/// The patient data the numbers depend on (no name or ID).
#[derive(Serialize)]
struct PatientPart<'a> {
    sex: Option<&'a str>,
    age_years: Option<f64>,
    height_m: Option<f64>,
    weight_kg: Option<f64>,
}

impl<'a> Report<'a> {
    /// Collects the report of `a`.
    pub fn new(
        identity: &'a ResultIdentity<'a>,
        a: &'a SeriesAnalysis,
        model: &'a ModelIdentity,
        written: &'a Written,
    ) -> Self {
        let c = &a.context;
        Report {
            schema_version: SCHEMA_VERSION,
            identity,
            series_description: a.stack.ids.series_description.as_deref(),
            model,
            slices: a.stack.n_slices(),
            phases: a.stack.n_phases(),
            matrix: [a.stack.grid.rows, a.stack.grid.cols],
            pixel_spacing_mm: a.stack.grid.pixel_spacing,
            slice_spacing_mm: a.stack.slice_spacing,
            missing_frames: a.missing_frames,
            patient: PatientPart {
                sex: c.sex.as_deref(),
                age_years: c.age_years,
                height_m: c.height_m,
                weight_kg: c.weight_kg,
            },
            physiology: &a.physiology,
            key_phase_trigger_times_ms: a.key_times_ms,
            measurements: &a.measurements,
            summary: a.summary.as_ref(),
            per_slice: a.slice_table(),
            ef_flagged: a.ef_flagged(),
            quality_flags: &a.flags,
            notes: &a.notes,
            confidence_per_phase: &a.confidence,
            corrections: a
                .stack
                .corrections
                .iter()
                .map(|c| c.to_json_line())
                .collect(),
            written,
        }
    }
}
