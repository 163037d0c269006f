//! One night's fine-tuning run: the site's labelled series become a frame store, the held-out
//! patients (drawn once per site) are set aside, the serving model is fine-tuned on the rest,
//! and the candidate is registered and promoted only if it beats the serving model on the
//! held-out patients by the margin.

use super::config::FinetuneConfig;
use super::labels::LabelledSeries;
use crate::daemon::queue::short_hash;
use crate::nn::device::DeviceChoice;
use crate::nn::weights::StoreAs;
use crate::nn::{Model, Preprocess};
use crate::registry::evaluate::held_out_validation;
use crate::registry::{Decision, Registry};
use crate::store::import_dicom::{push_labelled_stack, unknown_phase};
use crate::store::FrameStore;
use crate::train::finetune::{finetune, split_by_patient};
use crate::train::subset::{select, store_tags};
use crate::train::trainer::NoProgress;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a night's run failed, by the step that failed; the daemon logs it and retries the
/// next night, so the message must say which part of the site's data or set-up to look at.
#[derive(Debug, thiserror::Error)]
pub enum OvernightError {
    /// The `[finetune]` settings cannot be used.
    #[error("{0}")]
    Config(String),
    /// The frame store of the night's contours could not be written or read.
    #[error("frame store of the site's contours: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A labelled series could not be turned into training frames.
    #[error("importing the site's contours: {0}")]
    Import(#[from] crate::store::ImportError),
    /// The model registry failed (reading, registering, judging or promoting).
    #[error("model registry: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    /// The registry holds versions but none is current.
    #[error("the registry has no current model")]
    NoCurrentModel,
    /// No compute backend could be opened for training.
    #[error("compute backend for fine-tuning: {0}")]
    Backend(crate::nn::NnError),
    /// Frame selection or the fine-tuning itself failed.
    #[error("fine-tuning: {0}")]
    Train(#[from] crate::train::TrainError),
    /// The fine-tuned candidate could not be saved.
    #[error("saving the candidate {path}: {source}")]
    SaveCandidate {
        path: PathBuf,
        #[source]
        source: crate::nn::NnError,
    },
}

/// Where a night's run keeps its files and what it starts from.
pub struct NightPlan<'a> {
    /// `<spool>/finetune`: the frame store, per-data run folders, the last decision.
    pub work_dir: PathBuf,
    pub registry_dir: PathBuf,
    /// The model file the daemon was started with, registered as the first version.
    pub serving_file: &'a Path,
    /// Input preparation of the serving model (frames are stored on its grid).
    pub preprocess: &'a Preprocess,
    pub cfg: &'a FinetuneConfig,
    pub device: DeviceChoice,
}

/// How a night ended.
// One value per night: the size of the promoted model inline costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum NightOutcome {
    /// Nothing trained, and why.
    Skipped(String),
    /// The window closed first; the same data resume from the checkpoints next night.
    Unfinished,
    /// A candidate was trained and judged; with the model when it was promoted.
    Judged(Decision, Option<(Model, String)>),
}

/// Runs one night with at most `budget` of training time.
pub fn run_night(
    plan: &NightPlan<'_>,
    labelled: &[LabelledSeries],
    budget: Duration,
) -> Result<NightOutcome, OvernightError> {
    let cfg = plan.cfg;
    let store_dir = plan.work_dir.join("data.store");
    let mut writer = FrameStore::create(&store_dir, plan.preprocess, 4)?;
    for s in labelled {
        // Patients by a hash of their ID: the split and the store never hold the ID itself.
        let who = s
            .stack
            .ids
            .patient_id
            .clone()
            .unwrap_or_else(|| s.label_file.clone());
        push_labelled_stack(
            &mut writer,
            &short_hash(&who),
            "site",
            &s.stack,
            &s.masks,
            plan.preprocess,
            &unknown_phase,
        )?;
    }
    writer.finish()?;
    let (mut backend, why) =
        crate::nn::device::select(plan.device, cfg.threads).map_err(OvernightError::Backend)?;
    // Label QC against the model the daemon serves: flagged frames leave the store before
    // the split, so they are neither trained on nor used to judge the candidate.
    let serving = Model::load(plan.serving_file).map_err(OvernightError::Backend)?;
    let qc = crate::store::qc::screen_store(
        &store_dir,
        Some((
            backend.as_mut(),
            &serving,
            plan.serving_file.display().to_string(),
        )),
        &crate::analysis::label_qc::QcThresholds::default(),
        cfg.batch,
        &|_, _| {},
    )?;
    for line in qc.lines() {
        log::warn!("overnight label QC: left out for review: {line}");
    }
    log::info!(
        "overnight label QC: {} of {} frames left out ({})",
        qc.excluded.len(),
        qc.frames,
        store_dir.join(crate::store::qc::REPORT).display()
    );
    let store = FrameStore::open(&store_dir)?;

    let mut reg = Registry::open(&plan.registry_dir)?;
    let patients: Vec<&str> = store
        .frames()
        .iter()
        .map(|f| f.patient_id.as_str())
        .collect();
    let split = reg.held_out_split(&cfg.site, cfg.held_out_fraction, patients)?;
    let (train_idx, held) = split_by_patient(&store, |p| split.is_held_out(p));
    if train_idx.is_empty() || held.is_empty() {
        return Ok(NightOutcome::Skipped(format!(
            "{} training and {} held-out frames: contours of at least two patients are needed",
            train_idx.len(),
            held.len()
        )));
    }
    let subset = cfg.subset().map_err(OvernightError::Config)?;
    let train_idx = select(&store, &store_tags(&store), &train_idx, &subset, 0)?;

    log::info!(
        "overnight fine-tuning on {} frames, {} held out, with {why}",
        train_idx.len(),
        held.len()
    );
    let mut evaluate =
        |m: &Model| held_out_validation(backend.as_mut(), m, &store, &held, cfg.batch);
    if reg.current().is_none() {
        let first = reg.add(
            plan.serving_file,
            None,
            "initial serving model",
            "registered by the first overnight run",
        )?;
        let d = reg.promote(&first.id, cfg.margin, &mut evaluate)?;
        log::info!(
            "registry: serving model {} is the first version ({})",
            first.id,
            d.reason
        );
    }
    let base_id = reg
        .current()
        .map(str::to_string)
        .ok_or(OvernightError::NoCurrentModel)?;
    let base = reg.load(&base_id)?;

    let mut files: Vec<&str> = labelled.iter().map(|s| s.label_file.as_str()).collect();
    files.sort_unstable();
    let run_dir = plan.work_dir.join("runs").join(short_hash(&format!(
        "{base_id}|{}|{}",
        files.join("|"),
        cfg.subset
    )));
    let recipe = cfg.recipe();
    let (model, summary) = finetune(
        backend.as_mut(),
        &base,
        &store,
        &train_idx,
        &[],
        &recipe,
        &run_dir,
        Some(budget),
        &NoProgress,
    )?;
    let Some(model) = model else {
        log::info!("overnight fine-tuning stopped by the end of the window after {} phase(s); resumes next night", summary.phases.len());
        return Ok(NightOutcome::Unfinished);
    };
    let cand_file = run_dir.join("candidate.safetensors");
    model
        .save(&cand_file, StoreAs::F32)
        .map_err(|source| OvernightError::SaveCandidate {
            path: cand_file.clone(),
            source,
        })?;
    let data = format!(
        "{} labelled series, {} frames ({} held out; {} more left out by label QC)",
        labelled.len(),
        store.len(),
        held.len(),
        qc.excluded.len()
    );
    let cand = reg.add(
        &cand_file,
        Some(&base_id),
        &data,
        &format!("overnight fine-tuning, subset {}", cfg.subset),
    )?;
    if cand.id == base_id {
        return Ok(NightOutcome::Skipped(
            "fine-tuning left the model unchanged".into(),
        ));
    }
    let mut evaluate =
        |m: &Model| held_out_validation(backend.as_mut(), m, &store, &held, cfg.batch);
    let decision = reg.promote(&cand.id, cfg.margin, &mut evaluate)?;
    let decision_file = plan.work_dir.join("last-decision.json");
    if let Ok(json) = serde_json::to_vec_pretty(&decision) {
        if let Err(e) = std::fs::write(&decision_file, json) {
            log::warn!("{}: {e}", decision_file.display());
        }
    }
    let promoted = if decision.promoted {
        Some((reg.load(&cand.id)?, cand.id.clone()))
    } else {
        None
    };
    Ok(NightOutcome::Judged(decision, promoted))
}
