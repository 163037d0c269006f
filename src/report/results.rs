//! Writes one series' results into the output folder: the DICOM objects a PACS files with the
//! source study (cine SEG, one 3D SEG per key phase, the TID 1500 measurement SR, a summary
//! page and overlay secondary captures), and `report.json` and a self-contained `report.html`.
//! Everything goes to `<id>.partial/` first and is renamed to `<id>/` at the end, so a folder
//! named after a result is always complete, and its existence tells a restarted daemon that the
//! result is stored (no second copy).

use rayon::prelude::*;
use std::path::{Path, PathBuf};

use super::annotate::captioned_overlay;
use super::json::{self, ResultIdentity, Written};
use super::overlay::{overlay, OverlayStyle};
use super::{page, summary_page, ReportError};
use crate::analysis::series::SeriesAnalysis;
use crate::dicom::sc::{write_sc, ScImage, ScSeries};
use crate::dicom::seg::{write_seg, Algorithm, SegScope};
use crate::dicom::sr::{write_sr, SrInput};
use crate::dicom::writer::SeriesId;
use crate::fsio;
use crate::registry::ModelIdentity;

/// Writes the results of series `id` under `out_root/<id.id>/`; returns that folder.
pub fn write(
    out_root: &Path,
    id: &ResultIdentity<'_>,
    a: &SeriesAnalysis,
    model: &ModelIdentity,
    overlays: bool,
) -> Result<PathBuf, ReportError> {
    let final_dir = out_root.join(id.id);
    let dir = out_root.join(format!("{}.partial", id.id));
    fsio::remove_dir_all(&dir)?;
    fsio::ensure_dir(&dir)?;
    let algo = Algorithm::of(model);
    let ctx = &a.context;
    let base = a.stack.ids.series_number.unwrap_or(0);
    let seg_series = SeriesId::new(base + 9900);
    let seg = |scope, name: &str| {
        write_seg(
            &a.stack,
            &a.masks,
            &algo,
            scope,
            ctx,
            &seg_series,
            &dir.join(name),
        )
    };
    // The DICOM objects and the pictures are independent: written side by side.
    let (objects, pictures) = rayon::join(
        || -> Result<Written, ReportError> {
            let mut written = Written {
                seg_cine: Some(seg(SegScope::Cine, "seg.dcm")?),
                ..Written::default()
            };
            if let Some(s) = &a.summary {
                written.seg_ed = Some(seg(
                    SegScope::Phase(s.ed_phase, "end-diastole"),
                    "seg_ed.dcm",
                )?);
                if s.es_phase != s.ed_phase {
                    written.seg_es = Some(seg(
                        SegScope::Phase(s.es_phase, "end-systole"),
                        "seg_es.dcm",
                    )?);
                }
                written.sr = Some(write_sr(
                    &SrInput {
                        analysis: a,
                        model,
                        segs: [&written.seg_cine, &written.seg_ed, &written.seg_es]
                            .into_iter()
                            .flatten()
                            .collect(),
                    },
                    &dir.join("sr.dcm"),
                )?);
            }
            Ok(written)
        },
        || write_pictures(a, model, id, &dir, overlays),
    );
    let mut written = objects?;
    (written.summary_page, written.overlays) = pictures?;
    let report = json::Report::new(id, a, model, &written);
    let bytes = serde_json::to_vec_pretty(&report)?;
    fsio::write_synced(&dir.join("report.json"), &bytes)?;
    let html = page::render(id, a, model, &written)?;
    fsio::write_synced(&dir.join("report.html"), html.as_bytes())?;
    fsio::sync_dir(&dir)?;
    if final_dir.exists() {
        // A previous run stored this result completely before crashing: keep that copy.
        fsio::remove_dir_all(&dir)?;
        return Ok(final_dir);
    }
    fsio::rename_durable(&dir, &final_dir)?;
    Ok(final_dir)
}

/// The summary page, the overlays and the label NIfTI; returns the page's SOP instance and
/// the number of overlays.
fn write_pictures(
    a: &SeriesAnalysis,
    model: &ModelIdentity,
    id: &ResultIdentity<'_>,
    dir: &Path,
    overlays: bool,
) -> Result<(Option<String>, usize), ReportError> {
    let ctx = &a.context;
    let base = a.stack.ids.series_number.unwrap_or(0);
    let sc_series = ScSeries::new(base + 5000);
    let page_img = summary_page::render(a, model, id)?;
    let key_phases: Vec<usize> = a
        .summary
        .as_ref()
        .map(|s| vec![s.ed_phase, s.es_phase])
        .unwrap_or_default();
    let sources = (0..a.stack.n_slices())
        .flat_map(|s| key_phases.iter().map(move |&p| (s, p)))
        .filter_map(|(s, p)| a.stack.frame(s, p)?.source.as_ref())
        .collect();
    let page = write_sc(
        ctx,
        &ScImage {
            image: &page_img,
            sources,
            instance_number: 1,
            description: "cineseg summary page: function numbers and volume curve".into(),
        },
        &sc_series,
        "cineseg results",
        &dir.join("summary.dcm"),
    )?;
    let n = if overlays {
        write_overlays(a, &sc_series, dir)?
    } else {
        0
    };
    write_label_nifti(a, &dir.join("labels.nii.gz"))?;
    Ok((Some(page), n))
}

/// One secondary capture per slice at ED and at ES (phase 0 without a summary), captioned and
/// with the colour key; returns how many.
fn write_overlays(a: &SeriesAnalysis, series: &ScSeries, dir: &Path) -> Result<usize, ReportError> {
    let sc_dir = dir.join("overlays");
    fsio::ensure_dir(&sc_dir)?;
    let mut phases = Vec::new();
    match &a.summary {
        Some(s) => {
            phases.push((s.ed_phase, "ED"));
            if s.es_phase != s.ed_phase {
                phases.push((s.es_phase, "ES"));
            }
        }
        None => phases.push((0, "phase 1")),
    }
    let (w, h, ns, np) = (
        a.stack.grid.cols,
        a.stack.grid.rows,
        a.stack.n_slices(),
        a.stack.n_phases(),
    );
    // (slice, phase, tag) in instance-number order, then drawn and written in parallel.
    let todo: Vec<(usize, usize, &str)> = phases
        .iter()
        .flat_map(|&(p, tag)| (0..ns).map(move |s| (s, p, tag)))
        .filter(|&(s, p, _)| a.stack.frame(s, p).is_some() && a.masks.image(s, p).is_some())
        .collect();
    todo.par_iter()
        .enumerate()
        .try_for_each(|(i, &(s, p, tag))| -> Result<(), ReportError> {
            let (Some(frame), Some(mask)) = (a.stack.frame(s, p), a.masks.image(s, p)) else {
                return Ok(());
            };
            let time = frame
                .trigger_time
                .map(|t| format!(", {t:.0} ms"))
                .unwrap_or_default();
            let caption = format!(
                "Slice {} of {ns}, {tag} (phase {} of {np}{time})",
                s + 1,
                p + 1
            );
            let img = captioned_overlay(
                &overlay(
                    &frame.pixels,
                    mask,
                    w,
                    h,
                    OverlayStyle::FillAndContour { alpha: 0.35 },
                )?,
                &caption,
            )?;
            write_sc(
                &a.context,
                &ScImage {
                    image: &img,
                    sources: frame.source.iter().collect(),
                    instance_number: 2 + i,
                    description: caption,
                },
                series,
                "cineseg results",
                &sc_dir.join(format!("s{s:03}_p{p:03}.dcm")),
            )?;
            Ok(())
        })?;
    let n = todo.len();
    Ok(n)
}

/// All labels as a 4D NIfTI (column, row, slice, phase) on the scanner grid of the series, for
/// research tools that read NIfTI; it overlays a dcm2niix conversion of the same series.
fn write_label_nifti(a: &SeriesAnalysis, path: &Path) -> Result<(), ReportError> {
    let st = &a.stack;
    let (ns, np) = (st.n_slices(), st.n_phases());
    let mut all = Vec::with_capacity(st.grid.rows * st.grid.cols * ns * np);
    for p in 0..np {
        for s in 0..ns {
            match a.masks.image(s, p) {
                Some(m) => all.extend_from_slice(m),
                None => all.resize(all.len() + st.grid.rows * st.grid.cols, 0),
            }
        }
    }
    let affine = st.ras_affine();
    let srow = affine.map(|r| r.map(|v| v as f32));
    let [dy, dx] = st.grid.pixel_spacing;
    let dt = st
        .phase_times
        .windows(2)
        .find_map(|w| Some((w[1]? - w[0]?) as f32 / 1000.0))
        .unwrap_or(0.0);
    let geometry = crate::io::nifti::LabelGeometry::Affine {
        spacing: [dx as f32, dy as f32, st.slice_spacing as f32, dt],
        srow,
    };
    Ok(crate::io::nifti::write_labels_at(
        path,
        [st.grid.cols, st.grid.rows, ns, np],
        geometry,
        &all,
    )?)
}
