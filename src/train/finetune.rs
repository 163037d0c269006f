//! Transfer learning to a new site: the recipe of Ankenbrand et al. (MRM 2021) on top of the
//! training loop. Phase 1 trains with the encoder convolutions frozen (BatchNorm, decoder and
//! head still learn) at 1e-4, phase 2 trains everything at 1e-5, 10 + 10 epochs. An epoch is a
//! fixed number of images (the size of the site's full training set), so a run on ED/ES frames
//! or on one patient sees as many images as a run on every frame, and subsets are compared at
//! equal effort.
//!
//! Each phase runs in its own folder under the run directory with the loop's checkpoints, so a
//! run stopped by its time budget resumes where it stopped, phase by phase. Partial labels (a
//! site that drew only LV and MYO) go through the marginal loss: [`PartialLabels`] marks the
//! undrawn classes, and the loss merges them into background instead of training them as absent.

use super::augment::AugmentConfig;
use super::checkpoint::CheckpointDir;
use super::data::FrameSource;
use super::trainer::{train, Progress, TrainOptions, TrainSummary, Trainable};
use super::TrainError;
use crate::nn::{Backend, Model};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One phase of a fine-tuning recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecipe {
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub trainable: Trainable,
}

/// A complete fine-tuning recipe; [`FinetuneRecipe::paper`] is the default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneRecipe {
    /// Phases run in order, each starting from the previous one's last weights.
    pub phases: Vec<PhaseRecipe>,
    pub batch: usize,
    pub weight_decay: f64,
    pub seed: u64,
    /// A flat rate per phase instead of warm-up + cosine decay.
    pub constant_lr: bool,
    pub augment: AugmentConfig,
    /// Images per epoch, the same for every subset: the size of the site's full training set.
    /// `None` uses the size of the subset itself (no scaling).
    pub images_per_epoch: Option<usize>,
    /// Keep the last weights even when validation frames are given: for experiments that
    /// monitor test Dice per epoch, where choosing the best test epoch would leak the test set.
    #[serde(default)]
    pub keep_last: bool,
}

impl FinetuneRecipe {
    /// The paper's recipe: frozen encoder at 1e-4 for 10 epochs, then everything at 1e-5 for 10.
    pub fn paper() -> Self {
        FinetuneRecipe {
            phases: vec![
                PhaseRecipe {
                    epochs: 10,
                    lr: 1e-4,
                    trainable: Trainable::FrozenEncoder,
                },
                PhaseRecipe {
                    epochs: 10,
                    lr: 1e-5,
                    trainable: Trainable::All,
                },
            ],
            batch: 8,
            weight_decay: 1e-4,
            seed: 0,
            constant_lr: false,
            augment: AugmentConfig::default(),
            images_per_epoch: None,
            keep_last: false,
        }
    }

    /// Rejects recipes that cannot run, before any time is spent.
    pub fn check(&self) -> Result<(), TrainError> {
        if self.phases.is_empty() || self.phases.iter().all(|p| p.epochs == 0) {
            return Err(TrainError::Data("the recipe has no epoch to run".into()));
        }
        if let Some(p) = self
            .phases
            .iter()
            .find(|p| !(p.lr.is_finite() && p.lr > 0.0))
        {
            return Err(TrainError::Data(format!(
                "learning rate {} is not a positive number",
                p.lr
            )));
        }
        if self.batch == 0 || self.images_per_epoch == Some(0) {
            return Err(TrainError::Data(
                "batch and images per epoch must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A frame source whose annotations are restricted to the classes a site drew: classes not in
/// `drawn` count as unlabelled everywhere (the loss merges them into background, validation
/// skips them).
pub struct PartialLabels<'a> {
    inner: &'a dyn FrameSource,
    drawn: Vec<bool>,
}

impl<'a> PartialLabels<'a> {
    /// `drawn[c]` says whether class `c` may count as labelled; background always does.
    pub fn new(inner: &'a dyn FrameSource, mut drawn: Vec<bool>) -> Self {
        if let Some(bg) = drawn.first_mut() {
            *bg = true;
        }
        PartialLabels { inner, drawn }
    }
}

impl FrameSource for PartialLabels<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn image(&self, i: usize) -> &[f32] {
        self.inner.image(i)
    }
    fn mask(&self, i: usize) -> &[u8] {
        self.inner.mask(i)
    }
    fn labelled(&self, i: usize) -> Vec<bool> {
        let mut l = self.inner.labelled(i);
        for (c, v) in l.iter_mut().enumerate() {
            *v &= self.drawn.get(c).copied().unwrap_or(false);
        }
        l
    }
    fn patient(&self, i: usize) -> &str {
        self.inner.patient(i)
    }
}

/// What a fine-tuning run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinetuneSummary {
    /// Frames the run learned from.
    pub frames: usize,
    pub images_per_epoch: usize,
    /// One summary per phase started (fewer than the recipe's when the budget ran out).
    pub phases: Vec<TrainSummary>,
    pub stopped_by_budget: bool,
    /// Phase (1-based) and epoch whose weights were kept, and their validation score (mean
    /// foreground Dice; -1 without validation frames).
    pub kept_phase: usize,
    pub kept_epoch: usize,
    pub kept_score: f64,
}

impl FinetuneSummary {
    /// Validation Dice per epoch across all phases, for learning curves.
    pub fn curve(&self) -> Vec<super::EpochReport> {
        self.phases
            .iter()
            .flat_map(|p| p.history.iter().cloned())
            .collect()
    }
}

/// Folder of phase `k` (1-based) inside a run directory.
pub fn phase_dir(run_dir: &Path, k: usize) -> PathBuf {
    run_dir.join(format!("phase{k}"))
}

/// Fine-tunes a copy of `base` on `train_idx` frames of `src`, validating on `val_idx`.
///
/// `budget` limits the training time of this call (at least one epoch runs). Returns
/// `Ok((None, summary))` when it ran out first (rerun with the same arguments to continue),
/// otherwise the fine-tuned model: the best-validating epoch over all phases, or the last
/// weights when there are no validation frames or the recipe says `keep_last`. Phases resume
/// from their checkpoints in `run_dir`; a checkpoint written with other options is refused by
/// the loop.
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    backend: &mut dyn Backend,
    base: &Model,
    src: &dyn FrameSource,
    train_idx: &[usize],
    val_idx: &[usize],
    recipe: &FinetuneRecipe,
    run_dir: &Path,
    budget: Option<Duration>,
    progress: &dyn Progress,
) -> Result<(Option<Model>, FinetuneSummary), TrainError> {
    recipe.check()?;
    let per_epoch = recipe.images_per_epoch.unwrap_or(train_idx.len());
    let mut model = base.clone();
    let mut summary = FinetuneSummary {
        frames: train_idx.len(),
        images_per_epoch: per_epoch,
        phases: Vec::new(),
        stopped_by_budget: false,
        kept_phase: 0,
        kept_epoch: 0,
        kept_score: f64::NEG_INFINITY,
    };
    let started = Instant::now();
    let mut ran_here = false;
    let mut last_phase = 0;
    for (k, phase) in recipe
        .phases
        .iter()
        .enumerate()
        .filter(|(_, p)| p.epochs > 0)
    {
        // The loop's budget counts a phase's training time over all resumes; this call's
        // budget is for this call, so each phase gets its earlier time plus what is left.
        let left = budget.map(|b| b.as_secs_f64() - started.elapsed().as_secs_f64());
        if ran_here && left.is_some_and(|l| l <= 0.0) {
            summary.stopped_by_budget = true;
            break;
        }
        let before = CheckpointDir::new(&phase_dir(run_dir, k + 1)).load_state()?;
        let (earlier_seconds, earlier_epochs) =
            before.map_or((0.0, 0), |s| (s.seconds, s.epochs_done));
        let left = left.map(|l| Duration::from_secs_f64(earlier_seconds + l.max(0.0)));
        let mut opts = TrainOptions::new(phase_dir(run_dir, k + 1));
        opts.epochs = phase.epochs;
        opts.batch = recipe.batch;
        opts.lr = phase.lr;
        opts.constant_lr = recipe.constant_lr;
        opts.weight_decay = recipe.weight_decay;
        // Each phase draws its own sample order, yet the run stays a function of one seed.
        opts.seed = recipe.seed.wrapping_add(k as u64);
        opts.augment = recipe.augment.clone();
        opts.images_per_epoch = Some(per_epoch);
        opts.trainable = phase.trainable;
        opts.budget = left;
        std::fs::create_dir_all(&opts.out_dir).map_err(|e| TrainError::io(&opts.out_dir, e))?;
        let s = train(
            backend, &mut model, src, train_idx, val_idx, &opts, progress,
        )?;
        last_phase = k + 1;
        ran_here |= s.epochs_done > earlier_epochs;
        let stopped = s.stopped_by_budget;
        if s.best_score > summary.kept_score {
            summary.kept_phase = k + 1;
            summary.kept_epoch = s.best_epoch;
            summary.kept_score = s.best_score;
        }
        summary.phases.push(s);
        if stopped {
            summary.stopped_by_budget = true;
            break;
        }
    }
    if summary.stopped_by_budget {
        return Ok((None, summary));
    }
    let kept = if val_idx.is_empty() || recipe.keep_last {
        summary.kept_phase = last_phase;
        summary.kept_epoch = summary.phases.last().map_or(0, |p| p.epochs_done);
        summary.kept_score = summary.phases.last().map_or(-1.0, |p| {
            p.history.last().map_or(-1.0, |r| mean_dice(&r.val_dice))
        });
        model
    } else {
        Model::load(&phase_dir(run_dir, summary.kept_phase).join("best.safetensors"))?
    };
    Ok((Some(kept), summary))
}

/// Frame indices of `src` split by patient: `(training, held out)`, where `held_out(patient)`
/// decides (the fixed split by patient id, or a registry's persisted split).
pub fn split_by_patient(
    src: &dyn FrameSource,
    held_out: impl Fn(&str) -> bool,
) -> (Vec<usize>, Vec<usize>) {
    (0..src.len()).partition(|&i| !held_out(src.patient(i)))
}

/// Parses a class list such as `lv,myo` against a model's class names into `drawn` flags
/// (background always drawn), for [`PartialLabels`].
pub fn parse_classes(list: &str, names: &[String]) -> Result<Vec<bool>, TrainError> {
    let mut drawn = vec![false; names.len()];
    if let Some(bg) = drawn.first_mut() {
        *bg = true;
    }
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let pos = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(item))
            .ok_or_else(|| {
                TrainError::Data(format!(
                    "unknown class {item:?} (the model's classes are {})",
                    names.join(", ")
                ))
            })?;
        drawn[pos] = true;
    }
    Ok(drawn)
}

/// Mean of the defined per-class Dice values of an epoch report (-1 when none).
fn mean_dice(d: &[Option<f64>]) -> f64 {
    let v: Vec<f64> = d.iter().flatten().copied().collect();
    if v.is_empty() {
        -1.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}
