//! `cineseg inspect <dicom folder>`: what is in a folder, in words for a person and in JSON for
//! a script. The summary comes from the same assembly the segmentation uses, so what inspect
//! reports (stacks, spacing, corrections) is exactly what a segmentation run would see.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::DicomError;
use super::geometry::Vec3;
use super::instance::Instance;
use super::stack::{assemble, load_folder, AssembleOptions, CineStack, Correction, FolderScan};
use crate::text::printable;

/// A file that could not be used, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// The reason, as the typed error prints it.
    pub error: String,
}

/// One cine stack as found.
#[derive(Debug, Clone, Serialize)]
pub struct StackSummary {
    /// PatientID.
    pub patient_id: Option<String>,
    /// StudyInstanceUID.
    pub study_uid: Option<String>,
    /// SeriesInstanceUID.
    pub series_uid: Option<String>,
    /// SeriesNumber.
    pub series_number: Option<i64>,
    /// SeriesDescription.
    pub series_description: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Field strength (T).
    pub field_strength: Option<f64>,
    /// Slices.
    pub slices: usize,
    /// Phases.
    pub phases: usize,
    /// Rows x columns.
    pub matrix: [usize; 2],
    /// PixelSpacing (mm).
    pub pixel_spacing: [f64; 2],
    /// Slice spacing from positions (mm).
    pub slice_spacing: f64,
    /// SliceThickness (mm).
    pub slice_thickness: Option<f64>,
    /// ImageOrientationPatient.
    pub orientation: [f64; 6],
    /// Slice normal.
    pub normal: Vec3,
    /// Closest standard plane of the normal, and how far off it is.
    pub plane: String,
    /// Trigger time of each phase (ms).
    pub phase_times: Vec<Option<f64>>,
    /// True when no frame is missing.
    pub complete: bool,
    /// Corrections applied while assembling.
    pub corrections: Vec<Correction>,
}

/// Everything `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// The folder or file inspected.
    pub path: PathBuf,
    /// Frames decoded.
    pub frames_read: usize,
    /// Files that could not be used.
    pub skipped: Vec<Skipped>,
    /// Stacks, largest first.
    pub stacks: Vec<StackSummary>,
}

/// Inspect a folder (recursively) or a single file.
pub fn inspect(path: &Path) -> Result<InspectReport, DicomError> {
    let opts = AssembleOptions::default();
    let scan = if path.is_dir() {
        load_folder(path, &opts)?
    } else {
        inspect_file(path, &opts)?
    };
    Ok(InspectReport {
        path: path.to_path_buf(),
        frames_read: scan.frames_read,
        skipped: scan
            .skipped
            .iter()
            .map(|e| Skipped {
                path: e.path().to_path_buf(),
                error: e.to_string(),
            })
            .collect(),
        stacks: scan.stacks.iter().map(summarise).collect(),
    })
}

/// One file: its own read error when it cannot be read (not a generic "no frames" from the
/// empty assembly after it), and when it reads but cannot form a stack, what it lacks.
fn inspect_file(path: &Path, opts: &AssembleOptions) -> Result<FolderScan, DicomError> {
    let instances = super::instance::read_file(path)?;
    let frames_read = instances.len();
    let gaps = geometry_gaps(&instances);
    match assemble(instances, opts, path) {
        Ok(stacks) => Ok(FolderScan {
            stacks,
            skipped: Vec::new(),
            refused: Vec::new(),
            frames_read,
        }),
        Err(DicomError::Assemble { path, reason }) if !gaps.is_empty() => {
            Err(DicomError::Assemble {
                path,
                reason: format!("{reason}: {gaps}"),
            })
        }
        Err(e) => Err(e),
    }
}

/// What stops frames from being placed in a stack, e.g. "ImagePositionPatient missing in 3
/// frame(s)"; empty when every frame has it all.
fn geometry_gaps(instances: &[Instance]) -> String {
    let count = |f: &dyn Fn(&Instance) -> bool| instances.iter().filter(|i| f(i)).count();
    let checks: [(&str, usize); 4] = [
        (
            "ImagePositionPatient missing",
            count(&|i| i.geometry.position.is_none()),
        ),
        (
            "ImageOrientationPatient missing or degenerate",
            count(&|i| {
                i.geometry
                    .orientation
                    .and_then(|o| super::geometry::slice_normal(&o))
                    .is_none()
            }),
        ),
        (
            "PixelSpacing missing or not positive",
            count(&|i| i.geometry.pixel_spacing.is_none()),
        ),
        (
            "more than one sample per pixel (colour, not MR)",
            count(&|i| i.samples_per_pixel != 1),
        ),
    ];
    checks
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} in {n} frame(s)"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summarise(s: &CineStack) -> StackSummary {
    StackSummary {
        patient_id: s.ids.patient_id.clone(),
        study_uid: s.ids.study_uid.clone(),
        series_uid: s.ids.series_uid.clone(),
        series_number: s.ids.series_number,
        series_description: s.ids.series_description.clone(),
        manufacturer: s.manufacturer.clone(),
        field_strength: s.field_strength,
        slices: s.n_slices(),
        phases: s.n_phases(),
        matrix: [s.grid.rows, s.grid.cols],
        pixel_spacing: s.grid.pixel_spacing,
        slice_spacing: s.slice_spacing,
        slice_thickness: s.slice_thickness,
        orientation: s.grid.orientation,
        normal: s.normal,
        plane: plane_name(s.normal),
        phase_times: s.phase_times.clone(),
        complete: s.is_complete(),
        corrections: s.corrections.clone(),
    }
}

/// "axial", "coronal" or "sagittal", plus the angle to it when oblique.
fn plane_name(n: Vec3) -> String {
    let names = [("sagittal", 0), ("coronal", 1), ("axial", 2)];
    let (name, axis) = names
        .iter()
        .max_by(|a, b| n[a.1].abs().total_cmp(&n[b.1].abs()))
        .copied()
        .unwrap_or(("axial", 2));
    let angle = n[axis].abs().clamp(0.0, 1.0).acos().to_degrees();
    if angle < 1.0 {
        name.to_string()
    } else {
        format!("oblique, {angle:.0} degrees from {name}")
    }
}

/// `v` for the terminal, or "-" when absent. Values come from the files, so control
/// characters are escaped ([`printable`]): a SeriesDescription must not retitle the terminal.
fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(
        || "-".to_string(),
        |v| printable(&v.to_string()).into_owned(),
    )
}

/// A path or message for the terminal, control characters escaped.
fn shown(s: impl fmt::Display) -> String {
    printable(&s.to_string()).into_owned()
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} frame(s) read, {} cine stack(s)",
            shown(self.path.display()),
            self.frames_read,
            self.stacks.len()
        )?;
        for (i, s) in self.stacks.iter().enumerate() {
            writeln!(f)?;
            writeln!(
                f,
                "stack {}: series {} \"{}\" (patient {}, {} {} T)",
                i + 1,
                opt(&s.series_number),
                shown(s.series_description.as_deref().unwrap_or("")),
                opt(&s.patient_id),
                opt(&s.manufacturer),
                opt(&s.field_strength)
            )?;
            writeln!(f, "  series uid   {}", opt(&s.series_uid))?;
            writeln!(
                f,
                "  slices x phases  {} x {}{}",
                s.slices,
                s.phases,
                if s.complete { "" } else { " (frames missing)" }
            )?;
            writeln!(
                f,
                "  matrix {} x {}, pixel {:.3} x {:.3} mm, slice spacing {:.2} mm, thickness {} mm",
                s.matrix[0],
                s.matrix[1],
                s.pixel_spacing[0],
                s.pixel_spacing[1],
                s.slice_spacing,
                opt(&s.slice_thickness)
            )?;
            writeln!(
                f,
                "  orientation  {} (normal {:.3} {:.3} {:.3})",
                s.plane, s.normal[0], s.normal[1], s.normal[2]
            )?;
            let times: Vec<f64> = s.phase_times.iter().flatten().copied().collect();
            if let (Some(a), Some(b)) = (times.first(), times.last()) {
                writeln!(f, "  trigger times {a:.1} .. {b:.1} ms")?;
            }
            if s.corrections.is_empty() {
                writeln!(f, "  corrections  none")?;
            } else {
                writeln!(f, "  corrections ({}):", s.corrections.len())?;
                for c in &s.corrections {
                    writeln!(f, "    {}", shown(c.to_json_line()))?;
                }
            }
        }
        if !self.skipped.is_empty() {
            writeln!(f)?;
            writeln!(f, "{} file(s) not used:", self.skipped.len())?;
            for s in &self.skipped {
                writeln!(f, "  {}", shown(&s.error))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::plane_name;

    #[test]
    fn plane_names() {
        assert_eq!(plane_name([0.0, 0.0, 1.0]), "axial");
        assert_eq!(plane_name([0.0, -1.0, 0.0]), "coronal");
        let s = 30f64.to_radians();
        assert_eq!(
            plane_name([s.sin(), 0.0, s.cos()]),
            "oblique, 30 degrees from axial"
        );
    }
}
