//! Unlabelled target images for BatchNorm adaptation: every slice and time point of the NIfTI
//! files in a folder (or one file), put on the model's grid exactly as inference would, so the
//! adapted statistics describe what the model will see at that site. Label files (`*_gt.nii*`)
//! are skipped: adaptation must not depend on contours.

use super::data::MemoryFrames;
use super::TrainError;
use crate::image::{prepare_image, Slice2D};
use crate::io::read_volume;
use crate::nn::Preprocess;
use std::path::{Path, PathBuf};

/// NIfTI image files under `path` (or `path` itself), sorted, label files left out.
pub fn nifti_images(path: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let is_image = |p: &Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        (name.ends_with(".nii") || name.ends_with(".nii.gz")) && !name.contains("_gt.")
    };
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
            let p = entry.map_err(|e| TrainError::io(&dir, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_image(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: no NIfTI image (.nii, .nii.gz) found",
            path.display()
        )));
    }
    Ok(out)
}

/// Every slice of every time point of the images under `path`, prepared with `p`, as frames
/// with empty masks and no class labelled (patient = file name). Stops after `limit` frames.
pub fn load_unlabelled(
    path: &Path,
    p: &Preprocess,
    classes: usize,
    limit: Option<usize>,
) -> Result<MemoryFrames, TrainError> {
    let mut frames = MemoryFrames {
        size: p.size,
        ..Default::default()
    };
    let limit = limit.unwrap_or(usize::MAX);
    let mut unlabelled = vec![false; classes.max(1)];
    unlabelled[0] = true;
    'files: for file in nifti_images(path)? {
        let v = read_volume(&file).map_err(|e| TrainError::Data(e.to_string()))?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("image")
            .to_string();
        for t in 0..v.dims[3] {
            for z in 0..v.dims[2] {
                if frames.images.len() >= limit {
                    break 'files;
                }
                let data = v.slice(z, t).map(<[f32]>::to_vec).unwrap_or_default();
                let s = Slice2D {
                    width: v.dims[0],
                    height: v.dims[1],
                    spacing: [v.spacing[0], v.spacing[1]],
                    data,
                };
                let (img, _) = prepare_image(&s, p)
                    .map_err(|e| TrainError::Data(format!("{}: {e}", file.display())))?;
                frames.images.push(img);
                frames.masks.push(vec![0; p.size * p.size]);
                frames.labelled.push(unlabelled.clone());
                frames.patients.push(name.clone());
            }
        }
    }
    Ok(frames)
}
