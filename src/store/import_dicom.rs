//! Labelled DICOM series into the frame store: the Sunnybrook series with their contour files,
//! and any received cine with a mask set (e.g. a site's corrected contours returned as a SEG),
//! so fine-tuning reads scanner data exactly as it reads ACDC.
//!
//! Only annotated images become frames, and each frame records which classes were drawn on it:
//! a Sunnybrook end-systole image has LV but no MYO, so MYO there is unknown, not background.

use super::{FrameMeta, FrameStore, FrameStoreWriter, ImportError, ImportSummary};
use crate::dicom::contours::sunnybrook_masks;
use crate::dicom::masks::{LabelMasks, MYO};
use crate::dicom::stack::{load_folder, AssembleOptions};
use crate::dicom::CineStack;
use crate::image::{prepare_image, prepare_labels, Phase, Slice2D};
use crate::nn::Preprocess;
use std::path::Path;

/// Classes of the stored masks (cineseg order: background, LV, MYO, RV).
const CLASSES: usize = 4;

/// Names the phase of an annotated image from the classes drawn on it.
pub type PhaseOf<'a> = dyn Fn(&[u8]) -> Phase + 'a;

/// Sunnybrook's convention: the epicardium was drawn at end-diastole only, so an image with MYO
/// is ED and one with the endocardium alone is ES.
pub fn sunnybrook_phase(drawn: &[u8]) -> Phase {
    if drawn.contains(&MYO) {
        Phase::Ed
    } else {
        Phase::Es
    }
}

/// Phases unknown: fine-tuning finds ED and ES from the labelled LV area instead.
pub fn unknown_phase(_: &[u8]) -> Phase {
    Phase::Other
}

/// Appends every annotated image of `stack` to `writer` as one frame on the model grid, with
/// `masks` (same stack, cineseg class values) as labels; returns how many frames were written.
pub fn push_labelled_stack(
    writer: &mut FrameStoreWriter,
    patient_id: &str,
    group: &str,
    stack: &CineStack,
    masks: &LabelMasks,
    p: &Preprocess,
    phase_of: &PhaseOf<'_>,
) -> Result<usize, ImportError> {
    let (rows, cols) = (stack.grid.rows, stack.grid.cols);
    let mismatch = |reason: String| ImportError::Mismatch {
        path: patient_id.into(),
        reason,
    };
    if (masks.n_slices, masks.n_phases, masks.rows, masks.cols)
        != (stack.n_slices(), stack.n_phases(), rows, cols)
    {
        return Err(mismatch(format!(
            "masks are {}x{} images of {}x{} but the series is {}x{} of {}x{}",
            masks.n_slices,
            masks.n_phases,
            masks.rows,
            masks.cols,
            stack.n_slices(),
            stack.n_phases(),
            rows,
            cols
        )));
    }
    // PixelSpacing is [between rows, between columns]; Slice2D wants [x, y].
    let spacing = [
        stack.grid.pixel_spacing[1] as f32,
        stack.grid.pixel_spacing[0] as f32,
    ];
    let mut written = 0;
    for s in 0..stack.n_slices() {
        for ph in 0..stack.n_phases() {
            let drawn = masks
                .annotated
                .get(s * stack.n_phases() + ph)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if drawn.is_empty() {
                continue;
            }
            let frame = stack.frame(s, ph).ok_or_else(|| {
                mismatch(format!(
                    "slice {s} phase {ph} is annotated but has no image"
                ))
            })?;
            let source = frame
                .source
                .as_ref()
                .map_or_else(|| patient_id.to_string(), |r| r.path.display().to_string());
            let image_err = |source_err| ImportError::Image {
                path: source.clone().into(),
                source: source_err,
            };
            let slice = Slice2D {
                width: cols,
                height: rows,
                spacing,
                data: frame.pixels.clone(),
            };
            let (img, _) = prepare_image(&slice, p).map_err(image_err)?;
            let labels = masks
                .image(s, ph)
                .ok_or_else(|| mismatch(format!("no mask for slice {s} phase {ph}")))?;
            let mask = prepare_labels(labels, cols, rows, spacing, p).map_err(image_err)?;
            let mut labelled = vec![false; CLASSES];
            labelled[0] = true;
            for &c in drawn {
                if let Some(l) = labelled.get_mut(c as usize) {
                    *l = true;
                }
            }
            let meta = FrameMeta {
                patient_id: patient_id.to_string(),
                group: group.to_string(),
                slice: s,
                phase_index: ph,
                phase: phase_of(drawn),
                labelled,
                source,
                native_spacing: spacing,
            };
            writer.push(&img, &mask, meta)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Imports the Sunnybrook layout (`dicoms/<SCD id>/`, `contourfiles/<original id>/`, `link.csv`
/// mapping the two) into a new frame store at `out`: LV and MYO from the contour files, RV
/// never drawn. `progress(done, total)` is called after each patient.
pub fn import_sunnybrook(
    root: &Path,
    out: &Path,
    p: &Preprocess,
    progress: &dyn Fn(usize, usize),
) -> Result<ImportSummary, ImportError> {
    let link = root.join("link.csv");
    let text = std::fs::read_to_string(&link).map_err(|e| ImportError::Empty {
        path: link.clone(),
        reason: format!("cannot read the id table: {e}"),
    })?;
    let pairs: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .collect();
    if pairs.is_empty() {
        return Err(ImportError::Empty {
            path: link,
            reason: "no patient_id,original_id rows".into(),
        });
    }
    let mut writer = FrameStore::create(out, p, CLASSES)?;
    let mut summary = ImportSummary {
        patients: pairs.len(),
        ..Default::default()
    };
    for (k, (id, original)) in pairs.iter().enumerate() {
        let dir = root.join("dicoms").join(id);
        let mut scan = load_folder(&dir, &AssembleOptions::default())?;
        if scan.stacks.len() != 1 {
            return Err(ImportError::Mismatch {
                path: dir,
                reason: format!("expected one cine series, found {}", scan.stacks.len()),
            });
        }
        let stack = scan.stacks.remove(0);
        let masks = sunnybrook_masks(&stack, &root.join("contourfiles").join(original))?;
        let frames = push_labelled_stack(
            &mut writer,
            id,
            "sunnybrook-HF",
            &stack,
            &masks,
            p,
            &sunnybrook_phase,
        )?;
        summary.volumes += 1;
        summary.frames += frames;
        *summary.groups.entry("sunnybrook-HF".into()).or_default() += 1;
        progress(k + 1, pairs.len());
    }
    if summary.frames == 0 {
        return Err(ImportError::Empty {
            path: root.into(),
            reason: "no contoured image found".into(),
        });
    }
    writer.finish()?;
    Ok(summary)
}
