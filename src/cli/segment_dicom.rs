//! `cineseg segment <dicom folder>`: the largest cine stack in the folder through the same
//! stages as the daemon (prepare, infer, labels on the native grid, `analysis::series::analyse`,
//! `report::results::write`): DICOM SEGs, SR, summary page and overlay secondary captures,
//! report.json and report.html.

use super::CliError;
use crate::analysis::series::analyse;
use crate::dicom::stack::{load_folder, AssembleOptions};
use crate::image::Slice2D;
use crate::registry::ModelIdentity;
use crate::report::json::ResultIdentity;
use crate::report::results;
use crate::segment::Segmenter;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Segments the largest stack under `dir`; returns the results folder.
pub fn run(
    dir: &Path,
    out: &Path,
    seg: &mut Segmenter<'_>,
    model: &ModelIdentity,
    min_confidence: f32,
) -> Result<PathBuf, CliError> {
    let scan = load_folder(dir, &AssembleOptions::default())?;
    for s in &scan.skipped {
        log::warn!("skipped: {}", crate::text::printable(&s.to_string()));
    }
    for r in &scan.refused {
        log::warn!("refused: {}", crate::text::printable(&r.to_string()));
    }
    let skipped = scan.skipped.len();
    let refused: Vec<String> = scan.refused.iter().map(|r| r.to_string()).collect();
    let stack = scan.stacks.into_iter().next().ok_or_else(|| {
        CliError::Dicom(crate::dicom::DicomError::Assemble {
            path: dir.to_path_buf(),
            reason: if refused.is_empty() {
                format!("no image stack could be assembled ({skipped} files skipped)")
            } else {
                format!(
                    "no image stack could be assembled ({skipped} files skipped): {}",
                    crate::text::printable(&refused.join("; "))
                )
            },
        })
    })?;
    let (ns, np) = (stack.n_slices(), stack.n_phases());
    println!(
        "{}: {} slices x {} phases, {}x{} px, slice spacing {:.2} mm",
        dir.display(),
        ns,
        np,
        stack.grid.cols,
        stack.grid.rows,
        stack.slice_spacing
    );
    for c in &stack.corrections {
        println!("  correction: {}", c.to_json_line());
    }
    let ps = stack.grid.pixel_spacing;
    let keys: Vec<(usize, usize)> = (0..ns)
        .flat_map(|s| (0..np).map(move |p| (s, p)))
        .filter(|(s, p)| stack.frame(*s, *p).is_some())
        .collect();
    let slices: Vec<Slice2D> = keys
        .iter()
        .filter_map(|(s, p)| stack.frame(*s, *p))
        .map(|f| Slice2D {
            width: stack.grid.cols,
            height: stack.grid.rows,
            spacing: [ps[1] as f32, ps[0] as f32],
            data: f.pixels.clone(),
        })
        .collect();
    let pb = super::progress::bar(slices.len(), "segment");
    let labelled = seg.segment(&slices, &|d, _| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    let labels: HashMap<(usize, usize), _> = keys.into_iter().zip(labelled).collect();
    let analysis = analyse(&stack, &labels, min_confidence)?;
    let series_uid = stack
        .ids
        .series_uid
        .clone()
        .unwrap_or_else(|| "unknown-series".into());
    let id = result_id(&series_uid);
    let identity = ResultIdentity {
        id: &id,
        version: 1,
        supersedes: None,
        closed_because: "cineseg segment: the folder as given",
        series_instance_uid: &series_uid,
    };
    super::ensure_dir(out)?;
    let done = results::write(out, &identity, &analysis, model, true)?;
    if let Some(s) = &analysis.summary {
        println!("{}", super::segment_cmd::summary_line(s));
    }
    for f in &analysis.flags {
        println!("  quality: {}", f.message);
    }
    for n in &analysis.notes {
        println!("  note: {n}");
    }
    Ok(done)
}

/// Folder name of a one-off result: 16 hex digits of the series UID's hash, stable across runs
/// (a re-run of the same folder replaces nothing; remove the folder to redo it).
fn result_id(series_uid: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(series_uid.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
