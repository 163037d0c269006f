//! Builds one `CineStack` from the parallel instances of one series: slice clustering along
//! the normal, duplicate removal, resampling onto the majority grid, phase assignment by trigger
//! time, spacing from the modal gap, and missing slice/phase/frame detection (filled only on
//! request). What cannot be one stack is refused with the `stack_check` rules.

use super::geometry::{angle_deg, dot, outside_percent, resample, slice_normal, PlaneGrid};
use super::stack::{
    dist, split_by_normal, AssembleOptions, CineStack, Correction, Frame, Placed, Slice, SourceRef,
};
use super::stack_check::{
    check_frames_of_reference, check_orientations, check_phase_count, check_single_position,
    check_slice_raster, expected_phases, missing_phases, StackDefect, MAX_PADDED_PERCENT,
};

/// Positions closer than this (mm) are the same acquisition position.
const SAME_POSITION_MM: f64 = 0.01;
/// Trigger times closer than this (ms) are the same phase.
const SAME_TIME_MS: f64 = 0.5;

/// The stack of one series (instances in canonical order): lone slices at another angle are
/// dropped and logged on it; a series holding two acquisitions (two orientations or frames of
/// reference with several slice positions each) is refused.
pub(super) fn build_series(
    series: Vec<Placed>,
    opts: &AssembleOptions,
) -> Result<Option<CineStack>, StackDefect> {
    let tol = opts.duplicate_tolerance_mm;
    check_frames_of_reference(&series, tol)?;
    let mut clusters = split_by_normal(series, opts.parallel_tolerance_deg);
    check_orientations(&clusters, |c| distinct_positions(c, tol))?;
    // At most one group has several positions: that is the stack (else the largest group).
    let main_at = clusters
        .iter()
        .position(|c| distinct_positions(c, tol) > 1)
        .unwrap_or(0);
    if clusters.is_empty() {
        return Ok(None);
    }
    let main = clusters.remove(main_at);
    let main_normal = main.first().map(|p| p.normal).unwrap_or([0.0, 0.0, 1.0]);
    let mut dropped = Vec::new();
    for c in clusters {
        if let Some(first) = c.first() {
            dropped.push(Correction::NonParallelSlice {
                series_uid: first.inst.ids.series_uid.clone().unwrap_or_default(),
                offset_mm: dot(first.grid.position, main_normal),
                angle_deg: angle_deg(first.normal, main_normal),
                dropped_instances: c.iter().map(sop).collect(),
            });
        }
    }
    build_stack(main, opts, dropped)
}

fn sop(p: &Placed) -> String {
    let uid = p
        .inst
        .ids
        .sop_instance_uid
        .clone()
        .unwrap_or_else(|| p.inst.path.display().to_string());
    if p.inst.frame > 0 {
        format!("{uid}#{}", p.inst.frame + 1)
    } else {
        uid
    }
}

fn distinct_positions(c: &[Placed], tol: f64) -> usize {
    let mut seen: Vec<[f64; 3]> = Vec::new();
    for p in c {
        if !seen.iter().any(|q| dist(*q, p.grid.position) < tol) {
            seen.push(p.grid.position);
        }
    }
    seen.len()
}

/// The raster most frames share (size, spacing, in-plane axes): the grid every slice ends on.
/// On a tie the smaller field of view wins, so the other slices cover it when resampled.
fn majority_grid(c: &[Placed]) -> Option<PlaneGrid> {
    let mut groups: Vec<(PlaneGrid, usize)> = Vec::new();
    for p in c {
        match groups.iter_mut().find(|(g, _)| g.same_raster(&p.grid)) {
            Some((_, n)) => *n += 1,
            None => groups.push((p.grid.clone(), 1)),
        }
    }
    let fov =
        |g: &PlaneGrid| g.rows as f64 * g.pixel_spacing[0] * g.cols as f64 * g.pixel_spacing[1];
    groups
        .into_iter()
        .max_by(|(ga, na), (gb, nb)| na.cmp(nb).then_with(|| fov(gb).total_cmp(&fov(ga))))
        .map(|(g, _)| g)
}

fn build_stack(
    cluster: Vec<Placed>,
    opts: &AssembleOptions,
    mut log: Vec<Correction>,
) -> Result<Option<CineStack>, StackDefect> {
    let first = cluster.first().map(|p| p.inst.clone());
    let reference = majority_grid(&cluster);
    let (Some(first), Some(reference)) = (first, reference) else {
        return Ok(None);
    };
    let expected = expected_phases(&cluster)?;
    let series_uid = first.ids.series_uid.clone().unwrap_or_default();
    let normal = slice_normal(&reference.orientation).unwrap_or([0.0, 0.0, 1.0]);
    let offset = |p: &Placed| dot(p.grid.position, normal);
    // 1-2. Slices along the normal, one acquisition and raster each.
    let slices = slice_groups(cluster, opts, expected, &series_uid, &mut log, offset)?;

    // 3. Resample onto the majority grid where needed.
    let mut built: Vec<Timed> = Vec::new();
    for (i, frames) in slices.into_iter().enumerate() {
        built.extend(onto_grid(
            i,
            frames,
            &reference,
            normal,
            &series_uid,
            &mut log,
        )?);
    }

    // 4. Phases by trigger time.
    let n_phases = built.iter().map(|(s, _)| s.frames.len()).max().unwrap_or(0);
    let phase_times = reference_times(&built, n_phases);
    let mut slices: Vec<Slice> = Vec::new();
    for (i, (mut slice, times)) in built.into_iter().enumerate() {
        if slice.frames.len() < n_phases {
            slice.frames = assign_phases(std::mem::take(&mut slice.frames), &times, &phase_times);
        }
        for (p, f) in slice.frames.clone().iter().enumerate() {
            if f.is_none() {
                let filled = opts.fill_missing && fill_frame(&mut slice.frames, p);
                log.push(Correction::MissingFrame {
                    series_uid: series_uid.clone(),
                    slice: i,
                    phase: p,
                    filled,
                });
            }
        }
        slices.push(slice);
    }
    if let Some((expected, evidence)) = missing_phases(n_phases, &phase_times, expected) {
        log.push(Correction::MissingPhases {
            series_uid: series_uid.clone(),
            expected,
            found: n_phases,
            evidence: evidence.into(),
        });
    }

    // 5. Spacing from the modal gap; missing slices.
    let gaps: Vec<f64> = slices
        .windows(2)
        .map(|w| w[1].offset_mm - w[0].offset_mm)
        .collect();
    let header = first.geometry.spacing_between_slices;
    let spacing = modal(&gaps)
        .or(header)
        .or(first.geometry.slice_thickness)
        .unwrap_or(0.0);
    if !gaps.is_empty() && header.is_none_or(|h| (h - spacing).abs() > 0.01) {
        log.push(Correction::SpacingFromPositions {
            series_uid: series_uid.clone(),
            spacing_mm: spacing,
            header_mm: header,
        });
    }
    if spacing > 0.0 {
        slices = handle_missing_slices(slices, spacing, opts.fill_missing, &series_uid, &mut log);
    }

    let grid = PlaneGrid {
        position: slices
            .first()
            .map(|s| s.position)
            .unwrap_or(reference.position),
        ..reference
    };
    Ok(Some(CineStack {
        ids: first.ids.clone(),
        grid,
        normal,
        slice_spacing: spacing,
        slice_thickness: first.geometry.slice_thickness,
        slices,
        phase_times,
        manufacturer: first.manufacturer.clone(),
        field_strength: first.field_strength,
        corrections: log,
    }))
}

/// Steps 1 and 2 of [`build_stack`]: the images clustered along the normal (`offset`), one
/// acquisition per position and one frame per trigger time, duplicates logged; refuses a
/// single crowded position, a slice on two rasters, and more phases than the cycle has.
fn slice_groups(
    cluster: Vec<Placed>,
    opts: &AssembleOptions,
    expected: Option<usize>,
    series_uid: &str,
    log: &mut Vec<Correction>,
    offset: impl Fn(&Placed) -> f64,
) -> Result<Vec<Vec<Placed>>, StackDefect> {
    // 1. Cluster along the normal.
    let mut sorted = cluster;
    sorted.sort_by(|a, b| offset(a).total_cmp(&offset(b)));
    let mut positions: Vec<Vec<Placed>> = Vec::new();
    for p in sorted {
        match positions.last_mut() {
            Some(cur)
                if cur
                    .first()
                    .is_some_and(|q| offset(&p) - offset(q) < opts.duplicate_tolerance_mm) =>
            {
                cur.push(p)
            }
            _ => positions.push(vec![p]),
        }
    }

    // 2. One acquisition per position, one frame per trigger time, one raster per slice.
    if let [only] = positions.as_slice() {
        check_single_position(only)?;
    }
    let mut slices = Vec::new();
    for group in positions {
        let (kept, dropped) = dedupe(group);
        let Some(head) = kept.first() else { continue };
        check_slice_raster(slices.len(), offset(head), &kept)?;
        check_phase_count(slices.len(), offset(head), kept.len(), expected)?;
        if !dropped.is_empty() {
            log.push(Correction::DuplicateSlice {
                series_uid: series_uid.into(),
                offset_mm: round3(offset(head)),
                dropped_instances: dropped,
            });
        }
        slices.push(kept);
    }
    Ok(slices)
}

/// A slice on the stack's grid with the trigger time of each of its frames.
type Timed = (Slice, Vec<Option<f64>>);

/// Step 3 of [`build_stack`]: slice `i` on the stack's grid, resampled (and logged) when its
/// raster differs; refuses a slice that would be more than `MAX_PADDED_PERCENT` zero padding.
fn onto_grid(
    i: usize,
    frames: Vec<Placed>,
    reference: &PlaneGrid,
    normal: [f64; 3],
    series_uid: &str,
    log: &mut Vec<Correction>,
) -> Result<Option<Timed>, StackDefect> {
    let Some(head) = frames.first() else {
        return Ok(None);
    };
    let d = dot(head.grid.position, normal);
    let ref_offset = dot(reference.position, normal);
    let target = if head.grid.same_raster(reference) {
        head.grid.clone()
    } else {
        let mut t = reference.clone();
        for ((tp, rp), n) in t.position.iter_mut().zip(reference.position).zip(normal) {
            *tp = rp + (d - ref_offset) * n;
        }
        let reason = resample_reason(&head.grid, reference);
        let padded_percent = outside_percent(&head.grid, &t);
        if padded_percent > MAX_PADDED_PERCENT {
            return Err(StackDefect::RasterMismatch {
                slice: i,
                offset_mm: d,
                padded_percent,
                detail: reason,
            });
        }
        log.push(Correction::Resampled {
            series_uid: series_uid.into(),
            slice: i,
            reason,
            padded_percent: (padded_percent * 10.0).round() / 10.0,
        });
        t
    };
    let times = frames.iter().map(|p| p.inst.trigger_time).collect();
    let frames = frames
        .into_iter()
        .map(|p| {
            let pixels = if p.grid.same_raster(&target) {
                p.inst.pixels
            } else {
                resample(&p.inst.pixels, &p.grid, &target)
            };
            Some(Frame {
                pixels,
                trigger_time: p.inst.trigger_time,
                source: Some(SourceRef {
                    sop_instance_uid: p.inst.ids.sop_instance_uid.clone().unwrap_or_default(),
                    sop_class_uid: p.inst.ids.sop_class_uid.clone().unwrap_or_default(),
                    path: p.inst.path.clone(),
                    frame: p.inst.frame,
                }),
            })
        })
        .collect();
    Ok(Some((
        Slice {
            position: target.position,
            offset_mm: d,
            frames,
        },
        times,
    )))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Keep one acquisition at a position (the one with most frames, then the latest), and one
/// frame per trigger time (the latest instance). Returns kept frames sorted by time, and the
/// identifiers of everything dropped.
fn dedupe(group: Vec<Placed>) -> (Vec<Placed>, Vec<String>) {
    let mut subs: Vec<Vec<Placed>> = Vec::new();
    for p in group {
        match subs.iter_mut().find(|s| {
            s.first()
                .is_some_and(|q| dist(q.grid.position, p.grid.position) < SAME_POSITION_MM)
        }) {
            Some(s) => s.push(p),
            None => subs.push(vec![p]),
        }
    }
    let latest = |s: &Vec<Placed>| s.iter().filter_map(|p| p.inst.instance_number).max();
    subs.sort_by_key(|s| std::cmp::Reverse((s.len(), latest(s))));
    let mut subs = subs.into_iter();
    let mut kept = subs.next().unwrap_or_default();
    let mut dropped: Vec<String> = subs.flatten().map(|p| sop(&p)).collect();
    let key = |p: &Placed| {
        (
            p.inst.trigger_time.unwrap_or(f64::NAN),
            p.inst.instance_number.unwrap_or(0),
            p.inst.frame,
        )
    };
    kept.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        ka.0.total_cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.cmp(&kb.2))
    });
    // The same image sent twice (same SOP instance and frame) is one image.
    let mut seen = std::collections::HashSet::new();
    let (kept, repeats): (Vec<Placed>, Vec<Placed>) = kept.into_iter().partition(|p| {
        p.inst.ids.sop_instance_uid.is_none()
            || seen.insert((p.inst.ids.sop_instance_uid.clone(), p.inst.frame))
    });
    dropped.extend(repeats.iter().map(sop));
    let mut out: Vec<Placed> = Vec::new();
    for p in kept {
        let same_time = match (
            out.last().and_then(|q| q.inst.trigger_time),
            p.inst.trigger_time,
        ) {
            (Some(a), Some(b)) => (a - b).abs() < SAME_TIME_MS,
            _ => false,
        };
        if same_time {
            // Sorted by instance number within a time: the later instance replaces the earlier.
            if let Some(prev) = out.pop() {
                dropped.push(sop(&prev));
            }
        }
        out.push(p);
    }
    (out, dropped)
}

fn resample_reason(src: &PlaneGrid, dst: &PlaneGrid) -> String {
    let mut why = Vec::new();
    if (src.rows, src.cols) != (dst.rows, dst.cols) {
        why.push(format!(
            "size {}x{} vs {}x{}",
            src.rows, src.cols, dst.rows, dst.cols
        ));
    }
    if src
        .pixel_spacing
        .iter()
        .zip(&dst.pixel_spacing)
        .any(|(a, b)| (a - b).abs() > 1e-3)
    {
        why.push(format!(
            "spacing {:?} vs {:?}",
            src.pixel_spacing, dst.pixel_spacing
        ));
    }
    let (sr, dr) = (
        [src.orientation[0], src.orientation[1], src.orientation[2]],
        [dst.orientation[0], dst.orientation[1], dst.orientation[2]],
    );
    let rot = angle_deg(sr, dr);
    if rot > 0.05 {
        why.push(format!("rotated in plane by {rot:.1} degrees"));
    }
    if why.is_empty() {
        why.push("axes flipped".into());
    }
    why.join(", ")
}

/// Median trigger time of each phase over the slices that have all phases.
fn reference_times(built: &[Timed], n: usize) -> Vec<Option<f64>> {
    (0..n)
        .map(|p| {
            let mut t: Vec<f64> = built
                .iter()
                .filter(|(s, _)| s.frames.len() == n)
                .filter_map(|(_, ts)| ts.get(p).copied().flatten())
                .collect();
            t.sort_by(f64::total_cmp);
            t.get(t.len() / 2).copied()
        })
        .collect()
}

/// Place the frames of an incomplete slice into phase slots by nearest reference time, keeping
/// their order; without times, fill from the start.
fn assign_phases(
    frames: Vec<Option<Frame>>,
    times: &[Option<f64>],
    refs: &[Option<f64>],
) -> Vec<Option<Frame>> {
    let mut out: Vec<Option<Frame>> = vec![None; refs.len()];
    let mut next = 0usize;
    for (i, f) in frames.into_iter().enumerate() {
        let remaining = times.len() - i; // frames still to place, this one included
        let last_allowed = refs.len().saturating_sub(remaining);
        let slot = match times.get(i).copied().flatten() {
            Some(t) => (next..=last_allowed.max(next))
                .min_by(|&a, &b| {
                    let da = refs
                        .get(a)
                        .copied()
                        .flatten()
                        .map_or(f64::MAX, |r| (r - t).abs());
                    let db = refs
                        .get(b)
                        .copied()
                        .flatten()
                        .map_or(f64::MAX, |r| (r - t).abs());
                    da.total_cmp(&db)
                })
                .unwrap_or(next),
            None => next,
        };
        if let Some(o) = out.get_mut(slot) {
            *o = f;
        }
        next = slot + 1;
    }
    out
}

/// Copy the temporally nearest present frame into slot `p` (cine is periodic: wrap around).
fn fill_frame(frames: &mut [Option<Frame>], p: usize) -> bool {
    let n = frames.len();
    for d in 1..n {
        for q in [(p + d) % n, (p + n - d % n) % n] {
            if let Some(Some(f)) = frames.get(q) {
                let mut copy = f.clone();
                copy.source = None;
                if let Some(slot) = frames.get_mut(p) {
                    *slot = Some(copy);
                }
                return true;
            }
        }
    }
    false
}

/// Most frequent gap (rounded to 0.01 mm); ties go to the smaller gap.
fn modal(gaps: &[f64]) -> Option<f64> {
    let mut counts: Vec<(i64, usize)> = Vec::new();
    for g in gaps {
        let k = (g * 100.0).round() as i64;
        match counts.iter_mut().find(|(v, _)| *v == k) {
            Some((_, n)) => *n += 1,
            None => counts.push((k, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts.first().map(|(k, _)| *k as f64 / 100.0)
}

fn handle_missing_slices(
    slices: Vec<Slice>,
    spacing: f64,
    fill: bool,
    series_uid: &str,
    log: &mut Vec<Correction>,
) -> Vec<Slice> {
    let mut out: Vec<Slice> = Vec::new();
    for (original, s) in slices.into_iter().enumerate() {
        if let Some(prev) = out.last() {
            let gap = s.offset_mm - prev.offset_mm;
            let missing = ((gap / spacing).round() as i64 - 1).max(0) as usize;
            if gap > 1.5 * spacing && missing > 0 {
                log.push(Correction::MissingSlice {
                    series_uid: series_uid.into(),
                    after_slice: original.saturating_sub(1),
                    count: missing,
                    filled: fill,
                });
                if fill {
                    let prev = prev.clone();
                    for k in 1..=missing {
                        out.push(interpolate(&prev, &s, k as f64 / (missing + 1) as f64));
                    }
                }
            }
        }
        out.push(s);
    }
    out
}

fn interpolate(a: &Slice, b: &Slice, w: f64) -> Slice {
    let mix = |x: f64, y: f64| x * (1.0 - w) + y * w;
    let position = [
        mix(a.position[0], b.position[0]),
        mix(a.position[1], b.position[1]),
        mix(a.position[2], b.position[2]),
    ];
    let frames = a
        .frames
        .iter()
        .zip(&b.frames)
        .map(|(fa, fb)| match (fa, fb) {
            (Some(fa), Some(fb)) => Some(Frame {
                pixels: fa
                    .pixels
                    .iter()
                    .zip(&fb.pixels)
                    .map(|(x, y)| mix(*x as f64, *y as f64) as f32)
                    .collect(),
                trigger_time: fa.trigger_time,
                source: None,
            }),
            _ => None,
        })
        .collect();
    Slice {
        position,
        offset_mm: mix(a.offset_mm, b.offset_mm),
        frames,
    }
}
