//! Instances -> `CineStack` (slices x phases), with the corrections that public and clinical
//! data need before a network can use it. Slices are ordered by the projection of
//! ImagePositionPatient on the slice normal (never SliceLocation, which on the Sunnybrook GE
//! series steps 6.72 mm while the true spacing is 10 mm); phases by TriggerTime. Every
//! correction is recorded as one machine-readable line so a report can say exactly what was
//! changed and why. A series that cannot be one cine stack is refused with a typed
//! [`StackDefect`] (rules in `stack_check`), and instances are put in a canonical order first so
//! that the outcome never depends on the order the files were read in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::DicomError;
use super::geometry::{angle_deg, dot, slice_normal, PlaneGrid, Vec3};
use super::instance::{Identifiers, Instance};
pub use super::stack_check::StackDefect;

/// Knobs for assembly; the defaults follow what the paper's authors did by hand.
#[derive(Debug, Clone)]
pub struct AssembleOptions {
    /// Fill missing frames (from the temporally nearest phase of the same slice) and missing
    /// slices (linear interpolation between neighbours). Off by default: filling invents data.
    pub fill_missing: bool,
    /// Slice positions closer than this (mm) along the normal are the same slice.
    pub duplicate_tolerance_mm: f64,
    /// Normals further apart than this (degrees) are not parallel.
    pub parallel_tolerance_deg: f64,
}

impl Default for AssembleOptions {
    fn default() -> Self {
        AssembleOptions {
            fill_missing: false,
            duplicate_tolerance_mm: 1.0,
            parallel_tolerance_deg: 1.0,
        }
    }
}

/// One correction applied while assembling; serialised as one JSON line in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "correction", rename_all = "snake_case")]
pub enum Correction {
    /// The same stack was acquired more than once in a study; the latest complete one is kept.
    RepeatedSeries {
        study_uid: String,
        kept_series_uid: String,
        dropped_series_uid: String,
    },
    /// Several acquisitions at one slice position (< tolerance apart); one kept.
    DuplicateSlice {
        series_uid: String,
        offset_mm: f64,
        dropped_instances: Vec<String>,
    },
    /// A slice whose normal is not parallel to the stack's; dropped.
    NonParallelSlice {
        series_uid: String,
        offset_mm: f64,
        angle_deg: f64,
        dropped_instances: Vec<String>,
    },
    /// A slice with another size, spacing or in-plane rotation, resampled onto the majority grid;
    /// `padded_percent` of the grid lay outside the slice's image and is zero.
    Resampled {
        series_uid: String,
        slice: usize,
        reason: String,
        padded_percent: f64,
    },
    /// Slices missing from an otherwise regular spacing.
    MissingSlice {
        series_uid: String,
        after_slice: usize,
        count: usize,
        filled: bool,
    },
    /// Fewer phases than the series says the cycle has (`evidence`: CardiacNumberOfImages, or
    /// gaps in the trigger times): end-diastole or end-systole may be among the missing ones.
    MissingPhases {
        series_uid: String,
        expected: usize,
        found: usize,
        evidence: String,
    },
    /// A phase missing at one slice.
    MissingFrame {
        series_uid: String,
        slice: usize,
        phase: usize,
        filled: bool,
    },
    /// Slice spacing taken from the modal gap of positions because the header disagrees.
    SpacingFromPositions {
        series_uid: String,
        spacing_mm: f64,
        header_mm: Option<f64>,
    },
}

impl Correction {
    /// The correction in words, for the HTML report and the terminal.
    pub fn describe(&self) -> String {
        match self {
            Correction::RepeatedSeries {
                dropped_series_uid, ..
            } => format!(
                "repeated series {} dropped; the latest complete one kept",
                crate::text::printable(dropped_series_uid)
            ),
            Correction::DuplicateSlice {
                offset_mm,
                dropped_instances,
                ..
            } => format!(
                "{} duplicate images at {offset_mm:.1} mm dropped",
                dropped_instances.len()
            ),
            Correction::NonParallelSlice {
                offset_mm,
                angle_deg,
                dropped_instances,
                ..
            } => format!(
                "{} images at {offset_mm:.1} mm dropped: {angle_deg:.1} degrees off the stack",
                dropped_instances.len()
            ),
            Correction::Resampled {
                slice,
                reason,
                padded_percent,
                ..
            } => format!(
                "slice {slice} resampled onto the stack's grid ({reason}; {padded_percent:.1} % \
                 zero padding)"
            ),
            Correction::MissingSlice {
                after_slice,
                count,
                filled,
                ..
            } => format!(
                "{count} slice(s) missing after slice {after_slice}{}",
                if *filled {
                    ", interpolated"
                } else {
                    ", not filled"
                }
            ),
            Correction::MissingPhases {
                expected,
                found,
                evidence,
                ..
            } => format!("{found} of {expected} phases present ({evidence})"),
            Correction::MissingFrame {
                slice,
                phase,
                filled,
                ..
            } => format!(
                "image of slice {slice}, phase {phase} missing{}",
                if *filled {
                    ", copied from the nearest phase"
                } else {
                    ", not filled"
                }
            ),
            Correction::SpacingFromPositions {
                spacing_mm,
                header_mm,
                ..
            } => match header_mm {
                Some(h) => {
                    format!("slice spacing {spacing_mm:.2} mm from positions (header {h:.2} mm)")
                }
                None => format!("slice spacing {spacing_mm:.2} mm from positions (none in header)"),
            },
        }
    }

    /// The correction as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Which stored image a frame came from (for SEG references and write-back).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRef {
    /// SOPInstanceUID of the file.
    pub sop_instance_uid: String,
    /// SOPClassUID of the file.
    pub sop_class_uid: String,
    /// The file.
    pub path: PathBuf,
    /// Frame number within the file (0-based).
    pub frame: u32,
}

/// One image of the stack.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Pixels on the stack's grid, row-major.
    pub pixels: Vec<f32>,
    /// TriggerTime (ms), when known.
    pub trigger_time: Option<f64>,
    /// The source image; `None` for filled frames.
    pub source: Option<SourceRef>,
}

/// One slice position with all its phases.
#[derive(Debug, Clone)]
pub struct Slice {
    /// ImagePositionPatient of the slice on the stack grid.
    pub position: Vec3,
    /// Projection of `position` on the stack normal (mm).
    pub offset_mm: f64,
    /// One entry per phase; `None` where the frame is missing and was not filled.
    pub frames: Vec<Option<Frame>>,
}

/// A short-axis cine: slices (ordered along the normal) x phases (ordered by trigger time).
#[derive(Debug, Clone)]
pub struct CineStack {
    /// Patient/study/series identity (SOP fields are those of the first source image).
    pub ids: Identifiers,
    /// Grid shared by all slices (position is that of slice 0).
    pub grid: PlaneGrid,
    /// Unit normal (row x column direction).
    pub normal: Vec3,
    /// Slice spacing from the modal gap of positions (mm).
    pub slice_spacing: f64,
    /// SliceThickness from the header.
    pub slice_thickness: Option<f64>,
    /// Slices, ascending along the normal.
    pub slices: Vec<Slice>,
    /// Representative trigger time of each phase (median over slices).
    pub phase_times: Vec<Option<f64>>,
    /// Manufacturer of the scanner.
    pub manufacturer: Option<String>,
    /// Field strength (T).
    pub field_strength: Option<f64>,
    /// Corrections applied, in order.
    pub corrections: Vec<Correction>,
}

impl CineStack {
    /// Number of slices.
    pub fn n_slices(&self) -> usize {
        self.slices.len()
    }
    /// Number of phases.
    pub fn n_phases(&self) -> usize {
        self.phase_times.len()
    }
    /// The frame at (slice, phase), if present.
    pub fn frame(&self, slice: usize, phase: usize) -> Option<&Frame> {
        self.slices.get(slice)?.frames.get(phase)?.as_ref()
    }
    /// True when no frame is missing.
    pub fn is_complete(&self) -> bool {
        self.slices
            .iter()
            .all(|s| s.frames.iter().all(|f| f.is_some()))
    }
    /// The voxel-to-world matrix in NIfTI's RAS convention for labels laid out as the masks are
    /// (x = column, y = row, z = slice), from the DICOM geometry (LPS): what a label file needs
    /// to overlay the images in ITK-SNAP, Slicer or FSLeyes. The slice step is the measured
    /// vector between the first and last slice, so an oblique stack stays oblique.
    pub fn ras_affine(&self) -> [[f64; 4]; 3] {
        let o = self.grid.orientation;
        let [dy, dx] = self.grid.pixel_spacing;
        let p0 = self
            .slices
            .first()
            .map(|s| s.position)
            .unwrap_or(self.grid.position);
        let n = self.slices.len();
        let step = match self.slices.last() {
            Some(last) if n > 1 => {
                let k = 1.0 / (n - 1) as f64;
                [
                    (last.position[0] - p0[0]) * k,
                    (last.position[1] - p0[1]) * k,
                    (last.position[2] - p0[2]) * k,
                ]
            }
            _ => self.normal.map(|v| v * self.slice_spacing),
        };
        let col = [o[0] * dx, o[1] * dx, o[2] * dx];
        let row = [o[3] * dy, o[4] * dy, o[5] * dy];
        let axis =
            |i: usize, sign: f64| [sign * col[i], sign * row[i], sign * step[i], sign * p0[i]];
        [axis(0, -1.0), axis(1, -1.0), axis(2, 1.0)]
    }

    /// The corrections log: one JSON object per line.
    pub fn corrections_log(&self) -> String {
        self.corrections
            .iter()
            .map(|c| c.to_json_line() + "\n")
            .collect()
    }
}

/// Everything found in a folder: the stacks, and the files that could not be used and why.
#[derive(Debug)]
pub struct FolderScan {
    /// Stacks, largest first.
    pub stacks: Vec<CineStack>,
    /// Files that failed to read (a folder may hold DICOMDIRs, reports, broken exports).
    pub skipped: Vec<DicomError>,
    /// Series refused as impossible stacks (`DicomError::NotACineStack`), largest first.
    pub refused: Vec<DicomError>,
    /// Number of frames read successfully.
    pub frames_read: usize,
}

/// Read every file under `dir` (recursively, sorted by path) and assemble stacks.
pub fn load_folder(dir: &Path, opts: &AssembleOptions) -> Result<FolderScan, DicomError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    load_files(&files, dir, opts)
}

/// Read the given files and assemble stacks; `origin` names the set in errors.
pub fn load_files(
    files: &[PathBuf],
    origin: &Path,
    opts: &AssembleOptions,
) -> Result<FolderScan, DicomError> {
    use rayon::prelude::*;
    let mut instances = Vec::new();
    let mut skipped = Vec::new();
    // Decoding is per file and independent: in parallel, results kept in file order.
    let read: Vec<Result<Vec<super::Instance>, DicomError>> = files
        .par_iter()
        .map(|f| super::instance::read_file(f))
        .collect();
    for r in read {
        match r {
            Ok(mut v) => instances.append(&mut v),
            Err(e) => skipped.push(e),
        }
    }
    let frames_read = instances.len();
    let Assembled { stacks, refused } = assemble_all(instances, opts, origin)?;
    Ok(FolderScan {
        stacks,
        skipped,
        frames_read,
        refused,
    })
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DicomError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DicomError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| DicomError::io(dir, e))?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// An instance with the geometry a stack needs, checked once.
pub(super) struct Placed {
    pub(super) inst: Instance,
    pub(super) grid: PlaneGrid,
    pub(super) normal: Vec3,
}

fn place(inst: Instance) -> Option<Placed> {
    let g = &inst.geometry;
    let (position, orientation, pixel_spacing) = (g.position?, g.orientation?, g.pixel_spacing?);
    let normal = slice_normal(&orientation)?;
    if inst.samples_per_pixel != 1 {
        return None;
    }
    let grid = PlaneGrid {
        rows: inst.rows,
        cols: inst.cols,
        position,
        orientation,
        pixel_spacing,
    };
    Some(Placed { inst, grid, normal })
}

/// The order every assembly starts from, whatever order the files came in: SOP instance,
/// frame, then the values that tell apart two different images sharing a SOPInstanceUID.
fn canonical(a: &Placed, b: &Placed) -> std::cmp::Ordering {
    let (x, y) = (&a.inst, &b.inst);
    x.ids
        .sop_instance_uid
        .cmp(&y.ids.sop_instance_uid)
        .then(x.frame.cmp(&y.frame))
        .then(x.instance_number.cmp(&y.instance_number))
        .then_with(|| {
            let t = |i: &Instance| i.trigger_time.unwrap_or(f64::NEG_INFINITY);
            t(x).total_cmp(&t(y))
        })
        .then_with(|| {
            (0..3).fold(std::cmp::Ordering::Equal, |o, k| {
                o.then(a.grid.position[k].total_cmp(&b.grid.position[k]))
            })
        })
        .then_with(|| x.path.cmp(&y.path))
}

/// Stacks and refused series of one assembly.
pub struct Assembled {
    /// Stacks, largest first.
    pub stacks: Vec<CineStack>,
    /// Series refused as impossible stacks (`DicomError::NotACineStack`), largest first.
    pub refused: Vec<DicomError>,
}

/// Group instances into cine stacks and apply the corrections. `origin` names the input in
/// errors. Returns the stacks largest first; fails when no stack can be formed, with the
/// defect of the largest refused series when there is one.
pub fn assemble(
    instances: Vec<Instance>,
    opts: &AssembleOptions,
    origin: &Path,
) -> Result<Vec<CineStack>, DicomError> {
    Ok(assemble_all(instances, opts, origin)?.stacks)
}

/// [`assemble`], also returning the series refused while other series gave stacks.
pub fn assemble_all(
    instances: Vec<Instance>,
    opts: &AssembleOptions,
    origin: &Path,
) -> Result<Assembled, DicomError> {
    let fail = |reason: String| DicomError::Assemble {
        path: origin.to_path_buf(),
        reason,
    };
    let total = instances.len();
    let mut placed: Vec<Placed> = instances.into_iter().filter_map(place).collect();
    placed.sort_by(canonical);
    let mut by_series: BTreeMap<(String, String), Vec<Placed>> = BTreeMap::new();
    for p in placed {
        let key = (
            p.inst.ids.study_uid.clone().unwrap_or_default(),
            p.inst.ids.series_uid.clone().unwrap_or_default(),
        );
        by_series.entry(key).or_default().push(p);
    }
    if by_series.is_empty() {
        return Err(fail(format!(
            "none of {total} frames has complete MR image geometry"
        )));
    }
    let mut stacks = Vec::new();
    let mut refused: Vec<(usize, DicomError)> = Vec::new();
    for ((_, series_uid), series) in by_series {
        let size = series.len();
        match super::stack_build::build_series(series, opts) {
            Ok(s) => stacks.extend(s),
            Err(defect) => refused.push((
                size,
                DicomError::NotACineStack {
                    path: origin.to_path_buf(),
                    series_uid: crate::text::printable(&series_uid).into_owned(),
                    defect,
                },
            )),
        }
    }
    refused.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut refused: Vec<DicomError> = refused.into_iter().map(|(_, e)| e).collect();
    if stacks.is_empty() {
        if refused.is_empty() {
            return Err(fail("no group of parallel slices found".into()));
        }
        return Err(refused.remove(0));
    }
    let mut stacks = drop_repeats(stacks, opts);
    stacks.sort_by_key(|s| std::cmp::Reverse(s.n_slices() * s.n_phases()));
    Ok(Assembled { stacks, refused })
}

/// Group a series' instances by normal direction: returns clusters, largest first.
pub(super) fn split_by_normal(series: Vec<Placed>, tol_deg: f64) -> Vec<Vec<Placed>> {
    let mut clusters: Vec<Vec<Placed>> = Vec::new();
    for p in series {
        match clusters.iter_mut().find(|c| {
            c.first()
                .is_some_and(|q| angle_deg(q.normal, p.normal) <= tol_deg)
        }) {
            Some(c) => c.push(p),
            None => clusters.push(vec![p]),
        }
    }
    clusters.sort_by_key(|c| std::cmp::Reverse(c.len()));
    clusters
}

/// Among stacks of one study that cover the same positions in the same orientation, keep the
/// latest complete one.
fn drop_repeats(stacks: Vec<CineStack>, opts: &AssembleOptions) -> Vec<CineStack> {
    // Rank: complete first, then later series date/time, then higher series number.
    let rank = |s: &CineStack| {
        (
            s.is_complete(),
            s.ids.series_datetime.clone(),
            s.ids.series_number,
        )
    };
    let mut order: Vec<usize> = (0..stacks.len()).collect();
    order.sort_by(|&a, &b| rank(&stacks[b]).cmp(&rank(&stacks[a])));
    let mut kept: Vec<usize> = Vec::new();
    let mut logs: Vec<(usize, Correction)> = Vec::new();
    for i in order {
        let s = &stacks[i];
        let repeat_of = kept
            .iter()
            .copied()
            .find(|&k| is_repeat(&stacks[k], s, opts));
        match repeat_of {
            Some(k) => logs.push((
                k,
                Correction::RepeatedSeries {
                    study_uid: s.ids.study_uid.clone().unwrap_or_default(),
                    kept_series_uid: stacks[k].ids.series_uid.clone().unwrap_or_default(),
                    dropped_series_uid: s.ids.series_uid.clone().unwrap_or_default(),
                },
            )),
            None => kept.push(i),
        }
    }
    let mut out: Vec<Option<CineStack>> = stacks.into_iter().map(Some).collect();
    for (k, c) in logs {
        if let Some(Some(s)) = out.get_mut(k) {
            s.corrections.insert(0, c);
        }
    }
    kept.sort_unstable();
    kept.into_iter()
        .filter_map(|k| out.get_mut(k).and_then(Option::take))
        .collect()
}

/// Same study, same frame of reference, parallel, and at least half the slice positions shared.
fn is_repeat(a: &CineStack, b: &CineStack, opts: &AssembleOptions) -> bool {
    if a.ids.study_uid != b.ids.study_uid || a.ids.series_uid == b.ids.series_uid {
        return false;
    }
    if a.ids.frame_of_reference_uid.is_some()
        && b.ids.frame_of_reference_uid.is_some()
        && a.ids.frame_of_reference_uid != b.ids.frame_of_reference_uid
    {
        return false;
    }
    if angle_deg(a.normal, b.normal) > opts.parallel_tolerance_deg {
        return false;
    }
    let shared = b
        .slices
        .iter()
        .filter(|sb| {
            a.slices
                .iter()
                .any(|sa| dist(sa.position, sb.position) < opts.duplicate_tolerance_mm)
        })
        .count();
    2 * shared >= a.n_slices().min(b.n_slices()).max(1)
}

pub(super) fn dist(a: Vec3, b: Vec3) -> f64 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    dot(d, d).sqrt()
}
