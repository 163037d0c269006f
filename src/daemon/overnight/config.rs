//! The `[finetune]` section of `cineseg.toml`: when the overnight job may run, where the model
//! registry lives, how a candidate must prove itself, and the fine-tuning recipe.

use super::window::Window;
use crate::train::finetune::{FinetuneRecipe, PhaseRecipe};
use crate::train::subset::Subset;
use crate::train::trainer::Trainable;
use serde::Deserialize;
use std::path::PathBuf;

/// Overnight fine-tuning on corrected contours. Off unless `enabled`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// Run the overnight job at all.
    pub enabled: bool,
    /// Local time window `HH:MM-HH:MM` (may wrap midnight; `00:00-24:00` is always).
    pub window: String,
    /// Model registry folder (default: `<spool.dir>/registry`).
    pub registry: Option<PathBuf>,
    /// Site name; the held-out split is drawn once per site and never re-drawn.
    pub site: String,
    /// Labelled series not yet trained on that make a night's run worthwhile.
    pub min_new_series: usize,
    /// Fraction of patients held out for the promotion test (fixed at the first draw).
    pub held_out_fraction: f64,
    /// Mean held-out Dice the candidate must gain over the serving model to be promoted.
    pub margin: f64,
    /// CPU threads for training; inference keeps its own.
    pub threads: usize,
    /// Seconds between checks of the window and of new labels.
    pub check_interval_s: u64,
    /// Frames to learn from: all, ed-es, patients:N, random:N.
    pub subset: String,
    /// Phase 1 (encoder frozen, BatchNorm trained) epochs and learning rate.
    pub epochs1: usize,
    pub lr1: f64,
    /// Phase 2 (everything trained) epochs and learning rate.
    pub epochs2: usize,
    pub lr2: f64,
    pub batch: usize,
    /// Images per epoch (default: the number of training frames).
    pub images_per_epoch: Option<usize>,
    /// Geometric and intensity augmentation while fine-tuning.
    pub augment: bool,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        let paper = FinetuneRecipe::paper();
        FinetuneConfig {
            enabled: false,
            window: "01:00-05:00".into(),
            registry: None,
            site: "site".into(),
            min_new_series: 1,
            held_out_fraction: 0.2,
            margin: 0.005,
            threads: 1,
            check_interval_s: 60,
            subset: "all".into(),
            epochs1: paper.phases[0].epochs,
            lr1: paper.phases[0].lr,
            epochs2: paper.phases[1].epochs,
            lr2: paper.phases[1].lr,
            batch: paper.batch,
            images_per_epoch: None,
            augment: true,
        }
    }
}

impl FinetuneConfig {
    /// Checks every field a night's run would otherwise trip over hours later.
    pub fn validate(&self) -> Result<(), String> {
        self.window()?;
        self.subset()?;
        if !(self.held_out_fraction > 0.0 && self.held_out_fraction < 1.0) {
            return Err(format!(
                "finetune.held_out_fraction {} must be between 0 and 1",
                self.held_out_fraction
            ));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(format!(
                "finetune.margin {} must be a non-negative number",
                self.margin
            ));
        }
        if self.batch == 0 || self.check_interval_s == 0 || self.min_new_series == 0 {
            return Err(
                "finetune.batch, check_interval_s and min_new_series must be at least 1".into(),
            );
        }
        self.recipe()
            .check()
            .map_err(|e| format!("finetune recipe: {e}"))
    }

    /// The parsed time window.
    pub fn window(&self) -> Result<Window, String> {
        self.window
            .parse::<Window>()
            .map_err(|e| format!("finetune.window: {e}"))
    }

    /// The parsed frame subset.
    pub fn subset(&self) -> Result<Subset, String> {
        self.subset
            .parse::<Subset>()
            .map_err(|e| format!("finetune.subset: {e}"))
    }

    /// The fine-tuning recipe these settings describe (the paper's by default). The last
    /// epoch is kept: the held-out patients are the promotion test, so choosing an epoch on
    /// them would flatter the candidate.
    pub fn recipe(&self) -> FinetuneRecipe {
        let mut r = FinetuneRecipe::paper();
        r.phases = vec![
            PhaseRecipe {
                epochs: self.epochs1,
                lr: self.lr1,
                trainable: Trainable::FrozenEncoder,
            },
            PhaseRecipe {
                epochs: self.epochs2,
                lr: self.lr2,
                trainable: Trainable::All,
            },
        ];
        r.batch = self.batch;
        r.images_per_epoch = self.images_per_epoch;
        r.keep_last = true;
        if !self.augment {
            r.augment = crate::train::augment::AugmentConfig::none();
        }
        r
    }
}
