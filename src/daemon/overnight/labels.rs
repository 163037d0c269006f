//! Corrected contours that come back to the daemon: a Segmentation object received like any
//! other instance is not segmented again but kept, by the series it was drawn on, as training
//! data for the overnight job; that job pairs it with the kept images of that series.
//!
//! ```text
//! <spool>/labels/<key>/series.txt               SeriesInstanceUID the contours were drawn on
//! <spool>/labels/<key>/<received ms>-<job>.dcm  each SEG received for it; the newest wins
//! ```
//! `<key>` is a hash of the UID, never DICOM text.

use crate::daemon::queue::{short_hash, JobQueue, JobRecord, JobState};
use crate::daemon::DaemonError;
use crate::dicom::instance::read_capped;
use crate::dicom::masks::LabelMasks;
use crate::dicom::seg::read_seg;
use crate::dicom::seg_refs::segmentation_reference;
use crate::dicom::stack::load_files;
use crate::dicom::{AssembleOptions, CineStack};
use std::path::{Path, PathBuf};

/// Keeps the segmentations of `job` under `labels_dir` if its instances are segmentations;
/// returns how many were kept, or `None` when the job holds images (to be segmented as usual).
/// Each kept file is copied and fsync'd before the caller lets the spool discard the original.
pub fn keep_if_segmentation(
    job: &JobRecord,
    objects: &Path,
    labels_dir: &Path,
) -> Result<Option<usize>, DaemonError> {
    let seg_err = DaemonError::dicom("received segmentation");
    let mut kept = 0;
    for (n, f) in job.files.iter().enumerate() {
        let src = objects.join(f);
        let bytes = read_capped(&src).map_err(seg_err)?;
        let reference = match segmentation_reference(&bytes, &src) {
            Ok(r) => r,
            // Not readable as a segmentation: the image path reads it again and names the
            // instance and its defect; it is no "received segmentation".
            Err(_) if n == 0 => return Ok(None),
            Err(e) => {
                log::warn!(
                    "job {}: {f} came in the same series as a segmentation but is unreadable \
                     ({}); ignored",
                    job.id,
                    crate::text::printable(&e.to_string())
                );
                continue;
            }
        };
        let Some(series) = reference else {
            // The series' first instance decides what the whole job is.
            if n == 0 {
                return Ok(None);
            }
            log::warn!(
                "job {}: {f} is not a segmentation but came in the same series as one; ignored",
                job.id
            );
            continue;
        };
        let dir = labels_dir.join(short_hash(&series));
        crate::daemon::fsio::ensure_dir(&dir)?;
        let uid_file = dir.join("series.txt");
        if !uid_file.exists() {
            crate::daemon::fsio::write_atomic(
                &dir.join("series.txt.tmp"),
                &uid_file,
                series.as_bytes(),
            )?;
        }
        let dst = dir.join(format!("{:013}-{}-{n}.dcm", job.last_received_ms, job.id));
        crate::daemon::fsio::write_atomic(&dst.with_extension("tmp"), &dst, &bytes)?;
        kept += 1;
    }
    Ok((kept > 0).then_some(kept))
}

/// A series with corrected contours, ready to become training frames.
pub struct LabelledSeries {
    /// Name of the SEG file used (its file name is unique; the overnight state records it).
    pub label_file: String,
    pub stack: CineStack,
    pub masks: LabelMasks,
}

/// The newest SEG file of every labelled series (`<key>/<file>`), sorted: a cheap listing that
/// tells whether new contours arrived without decoding anything.
pub fn label_files(labels_dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(labels_dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|dir| {
            newest_seg(&dir).and_then(|f| f.file_name().map(|n| n.to_string_lossy().to_string()))
        })
        .collect();
    out.sort();
    out
}

fn newest_seg(dir: &Path) -> Option<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    segs.sort();
    segs.pop()
}

/// Every labelled series whose images the spool still holds, with its newest SEG. Series
/// whose images are gone (spool.keep_received off) or whose SEG does not fit them are logged
/// and left out; they never stop the others.
pub fn labelled_series(
    labels_dir: &Path,
    queue: &JobQueue,
    objects: &Path,
) -> Result<Vec<LabelledSeries>, DaemonError> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(labels_dir) else {
        return Ok(out);
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut jobs = queue.list(JobState::Stored)?;
    jobs.extend(queue.list(JobState::Done)?);
    for dir in dirs {
        let uid_file = dir.join("series.txt");
        let Ok(series) = std::fs::read_to_string(&uid_file) else {
            log::warn!("{}: no series.txt; skipped", dir.display());
            continue;
        };
        let Some(seg) = newest_seg(&dir) else {
            continue;
        };
        let Some(images) = jobs
            .iter()
            .filter(|j| j.series_uid == series.trim())
            .max_by_key(|j| j.epoch)
        else {
            log::warn!(
                "{}: the images these contours were drawn on were never processed here; skipped",
                seg.display()
            );
            continue;
        };
        let files: Vec<PathBuf> = images
            .files
            .iter()
            .map(|f| objects.join(f))
            .filter(|p| p.exists())
            .collect();
        if files.len() < images.files.len() {
            log::warn!(
                "{}: {} of the {} images of job {} are gone (set spool.keep_received = true to keep them for fine-tuning); skipped",
                seg.display(),
                images.files.len() - files.len(),
                images.files.len(),
                images.id
            );
            continue;
        }
        let stack = match load_files(&files, objects, &AssembleOptions::default()) {
            Ok(scan) => scan.stacks.into_iter().max_by_key(|s| {
                s.slices
                    .iter()
                    .map(|sl| sl.frames.iter().flatten().count())
                    .sum::<usize>()
            }),
            Err(e) => {
                log::warn!(
                    "job {}: images not readable for fine-tuning: {e}",
                    images.id
                );
                continue;
            }
        };
        let Some(stack) = stack else { continue };
        match read_seg(&seg, &stack) {
            Ok(masks) => out.push(LabelledSeries {
                label_file: seg
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                stack,
                masks,
            }),
            Err(e) => log::warn!("{e}; these contours are not used"),
        }
    }
    Ok(out)
}
