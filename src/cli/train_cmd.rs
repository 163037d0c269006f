//! `cineseg train`: train (or continue training) a U-Net on a frame store.

use super::{progress::bar, CliError, VALIDATION_FRACTION};
use crate::nn::cpu::CpuBackend;
use crate::nn::weights::StoreAs;
use crate::nn::{Model, UNetConfig, UNetParams};
use crate::store::{split::is_validation, FrameStore};
use crate::train::augment::AugmentConfig;
use crate::train::trainer::{train, Progress, TrainOptions, Trainable};
use crate::train::EpochReport;
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Frame store written by `cineseg import`.
    #[arg(long)]
    data: PathBuf,
    /// Run directory: checkpoints, best.safetensors, last.safetensors, history.json.
    /// Rerunning the same command resumes from its checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Start from this model instead of random weights.
    #[arg(long)]
    init: Option<PathBuf>,
    /// U-Net width (ignored with --init).
    #[arg(long, default_value_t = 32)]
    base: usize,
    /// U-Net depth (ignored with --init).
    #[arg(long, default_value_t = 4)]
    depth: usize,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Peak learning rate (warm-up then cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Seed: with the same seed and thread count a CPU run is repeatable bit for bit.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per epoch (default: one pass over the training frames).
    #[arg(long)]
    images_per_epoch: Option<usize>,
    /// Stop after this much training time, e.g. 45m, 6h (resume later with the same command).
    #[arg(long, value_parser = parse_duration)]
    budget: Option<Duration>,
    /// Disable augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Freeze the encoder convolutions (BatchNorm still trained).
    #[arg(long)]
    freeze_encoder: bool,
}

/// Parses `90s`, `45m`, `6h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| c.is_alphabetic())
            .unwrap_or(s.trim().len()),
    );
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 45m or 6h"))?;
    let secs = match unit {
        "" | "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use s, m or h)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Progress bar and per-epoch lines for training commands (train, finetune, experiment).
pub(super) struct BarProgress {
    pub(super) pb: ProgressBar,
}

impl Progress for BarProgress {
    fn step(&self, epoch: usize, done: usize, total: usize, loss: f64, images_per_s: f64) {
        self.pb.set_length(total as u64);
        self.pb.set_position(done as u64);
        self.pb.set_prefix(format!("epoch {}", epoch + 1));
        self.pb
            .set_message(format!("loss {loss:.4}, {images_per_s:.1} img/s"));
    }
    fn epoch(&self, r: &EpochReport) {
        let d = |i: usize| {
            r.val_dice
                .get(i)
                .copied()
                .flatten()
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into())
        };
        let line = format!(
            "epoch {:>3}: loss {:.4}, val Dice LV {} MYO {} RV {}, lr {:.2e}, {:.1} img/s, {:.0} s",
            r.epoch,
            r.train_loss,
            d(1),
            d(2),
            d(3),
            r.lr,
            r.images_per_s,
            r.seconds
        );
        self.pb.println(&line);
        log::info!("{line}");
    }
}

pub fn run(a: TrainArgs, threads: usize) -> Result<(), CliError> {
    let store = FrameStore::open(&a.data)?;
    let pre = store.preprocess().clone();
    let (mut train_idx, mut val_idx) = (Vec::new(), Vec::new());
    for (i, m) in store.frames().iter().enumerate() {
        if is_validation(&m.patient_id, VALIDATION_FRACTION) {
            val_idx.push(i);
        } else {
            train_idx.push(i);
        }
    }
    let mut model = match &a.init {
        Some(p) => {
            let mut m = Model::load(p)?;
            if let Some(old) = &m.preprocess {
                if old != &pre {
                    log::warn!("{} was trained with other preprocessing ({old:?}); the store's ({pre:?}) is used from now on", p.display());
                }
            }
            m.preprocess = Some(pre.clone());
            m
        }
        None => Model::new(
            UNetParams::init(&UNetConfig::new(a.base, a.depth), a.seed)?,
            Some(pre.clone()),
        ),
    };
    if pre.size % model.config().size_multiple() != 0 {
        return Err(CliError::Usage(format!(
            "frames are {0}x{0}, not divisible by {1} as depth {2} needs; re-import with another --size",
            pre.size,
            model.config().size_multiple(),
            model.config().depth
        )));
    }
    model.extra.insert(
        "validation_fraction".into(),
        VALIDATION_FRACTION.to_string(),
    );
    model
        .extra
        .insert("train_data".into(), a.data.display().to_string());
    let mut opts = TrainOptions::new(a.out.clone());
    opts.epochs = a.epochs;
    opts.batch = a.batch;
    opts.lr = a.lr;
    opts.weight_decay = a.weight_decay;
    opts.seed = a.seed;
    opts.images_per_epoch = a.images_per_epoch;
    opts.budget = a.budget;
    if a.no_augment {
        opts.augment = AugmentConfig::none();
    }
    if a.freeze_encoder {
        opts.trainable = Trainable::FrozenEncoder;
    }
    model.extra.insert(
        "recipe".into(),
        serde_json::to_string(&opts).unwrap_or_default(),
    );
    super::ensure_dir(&a.out)?;
    let mut backend = CpuBackend::new(threads)?;
    println!(
        "training {} parameters (base {}, depth {}) on {} frames ({} validation, patients split by id) with {}",
        model.parameter_count(),
        model.config().base,
        model.config().depth,
        train_idx.len(),
        val_idx.len(),
        crate::nn::Backend::describe(&backend)
    );
    let progress = BarProgress {
        pb: bar(0, "epoch 1"),
    };
    let summary = train(
        &mut backend,
        &mut model,
        &store,
        &train_idx,
        &val_idx,
        &opts,
        &progress,
    )?;
    progress.pb.finish_and_clear();
    let best = a.out.join("best.safetensors");
    println!(
        "{} epochs; best mean validation Dice {:.4} at epoch {} -> {}{}",
        summary.epochs_done,
        summary.best_score,
        summary.best_epoch,
        best.display(),
        if summary.stopped_by_budget {
            " (stopped by the time budget; rerun to continue)"
        } else {
            ""
        }
    );
    // A compact fp16 copy for shipping.
    if !summary.stopped_by_budget {
        let m = Model::load(&best)?;
        m.save(&a.out.join("best-f16.safetensors"), StoreAs::F16)?;
    }
    Ok(())
}
