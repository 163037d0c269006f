//! Writes one series' results into the output folder: DICOM SEG, RGB overlay secondary
//! captures (every slice at ED and ES), `report.json` and a self-contained `report.html`.
//! Everything goes to `<id>.partial/` first and is renamed to `<id>/` at the end, so a folder
//! named after a job is always complete, and its existence tells a restarted daemon that the
//! job's results are stored (no second copy).

use super::fsio::{ensure_dir, sync_dir};
use super::html::{self, Page};
use super::queue::JobRecord;
use super::DaemonError;
use crate::analysis::quality::{QualityFlag, Severity};
use crate::analysis::volumes::CardiacSummary;
use crate::dicom::masks::LabelMasks;
use crate::dicom::seg::{write_seg, Algorithm};
use crate::dicom::CineStack;
use crate::report::overlay::{montage, overlay, OverlayStyle};
use crate::report::plot::volume_curve;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Everything measured for one series.
pub struct Analysis {
    /// The assembled images.
    pub stack: CineStack,
    /// Labels for every (slice, phase) image, aligned to `stack`.
    pub masks: LabelMasks,
    /// Function numbers (None when they could not be derived, e.g. one phase only).
    pub summary: Option<CardiacSummary>,
    /// Quality flags of the analysis module.
    pub flags: Vec<QualityFlag>,
    /// Further warnings (low confidence, missing frames, summary errors).
    pub notes: Vec<String>,
    /// Mean foreground confidence per phase.
    pub confidence: Vec<f32>,
    /// Images absent from the series (not segmented).
    pub missing_frames: usize,
}

/// The JSON report (no patient names or IDs).
#[derive(Serialize)]
struct Report<'a> {
    job: &'a str,
    /// Reception of the series this result is from (1 the first time): a higher version of
    /// the same series supersedes the lower ones.
    version: u32,
    /// The job whose result this one replaces.
    supersedes: Option<&'a str>,
    /// Why the receiver considered the series complete.
    closed_because: &'a str,
    series_instance_uid: &'a str,
    series_description: Option<&'a str>,
    model: &'a str,
    slices: usize,
    phases: usize,
    matrix: [usize; 2],
    pixel_spacing_mm: [f64; 2],
    slice_spacing_mm: f64,
    missing_frames: usize,
    summary: Option<&'a CardiacSummary>,
    /// True when an error-severity quality flag makes the EF and volumes unreliable.
    ef_flagged: bool,
    quality_flags: &'a [QualityFlag],
    notes: &'a [String],
    confidence_per_phase: &'a [f32],
    seg_sop_instance_uid: Option<String>,
    overlays: usize,
    corrections: Vec<String>,
}

/// Writes the results of `job` under `out_root/<job id>/`; returns that folder.
pub fn write(
    out_root: &Path,
    job: &JobRecord,
    a: &Analysis,
    model_name: &str,
    overlays: bool,
) -> Result<PathBuf, DaemonError> {
    let final_dir = out_root.join(&job.id);
    let dir = out_root.join(format!("{}.partial", job.id));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| DaemonError::io(&dir, e))?;
    }
    ensure_dir(&dir)?;
    let werr = DaemonError::dicom("writing results");
    let algo = Algorithm {
        name: "cineseg-unet".into(),
        version: model_name.into(),
    };
    let seg = write_seg(&a.stack, &a.masks, &algo, &dir.join("seg.dcm")).map_err(werr)?;
    let mut n_overlays = 0;
    let (ed, es) = a
        .summary
        .as_ref()
        .map(|s| (s.ed_phase, s.es_phase))
        .unwrap_or((0, 0));
    if overlays {
        let series =
            crate::dicom::sc::OverlaySeries::new(a.stack.ids.series_number.unwrap_or(0) + 5000);
        let sc_dir = dir.join("overlays");
        ensure_dir(&sc_dir)?;
        let mut phases = vec![ed];
        if es != ed {
            phases.push(es);
        }
        for &p in &phases {
            for s in 0..a.stack.n_slices() {
                if a.stack.frame(s, p).is_some() {
                    crate::dicom::sc::write_overlay(
                        &a.stack,
                        &a.masks,
                        s,
                        p,
                        &series,
                        &sc_dir.join(format!("s{s:03}_p{p:03}.dcm")),
                    )
                    .map_err(werr)?;
                    n_overlays += 1;
                }
            }
        }
    }
    let report = Report {
        job: &job.id,
        version: job.version(),
        supersedes: job.supersedes.as_deref(),
        closed_because: &job.closed_because,
        series_instance_uid: &job.series_uid,
        series_description: a.stack.ids.series_description.as_deref(),
        model: model_name,
        slices: a.stack.n_slices(),
        phases: a.stack.n_phases(),
        matrix: [a.stack.grid.rows, a.stack.grid.cols],
        pixel_spacing_mm: a.stack.grid.pixel_spacing,
        slice_spacing_mm: a.stack.slice_spacing,
        missing_frames: a.missing_frames,
        summary: a.summary.as_ref(),
        ef_flagged: ef_flagged(a),
        quality_flags: &a.flags,
        notes: &a.notes,
        confidence_per_phase: &a.confidence,
        seg_sop_instance_uid: Some(seg.sop_instance_uid.clone()),
        overlays: n_overlays,
        corrections: a
            .stack
            .corrections
            .iter()
            .map(|c| c.to_json_line())
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&report).map_err(DaemonError::json("report.json"))?;
    write_file(&dir.join("report.json"), &json)?;
    let page = html_page(job, a, model_name)?;
    write_file(&dir.join("report.html"), page.as_bytes())?;
    sync_dir(&dir)?;
    if final_dir.exists() {
        // A previous run stored this job completely before crashing: keep that copy.
        std::fs::remove_dir_all(&dir).map_err(|e| DaemonError::io(&dir, e))?;
        return Ok(final_dir);
    }
    super::fsio::rename_durable(&dir, &final_dir)?;
    Ok(final_dir)
}

/// An error-severity flag (missing phases, an implausible EF, ...) marks the EF unreliable.
fn ef_flagged(a: &Analysis) -> bool {
    a.flags.iter().any(|f| f.severity == Severity::Error)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DaemonError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| DaemonError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| DaemonError::io(path, e))
}

/// Montage of every slice of phase `p` with its labels.
fn phase_montage(a: &Analysis, p: usize) -> Result<Option<Vec<u8>>, DaemonError> {
    let (w, h) = (a.stack.grid.cols, a.stack.grid.rows);
    let mut tiles = Vec::new();
    for s in 0..a.stack.n_slices() {
        if let (Some(f), Some(m)) = (a.stack.frame(s, p), a.masks.image(s, p)) {
            tiles.push(
                overlay(&f.pixels, m, w, h, OverlayStyle::Contour)
                    .map_err(DaemonError::report("a contour overlay"))?,
            );
        }
    }
    if tiles.is_empty() {
        return Ok(None);
    }
    let cols = (tiles.len() as f64).sqrt().ceil() as usize;
    let img = montage(&tiles, cols.max(1), 2).map_err(DaemonError::report("a montage"))?;
    Ok(Some(
        img.encode_png().map_err(DaemonError::report("a montage"))?,
    ))
}

fn html_page(job: &JobRecord, a: &Analysis, model_name: &str) -> Result<String, DaemonError> {
    let f1 = |v: f64| format!("{v:.1}");
    let mut numbers = vec![
        (
            "Series".to_string(),
            a.stack
                .ids
                .series_description
                .clone()
                .unwrap_or_else(|| job.id.clone()),
        ),
        ("Model".into(), model_name.into()),
    ];
    if let Some(old) = &job.supersedes {
        numbers.push((
            "Version".into(),
            format!("{} of this series (supersedes result {old})", job.epoch + 1),
        ));
    }
    numbers.push((
        "Slices x phases".into(),
        format!("{} x {}", a.stack.n_slices(), a.stack.n_phases()),
    ));
    let mut images = Vec::new();
    if let Some(s) = &a.summary {
        numbers.extend([
            (
                "ED / ES phase".to_string(),
                format!("{} / {}", s.ed_phase, s.es_phase),
            ),
            ("LV EDV (ml)".into(), f1(s.lv_edv_ml)),
            ("LV ESV (ml)".into(), f1(s.lv_esv_ml)),
            ("LV SV (ml)".into(), f1(s.lv_sv_ml)),
            (
                "LV EF (%)".into(),
                s.lv_ef_percent.map(f1).unwrap_or_else(|| "n/a".into())
                    + if ef_flagged(a) {
                        " (FLAGGED: see quality flags)"
                    } else {
                        ""
                    },
            ),
            ("LV mass (g)".into(), f1(s.lv_mass_g)),
            (
                "RV EDV / ESV (ml)".into(),
                format!("{} / {}", f1(s.rv_edv_ml), f1(s.rv_esv_ml)),
            ),
            (
                "RV EF (%)".into(),
                s.rv_ef_percent.map(f1).unwrap_or_else(|| "n/a".into()),
            ),
        ]);
        if let Ok(img) = volume_curve(
            &s.lv_curve_ml,
            &s.rv_curve_ml,
            s.ed_phase,
            s.es_phase,
            640,
            320,
        ) {
            images.push((
                "LV (and RV) volume over the cardiac cycle".to_string(),
                img.encode_png()
                    .map_err(DaemonError::report("the volume curve"))?,
            ));
        }
        for (name, p) in [("end-diastole", s.ed_phase), ("end-systole", s.es_phase)] {
            if let Some(png) = phase_montage(a, p)? {
                images.push((format!("Contours at {name} (phase {p})"), png));
            }
        }
    } else if let Some(png) = phase_montage(a, 0)? {
        images.push(("Contours, phase 0".to_string(), png));
    }
    let mean_conf = a.confidence.iter().sum::<f32>() / a.confidence.len().max(1) as f32;
    numbers.push(("Mean model confidence".into(), format!("{mean_conf:.2}")));
    let mut flags: Vec<(String, String)> = a
        .flags
        .iter()
        .map(|f| {
            (
                format!("{:?}", f.severity).to_lowercase(),
                f.message.clone(),
            )
        })
        .collect();
    flags.extend(a.notes.iter().map(|n| ("warning".to_string(), n.clone())));
    let corrections: Vec<String> = a.stack.corrections.iter().map(|c| c.describe()).collect();
    Ok(html::render(&Page {
        title: "cineseg cardiac function report",
        numbers: &numbers,
        flags: &flags,
        corrections: &corrections,
        images: &images,
    }))
}
