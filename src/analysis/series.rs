//! Measures one segmented cine series: post-processed label volumes per phase, masks aligned to
//! the stack, ED/ES with their trigger times, function numbers with heart rate, BSA indexing and
//! reference ranges, a per-slice table, quality flags and notes. The daemon and DICOM `segment`
//! use [`analyse`]; NIfTI `segment` and `demo`, which have no DICOM context, use its first half
//! [`analyse_phases`]; `eval` compares at the expert's ED/ES frames with the same volume, EF and
//! mass functions of `volumes`. So every command reports the same numbers the same way.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;

use super::clinical::{measurements, Measurement, Physiology};
use super::quality::{self, QualityFlag};
use super::volume::{LV, MYO, RV};
use super::volumes::{summarize, CardiacSummary, MYOCARDIAL_DENSITY_G_PER_ML};
use crate::dicom::masks::LabelMasks;
use crate::dicom::patient::StudyContext;
use crate::dicom::CineStack;
use crate::segment::{phase_volume, SegmentError, SliceLabels};

/// Everything measured for one series.
pub struct SeriesAnalysis {
    /// The assembled images.
    pub stack: CineStack,
    /// Labels for every (slice, phase) image, aligned to `stack`.
    pub masks: LabelMasks,
    /// Function numbers (None when they could not be derived, e.g. one phase only).
    pub summary: Option<CardiacSummary>,
    /// Patient, study and physiology from the source images.
    pub context: StudyContext,
    /// Heart rate and BSA used by the measurements.
    pub physiology: Physiology,
    /// Every reported measurement with unit, index and reference range (empty without a summary).
    pub measurements: Vec<Measurement>,
    /// Trigger times (ms after the R wave) of ED and ES: the stack's representative times.
    pub key_times_ms: KeyTimes,
    /// Quality flags of the analysis module.
    pub flags: Vec<QualityFlag>,
    /// Further warnings (low confidence, missing frames, summary errors).
    pub notes: Vec<String>,
    /// Mean foreground confidence per phase.
    pub confidence: Vec<f32>,
    /// Images absent from the series (not segmented).
    pub missing_frames: usize,
}

/// Trigger times of the key phases.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KeyTimes {
    /// End-diastole (ms).
    pub ed_ms: Option<f64>,
    /// End-systole (ms).
    pub es_ms: Option<f64>,
}

/// One slice's areas at ED and ES: the per-slice table of the report, where a cardiologist sees
/// which slices carry the volume (and a mis-segmented basal slice stands out).
#[derive(Debug, Clone, Serialize)]
pub struct SliceRow {
    /// Slice index, 0 at the first slice along the stack normal.
    pub slice: usize,
    /// Position along the stack normal (mm).
    pub offset_mm: f64,
    /// LV blood-pool volume of this slice at ED and ES (ml).
    pub lv_ml: [f64; 2],
    /// Myocardial mass of this slice at ED (g).
    pub myo_g_ed: f64,
    /// RV blood-pool volume at ED and ES (ml).
    pub rv_ml: [f64; 2],
}

impl SeriesAnalysis {
    /// An error-severity flag (missing phases, an implausible EF, ...) marks the EF unreliable.
    pub fn ef_flagged(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.severity == quality::Severity::Error)
    }

    /// Mean model confidence over all phases.
    pub fn mean_confidence(&self) -> f32 {
        self.confidence.iter().sum::<f32>() / self.confidence.len().max(1) as f32
    }

    /// The stack's representative trigger time of every phase (ms), when all phases have one:
    /// the time axis of the volume curve.
    pub fn phase_times_ms(&self) -> Option<Vec<f64>> {
        self.stack.phase_times.iter().copied().collect()
    }

    /// Per-slice volumes at ED and ES; empty without a summary.
    pub fn slice_table(&self) -> Vec<SliceRow> {
        let Some(s) = &self.summary else {
            return Vec::new();
        };
        let g = &self.stack.grid;
        let voxel_ml = g.pixel_spacing[0] * g.pixel_spacing[1] * self.stack.slice_spacing / 1000.0;
        let count = |slice: usize, phase: usize, class: u8| {
            self.masks
                .image(slice, phase)
                .map(|m| m.iter().filter(|&&v| v == class).count())
                .unwrap_or(0) as f64
                * voxel_ml
        };
        self.stack
            .slices
            .iter()
            .enumerate()
            .map(|(i, sl)| SliceRow {
                slice: i,
                offset_mm: sl.offset_mm,
                lv_ml: [count(i, s.ed_phase, LV), count(i, s.es_phase, LV)],
                myo_g_ed: count(i, s.ed_phase, MYO) * MYOCARDIAL_DENSITY_G_PER_ML,
                rv_ml: [count(i, s.ed_phase, RV), count(i, s.es_phase, RV)],
            })
            .collect()
    }
}

/// Measures one segmented series from its per-image labels (keyed by (slice, phase)).
pub fn analyse(
    stack: &CineStack,
    labels: &HashMap<(usize, usize), SliceLabels>,
    min_confidence: f32,
) -> Result<SeriesAnalysis, SegmentError> {
    let st = stack;
    let (rows, cols, ns, np) = (st.grid.rows, st.grid.cols, st.n_slices(), st.n_phases());
    let mut masks = LabelMasks::empty(ns, np, rows, cols, vec![1, 2, 3]);
    let blank = SliceLabels {
        labels: vec![0; rows * cols],
        confidence: 1.0,
        foreground: 0,
    };
    let spacing = [
        st.grid.pixel_spacing[1] as f32,
        st.grid.pixel_spacing[0] as f32,
        st.slice_spacing as f32,
    ];
    let missing = (0..np)
        .flat_map(|p| (0..ns).map(move |s| (s, p)))
        .filter(|k| !labels.contains_key(k))
        .count();
    // Phases are independent (post-processing is 3D within a phase): measured in parallel.
    let per_phase: Vec<(f32, super::LabelVolume)> = (0..np)
        .into_par_iter()
        .map(|p| {
            let slices: Vec<SliceLabels> = (0..ns)
                .map(|s| {
                    labels
                        .get(&(s, p))
                        .cloned()
                        .unwrap_or_else(|| blank.clone())
                })
                .collect();
            Ok((
                foreground_confidence(&slices),
                phase_volume(&slices, cols, rows, spacing)?,
            ))
        })
        .collect::<Result<_, SegmentError>>()?;
    let mut phases = Vec::with_capacity(np);
    let mut confidence = Vec::with_capacity(np);
    for (p, (conf, vol)) in per_phase.into_iter().enumerate() {
        confidence.push(conf);
        for s in 0..ns {
            let shape = || {
                SegmentError::Input(format!(
                    "label volume of phase {p} is not {ns} x {rows} x {cols}"
                ))
            };
            let img = masks.image_mut(s, p).ok_or_else(shape)?;
            img.copy_from_slice(
                vol.labels
                    .get(s * rows * cols..(s + 1) * rows * cols)
                    .ok_or_else(shape)?,
            );
        }
        phases.push(vol);
    }
    for (i, a) in masks.annotated.iter_mut().enumerate() {
        if labels.contains_key(&(i / np.max(1), i % np.max(1))) {
            *a = vec![1, 2, 3];
        }
    }
    let PhaseAnalysis {
        summary,
        mut flags,
        mut notes,
    } = analyse_phases(&phases, &confidence, min_confidence);
    flags.extend(quality::check_stack(stack));
    if missing > 0 {
        notes.push(format!(
            "{missing} images missing from the series were not segmented"
        ));
    }
    let context = StudyContext::of_stack(stack).unwrap_or_else(|e| {
        notes.push(format!(
            "patient and study data could not be read from the source ({e}): no heart rate, BSA or reference ranges"
        ));
        StudyContext::of_identifiers(&stack.ids)
    });
    let physiology = Physiology::of(&context);
    let key_times_ms = summary
        .as_ref()
        .map(|s| KeyTimes {
            ed_ms: stack.phase_times.get(s.ed_phase).copied().flatten(),
            es_ms: stack.phase_times.get(s.es_phase).copied().flatten(),
        })
        .unwrap_or_default();
    let measurements = summary
        .as_ref()
        .map(|s| measurements(s, &physiology, &context))
        .unwrap_or_default();
    Ok(SeriesAnalysis {
        stack: stack.clone(),
        masks,
        summary,
        context,
        physiology,
        measurements,
        key_times_ms,
        flags,
        notes,
        confidence,
        missing_frames: missing,
    })
}

/// What the label volumes of a series' phases give on their own, without DICOM context: the
/// function numbers, the plausibility and confidence flags, and notes on what could not be
/// derived. The DICOM analysis, NIfTI `segment` and `demo` all measure through this one path.
#[derive(Debug, Clone, Default)]
pub struct PhaseAnalysis {
    /// ED/ES, volumes, EF and mass (None with one phase only, or when no summary could be made).
    pub summary: Option<CardiacSummary>,
    /// Plausibility (curve, slices, numbers) and confidence flags.
    pub flags: Vec<QualityFlag>,
    /// Why numbers are absent, when they are.
    pub notes: Vec<String>,
}

/// Summarises and checks one label volume per phase; `confidence` is the mean foreground
/// confidence per phase (see [`foreground_confidence`]).
pub fn analyse_phases(
    phases: &[super::LabelVolume],
    confidence: &[f32],
    min_confidence: f32,
) -> PhaseAnalysis {
    let mut notes = Vec::new();
    let summary = if phases.len() > 1 {
        match summarize(phases) {
            Ok(s) => Some(s),
            Err(e) => {
                notes.push(format!("no function numbers: {e}"));
                None
            }
        }
    } else {
        notes.push("one phase only: no ED/ES, EF or volume curve".into());
        None
    };
    let mut flags = summary
        .as_ref()
        .map(|s| quality::check(phases, s))
        .unwrap_or_default();
    flags.extend(quality::check_confidence(confidence, min_confidence));
    PhaseAnalysis {
        summary,
        flags,
        notes,
    }
}

/// Mean confidence over the foreground pixels of a phase's slices (1.0 with no foreground):
/// weighting by foreground keeps empty apical slices from diluting it. The NIfTI path uses the
/// same measure.
pub fn foreground_confidence(slices: &[SliceLabels]) -> f32 {
    let fg: usize = slices.iter().map(|l| l.foreground).sum();
    if fg == 0 {
        return 1.0;
    }
    (slices
        .iter()
        .map(|l| l.confidence as f64 * l.foreground as f64)
        .sum::<f64>()
        / fg as f64) as f32
}
