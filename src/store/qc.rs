//! Label quality control of a whole frame store ([`crate::analysis::label_qc`] per frame):
//! the current model segments every stored image, each frame is measured and judged, and the
//! flagged frames are taken out of the store (it is rewritten without them) and listed in
//! `label_qc.json` beside it with their reasons. `import` and the overnight job run this before
//! anything is trained on the store, so a flagged frame is never trained on.

use serde::Serialize;
use std::path::Path;

use super::{FrameMeta, FrameStore, StoreError};
use crate::analysis::label_qc::{judge, measure, LabelProblem, QcMeasures, QcThresholds};
use crate::nn::loss::argmax;
use crate::nn::{Backend, Model};
use crate::train::data::{plain_batch, FrameSource};

/// The report file written into a screened store.
pub const REPORT: &str = "label_qc.json";

/// One frame taken out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    /// Its description in the store (patient, phase, slice, source file).
    pub frame: FrameMeta,
    /// What was measured.
    pub measures: QcMeasures,
    /// Why it was flagged.
    pub problems: Vec<LabelProblem>,
}

/// What a screening found.
#[derive(Debug, Clone, Serialize)]
pub struct QcReport {
    /// Frames screened.
    pub frames: usize,
    /// The thresholds applied.
    pub thresholds: QcThresholds,
    /// The model the contours were compared with (its identity), if any.
    pub model: Option<String>,
    /// Frames taken out of the store.
    pub excluded: Vec<Excluded>,
}

impl QcReport {
    /// One line per excluded frame, for the CLI and the overnight log.
    pub fn lines(&self) -> Vec<String> {
        self.excluded
            .iter()
            .map(|e| {
                let why: Vec<String> = e.problems.iter().map(LabelProblem::describe).collect();
                format!(
                    "{} {:?} slice {} ({}): {}",
                    e.frame.patient_id,
                    e.frame.phase,
                    e.frame.slice,
                    e.frame.source,
                    why.join("; ")
                )
            })
            .collect()
    }
}

/// The measures of every frame of `store` (the model's prediction included when a model is
/// given), in store order. `progress(done, total)` after each batch.
pub fn measure_store(
    store: &FrameStore,
    model: Option<(&mut dyn Backend, &Model)>,
    t: &QcThresholds,
    batch: usize,
    progress: &dyn Fn(usize, usize),
) -> Result<Vec<QcMeasures>, StoreError> {
    let size = store.preprocess().size;
    let px = size * size;
    let all: Vec<usize> = (0..store.len()).collect();
    let mut out = Vec::with_capacity(all.len());
    let backend_err = |e: crate::nn::NnError| StoreError::Frame {
        path: store.dir().to_path_buf(),
        reason: format!("label QC could not run the model: {e}"),
    };
    let mut model = model;
    if let Some((backend, m)) = model.as_mut() {
        backend.load_inference(&m.params).map_err(backend_err)?;
    }
    for chunk in all.chunks(batch.max(1)) {
        let predicted = match model.as_mut() {
            Some((backend, _)) => Some(argmax(
                &backend
                    .infer(&plain_batch(store, chunk))
                    .map_err(backend_err)?,
            )),
            None => None,
        };
        for (slot, &i) in chunk.iter().enumerate() {
            let pred = predicted.as_ref().map(|p| &p[slot * px..(slot + 1) * px]);
            out.push(measure(
                store.mask(i),
                size,
                size,
                &FrameSource::labelled(store, i),
                pred,
                t,
            ));
        }
        progress(out.len(), all.len());
    }
    Ok(out)
}

/// Screens the store at `dir`: flagged frames are removed (the store is rewritten without
/// them, atomically by rename) and the report is written to `dir/label_qc.json`.
pub fn screen_store(
    dir: &Path,
    model: Option<(&mut dyn Backend, &Model, String)>,
    t: &QcThresholds,
    batch: usize,
    progress: &dyn Fn(usize, usize),
) -> Result<QcReport, StoreError> {
    let store = FrameStore::open(dir)?;
    let (model, name) = match model {
        Some((b, m, n)) => (Some((b, m)), Some(n)),
        None => (None, None),
    };
    let measures = measure_store(&store, model, t, batch, progress)?;
    let mut excluded = Vec::new();
    let mut keep = Vec::with_capacity(store.len());
    for (i, m) in measures.iter().enumerate() {
        let problems = judge(m, t);
        if problems.is_empty() {
            keep.push(i);
        } else {
            excluded.push(Excluded {
                frame: store.meta(i).clone(),
                measures: *m,
                problems,
            });
        }
    }
    let report = QcReport {
        frames: store.len(),
        thresholds: *t,
        model: name,
        excluded,
    };
    if keep.len() < store.len() {
        rewrite_keeping(&store, dir, &keep)?;
    }
    let json = serde_json::to_vec_pretty(&report).map_err(|e| StoreError::Frame {
        path: dir.to_path_buf(),
        reason: format!("label QC report: {e}"),
    })?;
    let path = dir.join(REPORT);
    crate::fsio::write_atomic(&dir.join("label_qc.json.tmp"), &path, &json).map_err(|e| {
        StoreError::Frame {
            path: path.clone(),
            reason: e.to_string(),
        }
    })?;
    Ok(report)
}

/// Rewrites the store at `dir` with only the frames `keep` (in order).
fn rewrite_keeping(store: &FrameStore, dir: &Path, keep: &[usize]) -> Result<(), StoreError> {
    let tmp = dir.with_extension("qc-tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| StoreError::fs(&tmp, e))?;
    }
    let mut w = FrameStore::create(&tmp, store.preprocess(), store.classes())?;
    for &i in keep {
        w.push(store.image(i), store.mask(i), store.meta(i).clone())?;
    }
    w.finish()?;
    let old = dir.with_extension("qc-old");
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| StoreError::fs(&old, e))?;
    }
    std::fs::rename(dir, &old).map_err(|e| StoreError::fs(dir, e))?;
    std::fs::rename(&tmp, dir).map_err(|e| StoreError::fs(&tmp, e))?;
    std::fs::remove_dir_all(&old).map_err(|e| StoreError::fs(&old, e))
}
