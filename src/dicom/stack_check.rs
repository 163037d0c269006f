//! What cannot be one cine stack, found while a series is assembled and before any number is
//! computed. A receiver that turns such a series into slices x phases reports a confident but
//! wrong EF (a fake 1 slice x 132 phase cine, two acquisitions averaged into one), so these
//! series are refused with a [`StackDefect`] naming what is wrong. The rules:
//!
//! - **One position.** Every image of the series lies at one slice position and the images
//!   outnumber the distinct trigger times at least twice over (on average each phase is there
//!   twice or more): the images of several slices carry one ImagePositionPatient.
//! - **Too many phases.** A slice has more phases than CardiacNumberOfImages says the cycle has
//!   or, when the header does not say, more than [`MAX_PHASES`] (no clinical cine has more).
//! - **Mixed rasters within a slice.** The phases of one slice position differ in matrix size,
//!   pixel spacing or in-plane axes. One cine slice is one acquisition on one raster; which
//!   header is right cannot be known, and resampling would give a different answer depending on
//!   which frame is taken as the reference.
//! - **A slice that does not cover the stack's grid.** A whole slice on another raster is
//!   resampled onto the majority grid (recorded as a correction and flagged) only when at most
//!   [`MAX_PADDED_PERCENT`] of the grid would be zero padding.
//! - **Two acquisitions under one SeriesInstanceUID.** Two orientations each with more than one
//!   slice position; two frames of reference each with more than one slice position (one UID per
//!   image, as anonymised public data has, is not a mix); two CardiacNumberOfImages values.

use std::collections::BTreeMap;

use thiserror::Error;

use super::geometry::{angle_deg, PlaneGrid};
use super::stack::{dist, Placed};

/// More phases than this at one slice, when CardiacNumberOfImages is absent, is not one
/// cardiac cycle (clinical cines have 16 to 50).
pub const MAX_PHASES: usize = 60;
/// A slice resampled onto the stack's grid may leave at most this share (percent) of the grid
/// without data (zero padding); beyond it the slice shows another field of view.
pub const MAX_PADDED_PERCENT: f64 = 25.0;
/// Trigger times closer than this (ms) are one phase when counting repeats.
const SAME_TIME_MS: f64 = 0.5;

/// Why a series cannot be one cine stack.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StackDefect {
    /// Every image at one position, each phase there several times.
    #[error(
        "all {images} images lie at one slice position but have only {distinct_times} distinct \
         trigger times (one repeated {max_repeat} times): images of several slices share one \
         ImagePositionPatient"
    )]
    SinglePosition {
        /// Images at the position.
        images: usize,
        /// Distinct trigger times among them (0 when none has one).
        distinct_times: usize,
        /// Most images sharing one trigger time.
        max_repeat: usize,
    },
    /// More phases at one slice than one cycle can have.
    #[error("slice {slice} (at {offset_mm:.2} mm) has {phases} phases, more than {limit} ({why})")]
    TooManyPhases {
        /// Slice index, ascending along the normal.
        slice: usize,
        /// Position of the slice along the normal (mm).
        offset_mm: f64,
        /// Phases found there.
        phases: usize,
        /// The most allowed.
        limit: usize,
        /// Where the limit comes from.
        why: &'static str,
    },
    /// The phases of one slice lie on different rasters.
    #[error("slice {slice} (at {offset_mm:.2} mm) mixes images on different rasters: {detail}")]
    MixedRasterInSlice {
        /// Slice index, ascending along the normal.
        slice: usize,
        /// Position of the slice along the normal (mm).
        offset_mm: f64,
        /// The rasters and how many frames each.
        detail: String,
    },
    /// A slice on another raster that does not cover the stack's grid.
    #[error(
        "slice {slice} (at {offset_mm:.2} mm) covers only {covered:.0} % of the stack's grid \
         ({detail}): resampling would pad the rest with zeros",
        covered = 100.0 - padded_percent
    )]
    RasterMismatch {
        /// Slice index, ascending along the normal.
        slice: usize,
        /// Position of the slice along the normal (mm).
        offset_mm: f64,
        /// Share of the grid the slice does not cover (percent).
        padded_percent: f64,
        /// How its raster differs.
        detail: String,
    },
    /// Two stacks at different angles.
    #[error(
        "{stacks} orientations with several slice positions each ({angle_deg:.1} degrees apart): \
         two acquisitions under one SeriesInstanceUID"
    )]
    MixedOrientations {
        /// Orientation groups with more than one slice position.
        stacks: usize,
        /// Angle between the normals of the two largest (degrees).
        angle_deg: f64,
    },
    /// Two frames of reference, each a stack of its own.
    #[error(
        "{count} frames of reference with several slice positions each: two acquisitions under \
         one SeriesInstanceUID"
    )]
    MixedFrameOfReference {
        /// Frames of reference holding more than one slice position.
        count: usize,
    },
    /// The images disagree on how many phases the cycle has.
    #[error(
        "CardiacNumberOfImages differs between images ({values:?}): two acquisitions under one \
         SeriesInstanceUID"
    )]
    MixedPhaseCounts {
        /// The values found, ascending.
        values: Vec<i64>,
    },
}

/// Refuses a series in which two frames of reference each hold more than one slice position.
pub(super) fn check_frames_of_reference(series: &[Placed], tol_mm: f64) -> Result<(), StackDefect> {
    let mut by_for: BTreeMap<&str, Vec<[f64; 3]>> = BTreeMap::new();
    for p in series {
        let Some(uid) = p.inst.ids.frame_of_reference_uid.as_deref() else {
            continue;
        };
        let seen = by_for.entry(uid).or_default();
        if !seen.iter().any(|q| dist(*q, p.grid.position) < tol_mm) {
            seen.push(p.grid.position);
        }
    }
    let count = by_for.values().filter(|v| v.len() > 1).count();
    if count > 1 {
        return Err(StackDefect::MixedFrameOfReference { count });
    }
    Ok(())
}

/// Refuses a series with more than one orientation group (`clusters`, largest first) that has
/// more than one slice position; `positions` counts the distinct positions of a group.
pub(super) fn check_orientations(
    clusters: &[Vec<Placed>],
    positions: impl Fn(&[Placed]) -> usize,
) -> Result<(), StackDefect> {
    let stacks: Vec<&Vec<Placed>> = clusters.iter().filter(|c| positions(c) > 1).collect();
    if let [a, b, ..] = stacks.as_slice() {
        let angle = match (a.first(), b.first()) {
            (Some(p), Some(q)) => angle_deg(p.normal, q.normal),
            _ => 0.0,
        };
        return Err(StackDefect::MixedOrientations {
            stacks: stacks.len(),
            angle_deg: angle,
        });
    }
    Ok(())
}

/// The phase count the images claim (CardiacNumberOfImages, when they agree and it is
/// positive); refuses images that disagree.
pub(super) fn expected_phases(cluster: &[Placed]) -> Result<Option<usize>, StackDefect> {
    let mut values: Vec<i64> = cluster
        .iter()
        .filter_map(|p| p.inst.cardiac_number_of_images)
        .filter(|&n| n > 0)
        .collect();
    values.sort_unstable();
    values.dedup();
    match values.as_slice() {
        [] => Ok(None),
        [n] => Ok(usize::try_from(*n).ok()),
        _ => Err(StackDefect::MixedPhaseCounts { values }),
    }
}

/// Refuses a stack whose only slice position holds each trigger time twice or more on average
/// (a single re-sent image passes). `group` is every image at that position, before duplicates
/// are dropped.
pub(super) fn check_single_position(group: &[Placed]) -> Result<(), StackDefect> {
    let mut times: Vec<f64> = group.iter().filter_map(|p| p.inst.trigger_time).collect();
    times.sort_by(f64::total_cmp);
    let mut counts: Vec<usize> = Vec::new();
    let mut last: Option<f64> = None;
    for t in times {
        match (last, counts.last_mut()) {
            (Some(l), Some(n)) if t - l < SAME_TIME_MS => *n += 1,
            _ => {
                counts.push(1);
                last = Some(t);
            }
        }
    }
    let distinct = counts.len();
    let max_repeat = counts.iter().copied().max().unwrap_or(0);
    // Without trigger times the phase count limit applies instead.
    if distinct > 0 && group.len() >= 2 * distinct {
        return Err(StackDefect::SinglePosition {
            images: group.len(),
            distinct_times: distinct,
            max_repeat,
        });
    }
    Ok(())
}

/// Refuses a slice with more phases than the cycle can have.
pub(super) fn check_phase_count(
    slice: usize,
    offset_mm: f64,
    phases: usize,
    expected: Option<usize>,
) -> Result<(), StackDefect> {
    let (limit, why) = match expected {
        Some(n) => (n, "CardiacNumberOfImages"),
        None => (MAX_PHASES, "no cardiac cycle has more"),
    };
    if phases > limit {
        return Err(StackDefect::TooManyPhases {
            slice,
            offset_mm,
            phases,
            limit,
            why,
        });
    }
    Ok(())
}

/// Refuses a slice whose frames lie on more than one raster.
pub(super) fn check_slice_raster(
    slice: usize,
    offset_mm: f64,
    frames: &[Placed],
) -> Result<(), StackDefect> {
    let mut rasters: Vec<(&PlaneGrid, usize)> = Vec::new();
    for p in frames {
        match rasters.iter_mut().find(|(g, _)| g.same_raster(&p.grid)) {
            Some((_, n)) => *n += 1,
            None => rasters.push((&p.grid, 1)),
        }
    }
    if rasters.len() > 1 {
        let detail = rasters
            .iter()
            .map(|(g, n)| format!("{n} frames {}", describe_raster(g)))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(StackDefect::MixedRasterInSlice {
            slice,
            offset_mm,
            detail,
        });
    }
    Ok(())
}

/// Size, spacing and in-plane axes of a raster, for messages.
pub(super) fn describe_raster(g: &PlaneGrid) -> String {
    let o = g.orientation.map(|v| (v * 1000.0).round() / 1000.0);
    format!(
        "{}x{} at {:.3}x{:.3} mm, axes {:?}",
        g.cols, g.rows, g.pixel_spacing[1], g.pixel_spacing[0], o
    )
}

/// Phases missing from a stack with `found` phases whose trigger times are `times`: compared
/// with CardiacNumberOfImages when the header gives it, else from gaps in the trigger times
/// (a gap of more than 1.5 times the usual step). Returns (expected, evidence).
pub(super) fn missing_phases(
    found: usize,
    times: &[Option<f64>],
    expected: Option<usize>,
) -> Option<(usize, &'static str)> {
    if let Some(n) = expected {
        return (n > found).then_some((n, "CardiacNumberOfImages"));
    }
    let t: Vec<f64> = times.iter().flatten().copied().collect();
    let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.len() < 2 {
        return None;
    }
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let step = sorted[sorted.len() / 2];
    if step <= SAME_TIME_MS {
        return None;
    }
    let missing: usize = gaps
        .iter()
        .filter(|&&g| g > 1.5 * step)
        .map(|g| ((g / step).round() as usize).saturating_sub(1))
        .sum();
    (missing > 0).then_some((found + missing, "gaps in the trigger times"))
}
