//! `cineseg import`: turns a labelled dataset folder into a frame store, once, so training
//! never decodes NIfTI or resamples again.

use super::{FrameMeta, FrameStore, ImportError};
use crate::image::{prepare_image, prepare_labels, Phase, Slice2D};
use crate::io::acdc::{self, AcdcFrame, AcdcPatient};
use crate::io::{read_volume, IoError, Volume};
use crate::nn::Preprocess;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Classes of the stored masks (cineseg order: background, LV, MYO, RV).
const CLASSES: usize = 4;

/// Patients prepared in parallel before their frames are written, in order. Bounds memory
/// (a patient is a few MB on the grid) while keeping both cores busy.
const BATCH: usize = 8;

/// What an import produced, for the CLI to print and the logs to keep.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportSummary {
    pub patients: usize,
    /// Labelled ED/ES volumes read.
    pub volumes: usize,
    /// Frames (2D slices) written.
    pub frames: usize,
    /// Patients per diagnostic group.
    pub groups: BTreeMap<String, usize>,
}

/// A frame on the model grid, waiting to be written.
struct Prepared {
    image: Vec<f32>,
    mask: Vec<u8>,
    meta: FrameMeta,
}

/// Imports every labelled ED and ES volume of an ACDC-layout folder into a new frame store at
/// `out`: each slice is one frame, labels mapped to cineseg's order, all four classes marked as
/// drawn. Patients are prepared in parallel and written in id order, so the store is the same
/// on every run. `progress(done, total)` is called after each patient, on the calling thread.
pub fn import_acdc(
    root: &Path,
    out: &Path,
    p: &Preprocess,
    progress: &dyn Fn(usize, usize),
) -> Result<ImportSummary, ImportError> {
    import_acdc_with(root, out, p, None, progress)
}

/// Changes a native image slice before it is prepared, given (patient id, slice index, ACDC
/// frame number). Used to simulate another scanner domain (e.g. `train::domain7t`) on the
/// images while the labels stay exactly as the experts drew them.
pub type SliceTransform<'a> = dyn Fn(&str, usize, usize, &mut Slice2D) + Sync + 'a;

/// [`import_acdc`], with every native image slice passed through `transform` first.
pub fn import_acdc_with(
    root: &Path,
    out: &Path,
    p: &Preprocess,
    transform: Option<&SliceTransform<'_>>,
    progress: &dyn Fn(usize, usize),
) -> Result<ImportSummary, ImportError> {
    let patients = acdc::scan(root)?;
    if patients.is_empty() {
        return Err(ImportError::Empty {
            path: root.into(),
            reason: "no patientNNN folders found".into(),
        });
    }
    let mut writer = FrameStore::create(out, p, CLASSES)?;
    let mut summary = ImportSummary {
        patients: patients.len(),
        ..Default::default()
    };
    let mut done = 0;
    for batch in patients.chunks(BATCH) {
        let prepared: Vec<Result<(usize, Vec<Prepared>), ImportError>> = batch
            .par_iter()
            .map(|pt| prepare_patient(pt, p, transform))
            .collect();
        for (pt, result) in batch.iter().zip(prepared) {
            let (volumes, frames) = result?;
            summary.volumes += volumes;
            summary.frames += frames.len();
            *summary.groups.entry(pt.info.group.clone()).or_default() += 1;
            for f in frames {
                writer.push(&f.image, &f.mask, f.meta)?;
            }
            done += 1;
            progress(done, patients.len());
        }
    }
    if summary.frames == 0 {
        return Err(ImportError::Empty {
            path: root.into(),
            reason: "no labelled ED/ES volume found".into(),
        });
    }
    writer.finish()?;
    Ok(summary)
}

/// All frames of one patient's labelled ED/ES volumes, and how many volumes that was.
fn prepare_patient(
    pt: &AcdcPatient,
    p: &Preprocess,
    transform: Option<&SliceTransform<'_>>,
) -> Result<(usize, Vec<Prepared>), ImportError> {
    let mut out = Vec::new();
    let mut volumes = 0;
    for frame in pt.frames.iter().filter(|f| f.phase != Phase::Other) {
        let Some(labels_path) = &frame.labels else {
            continue;
        };
        let image = read_volume(&frame.image)?;
        let labels = read_volume(labels_path)?;
        check_same_grid(&image, &labels, labels_path)?;
        let labels = map_labels(&labels, labels_path)?;
        volumes += 1;
        prepare_volume(pt, frame, &image, &labels, p, transform, &mut out)?;
    }
    Ok((volumes, out))
}

fn prepare_volume(
    pt: &AcdcPatient,
    frame: &AcdcFrame,
    image: &Volume,
    labels: &[u8],
    p: &Preprocess,
    transform: Option<&SliceTransform<'_>>,
    out: &mut Vec<Prepared>,
) -> Result<(), ImportError> {
    let [w, h, nz, _] = image.dims;
    let spacing = [image.spacing[0], image.spacing[1]];
    let image_err = |source| ImportError::Image {
        path: frame.image.clone(),
        source,
    };
    for z in 0..nz {
        let data = image
            .slice(z, 0)
            .ok_or_else(|| ImportError::Mismatch {
                path: frame.image.clone(),
                reason: format!("slice {z} missing"),
            })?
            .to_vec();
        let mut slice = Slice2D {
            width: w,
            height: h,
            spacing,
            data,
        };
        if let Some(t) = transform {
            t(&pt.id, z, frame.frame, &mut slice);
        }
        let (img, _) = prepare_image(&slice, p).map_err(image_err)?;
        let lab = labels
            .get(z * w * h..(z + 1) * w * h)
            .ok_or_else(|| ImportError::Mismatch {
                path: frame.image.clone(),
                reason: format!("labels for slice {z} missing"),
            })?;
        let mask = prepare_labels(lab, w, h, spacing, p).map_err(image_err)?;
        let meta = FrameMeta {
            patient_id: pt.id.clone(),
            group: pt.info.group.clone(),
            slice: z,
            phase_index: frame.frame.saturating_sub(1),
            phase: frame.phase,
            labelled: vec![true; CLASSES],
            source: frame.image.display().to_string(),
            native_spacing: spacing,
        };
        out.push(Prepared {
            image: img,
            mask,
            meta,
        });
    }
    Ok(())
}

/// Images and labels must share dimensions and in-plane spacing, and be single-phase volumes.
fn check_same_grid(image: &Volume, labels: &Volume, labels_path: &Path) -> Result<(), ImportError> {
    let mismatch = |reason: String| ImportError::Mismatch {
        path: labels_path.into(),
        reason,
    };
    if image.dims != labels.dims {
        return Err(mismatch(format!(
            "labels are {:?} but the image is {:?}",
            labels.dims, image.dims
        )));
    }
    if image.dims[3] != 1 {
        return Err(mismatch(format!(
            "expected a single-phase volume, got {} phases",
            image.dims[3]
        )));
    }
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * a.abs().max(b.abs());
    if !(0..3).all(|i| close(image.spacing[i], labels.spacing[i])) {
        return Err(mismatch(format!(
            "label spacing {:?} differs from image spacing {:?}",
            labels.spacing, image.spacing
        )));
    }
    Ok(())
}

/// ACDC label voxels (stored as numbers of any type) to cineseg class indices.
fn map_labels(labels: &Volume, path: &Path) -> Result<Vec<u8>, ImportError> {
    labels
        .data
        .iter()
        .map(|&v| {
            let raw = v.round();
            if (v - raw).abs() > 1e-3 || !(0.0..=255.0).contains(&raw) {
                return Err(ImportError::Mismatch {
                    path: path.into(),
                    reason: format!("label voxel value {v} is not a class index"),
                });
            }
            acdc::acdc_to_cineseg(raw as u8).map_err(|e| {
                IoError::Label {
                    path: path.into(),
                    value: e.0,
                }
                .into()
            })
        })
        .collect()
}
