//! Plausibility checks a clinician would otherwise do by eye before trusting the numbers.
//!
//! Each check yields a [`QualityFlag`] with a stable kind (for software) and a message (for
//! people). Checks look at the ED and ES phases, the ones that drive the reported volumes,
//! and at the whole LV volume curve.

use super::volume::{LabelVolume, LV, MYO};
use super::volumes::CardiacSummary;
use crate::dicom::stack::{CineStack, Correction};
use serde::{Deserialize, Serialize};

/// LVEF below this (percent) is implausible for a segmented, beating heart.
pub const EF_MIN_PERCENT: f64 = 5.0;
/// LVEF above this (percent) is implausible.
pub const EF_MAX_PERCENT: f64 = 85.0;
/// LVEDV below this (ml) suggests a missed ventricle or wrong spacing.
pub const LVEDV_MIN_ML: f64 = 20.0;
/// LVEDV above this (ml) suggests leakage into atria or wrong spacing.
pub const LVEDV_MAX_ML: f64 = 500.0;
/// Dips in the smoothed volume curve shallower than this fraction of its range are noise.
const CURVE_TOLERANCE: f64 = 0.05;

/// What a flag is about, stable across releases so reports can be filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// A mid-ventricular slice has myocardium but no LV blood pool.
    MissingLvMidSlice,
    /// A mid-ventricular slice has LV blood pool but no myocardium.
    MissingMyoMidSlice,
    /// A slice without LV or MYO lies between segmented slices.
    SliceGap,
    /// No LV or MYO at all in a phase that should show the heart.
    NoLeftVentricle,
    /// Ejection fraction outside the plausible range.
    ImplausibleEf,
    /// End-diastolic volume outside the plausible range.
    ImplausibleVolume,
    /// The LV volume curve has more than one minimum over the cycle.
    IrregularVolumeCurve,
    /// The model was unsure: mean foreground confidence below the configured threshold
    /// (typical of an unfamiliar scanner, sequence or artefact).
    LowConfidence,
    /// The receiver closed the series without all the images it says it has (the sender
    /// stopped, or paused past the idle timeout).
    IncompleteReception,
    /// Fewer phases than CardiacNumberOfImages (or the trigger-time steps) say the cycle has:
    /// end-diastole or end-systole may be missing.
    MissingPhases,
    /// Images missing at some (slice, phase): those phases' volumes lack slices.
    MissingFrames,
    /// Slice positions missing from the stack: the volumes leave them out.
    MissingSlices,
    /// Images or slices made up by filling (copied phases, interpolated slices).
    FilledImages,
    /// Slices on another raster resampled onto the stack's grid.
    ResampledSlices,
}

/// How much a flag should worry the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look; numbers are probably usable.
    Warning,
    /// The numbers are likely wrong until the contours are checked.
    Error,
}

/// One finding of the quality checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityFlag {
    /// Machine-readable kind.
    pub kind: FlagKind,
    /// How serious it is.
    pub severity: Severity,
    /// Phase concerned, when the flag is about one phase.
    pub phase: Option<usize>,
    /// Slice concerned, when the flag is about one slice.
    pub slice: Option<usize>,
    /// Human-readable explanation with the offending values.
    pub message: String,
}

/// Runs every check. `phases` are the segmented phases the summary was computed from; a
/// summary built from two labelled frames only can pass just those (ED and ES indices then
/// refer into `phases` if they are in range, and slice checks are skipped otherwise).
pub fn check(phases: &[LabelVolume], summary: &CardiacSummary) -> Vec<QualityFlag> {
    let mut flags = Vec::new();
    let mut checked = vec![summary.ed_phase];
    if summary.es_phase != summary.ed_phase {
        checked.push(summary.es_phase);
    }
    for p in checked {
        if let Some(vol) = phases.get(p) {
            flags.extend(check_slices(vol, p));
        }
    }
    flags.extend(check_numbers(summary));
    flags.extend(check_curve(&summary.lv_curve_ml));
    flags
}

/// Slice coverage of one phase: gaps, and LV or MYO missing from the middle third of the
/// slices the LV spans.
pub fn check_slices(vol: &LabelVolume, phase: usize) -> Vec<QualityFlag> {
    let mut flags = Vec::new();
    let per_slice: Vec<(usize, usize)> = (0..vol.slices)
        .map(|z| (vol.count_in_slice(z, LV), vol.count_in_slice(z, MYO)))
        .collect();
    let present: Vec<usize> = (0..vol.slices)
        .filter(|&z| per_slice[z].0 + per_slice[z].1 > 0)
        .collect();
    let (Some(&first), Some(&last)) = (present.first(), present.last()) else {
        flags.push(QualityFlag {
            kind: FlagKind::NoLeftVentricle,
            severity: Severity::Error,
            phase: Some(phase),
            slice: None,
            message: format!(
                "phase {phase}: no LV blood pool or myocardium in any of {} slices",
                vol.slices
            ),
        });
        return flags;
    };
    for (z, &(lv, myo)) in per_slice.iter().enumerate().take(last + 1).skip(first) {
        if lv + myo == 0 {
            flags.push(QualityFlag {
                kind: FlagKind::SliceGap,
                severity: Severity::Error,
                phase: Some(phase),
                slice: Some(z),
                message: format!(
                    "phase {phase}, slice {z}: no LV or myocardium between segmented slices {first} and {last}"
                ),
            });
        }
    }
    // Middle third of the LV's extent (at least one slice): base and apex may lack either
    // class legitimately, mid-ventricular slices must show both.
    let span = last - first + 1;
    let (mid_lo, mid_hi) = (first + span / 3, first + (2 * span).div_ceil(3) - 1);
    for (z, &(lv, myo)) in per_slice.iter().enumerate().take(mid_hi + 1).skip(mid_lo) {
        let (kind, missing) = match (lv > 0, myo > 0) {
            (false, true) => (FlagKind::MissingLvMidSlice, "LV blood pool"),
            (true, false) => (FlagKind::MissingMyoMidSlice, "myocardium"),
            _ => continue, // both present, or both absent (already a gap)
        };
        flags.push(QualityFlag {
            kind,
            severity: Severity::Warning,
            phase: Some(phase),
            slice: Some(z),
            message: format!("phase {phase}, mid-ventricular slice {z}: {missing} missing"),
        });
    }
    flags
}

/// Range checks on EF and EDV.
pub fn check_numbers(s: &CardiacSummary) -> Vec<QualityFlag> {
    let mut flags = Vec::new();
    match s.lv_ef_percent {
        Some(ef) if (EF_MIN_PERCENT..=EF_MAX_PERCENT).contains(&ef) => {}
        Some(ef) => flags.push(QualityFlag {
            kind: FlagKind::ImplausibleEf,
            severity: Severity::Error,
            phase: None,
            slice: None,
            message: format!("LVEF {ef:.1} % outside {EF_MIN_PERCENT}-{EF_MAX_PERCENT} %"),
        }),
        None => flags.push(QualityFlag {
            kind: FlagKind::ImplausibleEf,
            severity: Severity::Error,
            phase: None,
            slice: None,
            message: "LVEF undefined: LV end-diastolic volume is 0".into(),
        }),
    }
    if !(LVEDV_MIN_ML..=LVEDV_MAX_ML).contains(&s.lv_edv_ml) {
        flags.push(QualityFlag {
            kind: FlagKind::ImplausibleVolume,
            severity: Severity::Error,
            phase: Some(s.ed_phase),
            slice: None,
            message: format!(
                "LVEDV {:.1} ml outside {LVEDV_MIN_ML}-{LVEDV_MAX_ML} ml",
                s.lv_edv_ml
            ),
        });
    }
    flags
}

/// One smooth contraction per cycle: after circular [1 2 1]/4 smoothing, the curve may have
/// only one minimum deeper than 5 % of its range. Curves with fewer than 4 phases (ED/ES
/// only) are not checked.
pub fn check_curve(curve: &[f64]) -> Vec<QualityFlag> {
    let minima = count_cycle_minima(curve);
    if minima > 1 {
        vec![QualityFlag {
            kind: FlagKind::IrregularVolumeCurve,
            severity: Severity::Warning,
            phase: None,
            slice: None,
            message: format!("LV volume curve has {minima} minima over the cycle (expected 1): check for missed slices or mistriggered phases"),
        }]
    } else {
        Vec::new()
    }
}

/// Flags for an incomplete or corrected stack, from the record its assembly kept: missing
/// phases, frames and slices are errors (the EF may come from the wrong phases or miss part of
/// the ventricle), filled and resampled images warnings.
pub fn check_stack(stack: &CineStack) -> Vec<QualityFlag> {
    let mut flags = Vec::new();
    let flag = |kind, severity, message| QualityFlag {
        kind,
        severity,
        phase: None,
        slice: None,
        message,
    };
    let (mut missing, mut filled, mut gaps, mut interpolated) = (Vec::new(), 0, 0, 0);
    let mut resampled = Vec::new();
    for c in &stack.corrections {
        match c {
            Correction::MissingPhases {
                expected,
                found,
                evidence,
                ..
            } => flags.push(flag(
                FlagKind::MissingPhases,
                Severity::Error,
                format!(
                    "only {found} of {expected} phases received ({evidence}): end-diastole or \
                     end-systole may be missing, EF and volumes unreliable"
                ),
            )),
            Correction::MissingFrame {
                slice,
                phase,
                filled: false,
                ..
            } => missing.push(format!("slice {slice} phase {phase}")),
            Correction::MissingFrame { filled: true, .. } => filled += 1,
            Correction::MissingSlice {
                count,
                filled: false,
                ..
            } => gaps += count,
            Correction::MissingSlice {
                count,
                filled: true,
                ..
            } => interpolated += count,
            Correction::Resampled { slice, .. } => resampled.push(slice.to_string()),
            _ => {}
        }
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        let more = missing.len().saturating_sub(shown.len());
        flags.push(flag(
            FlagKind::MissingFrames,
            Severity::Error,
            format!(
                "{} images missing ({}{}): the volumes of those phases lack slices, EF unreliable",
                missing.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        ));
    }
    if gaps > 0 {
        flags.push(flag(
            FlagKind::MissingSlices,
            Severity::Error,
            format!("{gaps} slice position(s) missing from the stack: volumes leave them out"),
        ));
    }
    if filled + interpolated > 0 {
        flags.push(flag(
            FlagKind::FilledImages,
            Severity::Warning,
            format!(
                "{filled} image(s) copied from the nearest phase and {interpolated} slice(s) \
                 interpolated: volumes include made-up images"
            ),
        ));
    }
    if !resampled.is_empty() {
        flags.push(flag(
            FlagKind::ResampledSlices,
            Severity::Warning,
            format!(
                "slice(s) {} on another raster, resampled onto the stack's grid",
                resampled.join(", ")
            ),
        ));
    }
    flags
}

/// Flags a series whose mean foreground confidence (mean over phases of the mean winning-class
/// probability on foreground pixels) is below `threshold`; the worst phase is named.
pub fn check_confidence(per_phase: &[f32], threshold: f32) -> Vec<QualityFlag> {
    if per_phase.is_empty() {
        return Vec::new();
    }
    let mean = per_phase.iter().sum::<f32>() / per_phase.len() as f32;
    if mean >= threshold {
        return Vec::new();
    }
    let (worst, low) =
        per_phase
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, f32::INFINITY),
                |a, (i, v)| if v < a.1 { (i, v) } else { a },
            );
    vec![QualityFlag {
        kind: FlagKind::LowConfidence,
        severity: Severity::Warning,
        phase: Some(worst),
        slice: None,
        message: format!("low model confidence: mean {mean:.2} below {threshold:.2} (lowest {low:.2} at phase {worst}): check the contours, the images may be unlike the training data"),
    }]
}

/// Number of minima of the smoothed, periodic curve, ignoring wiggles smaller than the
/// tolerance (a zig-zag walk with hysteresis, started at the global maximum so one lap counts
/// each minimum exactly once). Returns 0 for curves too short to judge.
pub fn count_cycle_minima(curve: &[f64]) -> usize {
    let n = curve.len();
    if n < 4 || curve.iter().any(|v| !v.is_finite()) {
        return 0;
    }
    let s: Vec<f64> = (0..n)
        .map(|i| 0.25 * curve[(i + n - 1) % n] + 0.5 * curve[i] + 0.25 * curve[(i + 1) % n])
        .collect();
    let (lo, hi) = s
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let tol = CURVE_TOLERANCE * (hi - lo);
    if hi - lo <= 0.0 {
        return 0;
    }
    let start = s
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > s[best] { i } else { best });
    let mut minima = 0;
    let mut descending = true;
    let mut extreme = s[start];
    for k in 1..=n {
        let v = s[(start + k) % n];
        if descending {
            if v < extreme {
                extreme = v;
            } else if v > extreme + tol {
                minima += 1;
                descending = false;
                extreme = v;
            }
        } else if v > extreme {
            extreme = v;
        } else if v < extreme - tol {
            descending = true;
            extreme = v;
        }
    }
    minima
}

#[cfg(test)]
mod tests {

    #[test]
    fn low_confidence_is_flagged_with_the_worst_phase() {
        assert!(check_confidence(&[0.9, 0.8, 0.85], 0.6).is_empty());
        assert!(check_confidence(&[], 0.6).is_empty());
        let f = check_confidence(&[0.7, 0.3, 0.5], 0.6);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].kind, f[0].phase), (FlagKind::LowConfidence, Some(1)));
        assert!(f[0].message.contains("0.50 below 0.60"), "{}", f[0].message);
    }
    use super::*;
    use crate::analysis::volumes::summarize_volumes;
    use crate::analysis::volumes::PhaseVolumes;

    fn summary(curve: &[f64]) -> CardiacSummary {
        let v: Vec<PhaseVolumes> = curve
            .iter()
            .map(|&l| PhaseVolumes {
                lv_ml: l,
                myo_ml: 50.0,
                rv_ml: l,
            })
            .collect();
        summarize_volumes(&v).unwrap()
    }

    fn cycle(n: usize, offset: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                100.0
                    + 40.0
                        * (2.0 * std::f64::consts::PI * ((i + offset) % n) as f64 / n as f64).cos()
            })
            .collect()
    }

    #[test]
    fn smooth_cycle_has_one_minimum_whatever_the_start() {
        for offset in [0, 3, 11, 19] {
            assert_eq!(count_cycle_minima(&cycle(20, offset)), 1, "offset {offset}");
        }
        let mut noisy = cycle(25, 7);
        for (i, v) in noisy.iter_mut().enumerate() {
            *v += if i % 2 == 0 { 1.0 } else { -1.0 }; // small ripple
        }
        assert_eq!(count_cycle_minima(&noisy), 1);
        assert!(check_curve(&noisy).is_empty());
    }

    #[test]
    fn double_dip_is_flagged() {
        let c: Vec<f64> = (0..24)
            .map(|i| 100.0 + 30.0 * (4.0 * std::f64::consts::PI * i as f64 / 24.0).cos())
            .collect();
        assert_eq!(count_cycle_minima(&c), 2);
        let flags = check_curve(&c);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].kind, FlagKind::IrregularVolumeCurve);
        assert_eq!(count_cycle_minima(&[1.0, 2.0]), 0);
    }

    #[test]
    fn numbers_out_of_range_are_flagged() {
        let ok = summary(&[120.0, 80.0, 50.0, 90.0]);
        assert!(check_numbers(&ok).is_empty(), "{:?}", check_numbers(&ok));
        let low_ef = summary(&[120.0, 118.0, 117.0, 119.0]);
        assert!(check_numbers(&low_ef)
            .iter()
            .any(|f| f.kind == FlagKind::ImplausibleEf));
        let high_ef = summary(&[120.0, 60.0, 10.0, 70.0]);
        assert!(check_numbers(&high_ef)
            .iter()
            .any(|f| f.kind == FlagKind::ImplausibleEf));
        let big = summary(&[600.0, 400.0, 300.0, 450.0]);
        let flags = check_numbers(&big);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].kind, FlagKind::ImplausibleVolume);
        assert!(flags[0].message.contains("600.0"));
        let small = summary(&[15.0, 10.0, 8.0, 12.0]);
        assert!(check_numbers(&small)
            .iter()
            .any(|f| f.kind == FlagKind::ImplausibleVolume));
    }

    fn stack(slices: &[(bool, bool)]) -> LabelVolume {
        let mut v = LabelVolume::new(8, 8, slices.len(), [1.5, 1.5, 10.0]);
        for (z, &(lv, myo)) in slices.iter().enumerate() {
            if lv {
                let i = v.index(3, 3, z);
                v.labels[i] = LV;
            }
            if myo {
                let i = v.index(5, 5, z);
                v.labels[i] = MYO;
            }
        }
        v
    }

    #[test]
    fn slice_checks() {
        let t = (true, true);
        let good = stack(&[(false, false), t, t, t, t, t, (false, true), (false, false)]);
        assert!(check_slices(&good, 0).is_empty(), "apex without LV is fine");
        let gap = stack(&[t, t, (false, false), t, t, t]);
        let f = check_slices(&gap, 3);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].kind, f[0].slice, f[0].phase),
            (FlagKind::SliceGap, Some(2), Some(3))
        );
        let mid = stack(&[t, t, t, (false, true), t, t, (true, false), t, t]);
        let f = check_slices(&mid, 0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].kind, f[0].slice),
            (FlagKind::MissingLvMidSlice, Some(3))
        );
        let mid_myo = stack(&[t, t, t, (true, false), t, t, t, t, t]);
        assert_eq!(
            check_slices(&mid_myo, 0)[0].kind,
            FlagKind::MissingMyoMidSlice
        );
        let empty = stack(&[(false, false); 3]);
        assert_eq!(check_slices(&empty, 1)[0].kind, FlagKind::NoLeftVentricle);
    }

    #[test]
    fn check_combines_and_serialises() {
        let phases = vec![
            stack(&[(true, true); 3]),
            stack(&[(true, true), (false, false), (true, true)]),
        ];
        let s = summary(&[100.0, 20.0]);
        let flags = check(&phases, &s);
        assert!(flags
            .iter()
            .any(|f| f.kind == FlagKind::SliceGap && f.phase == Some(1)));
        let json = serde_json::to_string(&flags).unwrap();
        assert!(json.contains("\"slice_gap\""), "{json}");
    }
}
