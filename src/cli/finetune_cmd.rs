//! `cineseg finetune`: adapt a trained model to a new site's labelled frames with the
//! transfer-learning recipe (see `train::finetune`), resumable and within a time budget.

use super::train_cmd::{parse_duration, BarProgress};
use super::{progress::bar, CliError, VALIDATION_FRACTION};
use crate::nn::weights::StoreAs;
use crate::nn::Model;
use crate::store::{split::is_validation, FrameStore};
use crate::train::augment::AugmentConfig;
use crate::train::finetune::{
    finetune, parse_classes, split_by_patient, FinetuneRecipe, PartialLabels,
};
use crate::train::subset::{select, store_tags, Subset};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct FinetuneArgs {
    /// The model to start from.
    #[arg(long)]
    model: PathBuf,
    /// Frame store of the target site (`cineseg import`).
    #[arg(long)]
    data: PathBuf,
    /// Where the fine-tuned model is written.
    #[arg(long)]
    out: PathBuf,
    /// Checkpoints and per-phase histories (default: OUT with `.run` instead of its extension).
    /// Rerunning the same command resumes from here.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Frames to learn from: all, ed-es, patients:N or random:N (validation patients never).
    #[arg(long, default_value = "all")]
    subset: Subset,
    /// Only these classes were drawn (e.g. lv,myo); others are merged into background by the loss.
    #[arg(long)]
    classes: Option<String>,
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Fraction of patients held out for validation (fixed by patient id).
    #[arg(long, default_value_t = VALIDATION_FRACTION)]
    validation_fraction: f64,
    /// Stop after this much training time in this call, e.g. 45m, 6h (rerun to continue).
    #[arg(long, value_parser = parse_duration)]
    budget: Option<Duration>,
    /// Compute device: auto, cpu, cuda.
    #[arg(long, default_value = "auto")]
    device: crate::nn::device::DeviceChoice,
}

/// The fine-tuning recipe's flags, shared by `finetune` and `experiment transfer`; the defaults
/// are the paper's recipe.
#[derive(clap::Args, Debug)]
pub struct RecipeArgs {
    /// Epochs of phase 1 (encoder convolutions frozen, BatchNorm trained).
    #[arg(long, default_value_t = 10)]
    epochs1: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr1: f64,
    /// Epochs of phase 2 (everything trained).
    #[arg(long, default_value_t = 10)]
    epochs2: usize,
    #[arg(long, default_value_t = 1e-5)]
    lr2: f64,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Images per epoch (default for finetune: the number of training frames of the whole
    /// store, so every subset sees as many images; for experiments: the arm's own frames).
    #[arg(long)]
    images_per_epoch: Option<usize>,
    /// A flat learning rate per phase instead of warm-up + cosine decay.
    #[arg(long)]
    constant_lr: bool,
    #[arg(long)]
    no_augment: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl RecipeArgs {
    /// The recipe these flags describe; `images_per_epoch` applies when the flag is absent.
    pub fn recipe(&self, images_per_epoch: Option<usize>) -> FinetuneRecipe {
        let mut r = FinetuneRecipe::paper();
        r.phases[0].epochs = self.epochs1;
        r.phases[0].lr = self.lr1;
        r.phases[1].epochs = self.epochs2;
        r.phases[1].lr = self.lr2;
        r.batch = self.batch;
        r.weight_decay = self.weight_decay;
        r.seed = self.seed;
        r.constant_lr = self.constant_lr;
        r.images_per_epoch = self.images_per_epoch.or(images_per_epoch);
        if self.no_augment {
            r.augment = AugmentConfig::none();
        }
        r
    }

    /// The seed (subset draws use it too).
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// `OUT` with its extension replaced by `.run`.
pub fn default_run_dir(out: &Path) -> PathBuf {
    out.with_extension("run")
}

pub fn run(a: FinetuneArgs, threads: usize) -> Result<(), CliError> {
    let store = FrameStore::open(&a.data)?;
    let mut base = Model::load(&a.model)?;
    if base
        .preprocess
        .as_ref()
        .is_some_and(|p| p != store.preprocess())
    {
        log::warn!(
            "{} was trained with other preprocessing than {}; using the store's",
            a.model.display(),
            a.data.display()
        );
    }
    base.preprocess = Some(store.preprocess().clone());
    let drawn = match &a.classes {
        Some(list) => parse_classes(list, &base.labels)?,
        None => vec![true; base.config().classes],
    };
    let src = PartialLabels::new(&store, drawn);
    let fraction = a.validation_fraction;
    let (candidates, val_idx) = split_by_patient(&src, |p| is_validation(p, fraction));
    let train_idx = select(
        &src,
        &store_tags(&store),
        &candidates,
        &a.subset,
        a.recipe.seed(),
    )?;
    let recipe = a.recipe.recipe(Some(candidates.len()));
    let run_dir = a.run_dir.clone().unwrap_or_else(|| default_run_dir(&a.out));
    super::ensure_dir(&run_dir)?;
    let (mut backend, why) = crate::nn::device::select(a.device, threads)?;
    println!(
        "fine-tuning {} on {} of {} training frames ({}), {} validation frames, {} images per epoch, on {} ({why})",
        a.model.display(),
        train_idx.len(),
        candidates.len(),
        a.subset,
        val_idx.len(),
        recipe.images_per_epoch.unwrap_or(0),
        backend.describe()
    );
    let progress = BarProgress {
        pb: bar(0, "epoch 1"),
    };
    let (model, summary) = finetune(
        backend.as_mut(),
        &base,
        &src,
        &train_idx,
        &val_idx,
        &recipe,
        &run_dir,
        a.budget,
        &progress,
    )?;
    progress.pb.finish_and_clear();
    super::write_json(&run_dir.join("finetune.json"), &summary)?;
    let Some(mut model) = model else {
        println!(
            "stopped by the time budget; rerun the same command to continue ({})",
            run_dir.display()
        );
        return Ok(());
    };
    model
        .extra
        .insert("parent".into(), a.model.display().to_string());
    model
        .extra
        .insert("train_data".into(), a.data.display().to_string());
    model
        .extra
        .insert("finetune_subset".into(), a.subset.to_string());
    model
        .extra
        .insert("validation_fraction".into(), fraction.to_string());
    model.extra.insert(
        "recipe".into(),
        serde_json::to_string(&recipe).unwrap_or_default(),
    );
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        super::ensure_dir(dir)?;
    }
    model.save(&a.out, StoreAs::F32)?;
    println!(
        "kept phase {} epoch {} (mean validation Dice {:.4}) -> {}",
        summary.kept_phase,
        summary.kept_epoch,
        summary.kept_score,
        a.out.display()
    );
    Ok(())
}
