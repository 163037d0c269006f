//! The training loop: seeded shuffling, augmented batches, AdamW under a schedule, validation
//! Dice per class after every epoch, checkpoints, resume and a time budget.

use super::adamw::AdamW;
use super::augment::AugmentConfig;
use super::checkpoint::{CheckpointDir, LoopState};
use super::data::{make_batch, plain_batch, FrameSource};
use super::schedule::Schedule;
use super::{EpochReport, TrainError};
use crate::nn::loss::argmax;
use crate::nn::rng::Rng;
use crate::nn::weights::{Model, StoreAs};
use crate::nn::Backend;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which tensors the optimiser updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trainable {
    /// Every weight.
    All,
    /// Encoder convolutions frozen; BatchNorm, decoder and head trained (the transfer-learning
    /// recipe's first phase).
    FrozenEncoder,
}

impl Trainable {
    /// Whether the tensor called `name` is updated.
    pub fn allows(self, name: &str) -> bool {
        match self {
            Trainable::All => true,
            Trainable::FrozenEncoder => !(name.starts_with("enc") && name.contains(".conv")),
        }
    }
}

/// Everything that defines a training run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch: usize,
    /// Peak learning rate of the schedule.
    pub lr: f64,
    /// Constant rate instead of warm-up + cosine.
    pub constant_lr: bool,
    pub weight_decay: f64,
    pub seed: u64,
    pub augment: AugmentConfig,
    /// Images per epoch; `None` = one pass over the training frames. Fine-tuning recipes fix
    /// it so that every subset sees the same number of images.
    pub images_per_epoch: Option<usize>,
    pub trainable: Trainable,
    /// Where checkpoints, `best.safetensors`, `last.safetensors` and `history.json` go.
    pub out_dir: PathBuf,
    /// Stop (after a checkpoint) once this much training time has passed.
    #[serde(skip)]
    pub budget: Option<Duration>,
}

impl TrainOptions {
    /// Sensible defaults for training from scratch.
    pub fn new(out_dir: PathBuf) -> Self {
        TrainOptions {
            epochs: 30,
            batch: 8,
            lr: 2e-3,
            constant_lr: false,
            weight_decay: 1e-4,
            seed: 0,
            augment: AugmentConfig::default(),
            images_per_epoch: None,
            trainable: Trainable::All,
            out_dir,
            budget: None,
        }
    }

    fn fingerprint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Receives progress; the CLI draws a bar, the daemon logs.
pub trait Progress {
    /// After each optimiser step.
    fn step(&self, epoch: usize, done: usize, total: usize, loss: f64, images_per_s: f64);
    /// After each epoch's validation.
    fn epoch(&self, report: &EpochReport);
}

/// A progress sink that ignores everything (tests, library callers).
pub struct NoProgress;
impl Progress for NoProgress {
    fn step(&self, _: usize, _: usize, _: usize, _: f64, _: f64) {}
    fn epoch(&self, _: &EpochReport) {}
}

/// Outcome of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub best_epoch: usize,
    pub best_score: f64,
    pub stopped_by_budget: bool,
    pub history: Vec<EpochReport>,
}

/// Validation Dice per class over `idx` (intersections and sums pooled over all frames).
pub fn validate(
    backend: &mut dyn Backend,
    model: &Model,
    src: &dyn FrameSource,
    idx: &[usize],
    batch: usize,
) -> Result<Vec<f64>, TrainError> {
    let k = model.config().classes;
    backend.load_inference(&model.params)?;
    let (mut inter, mut sum) = (vec![0.0f64; k], vec![0.0f64; k]);
    for chunk in idx.chunks(batch.max(1)) {
        let logits = backend.infer(&plain_batch(src, chunk))?;
        let pred = argmax(&logits);
        let px = src.size() * src.size();
        for (slot, i) in chunk.iter().enumerate() {
            let labelled = src.labelled(*i);
            for (p, t) in pred[slot * px..(slot + 1) * px].iter().zip(src.mask(*i)) {
                for c in 1..k {
                    if !labelled[c] {
                        continue;
                    }
                    let (a, b) = (*p as usize == c, *t as usize == c);
                    inter[c] += (a && b) as u8 as f64;
                    sum[c] += a as u8 as f64 + b as u8 as f64;
                }
            }
        }
    }
    Ok((0..k)
        .map(|c| {
            if c == 0 || sum[c] == 0.0 {
                f64::NAN
            } else {
                2.0 * inter[c] / sum[c]
            }
        })
        .collect())
}

fn mean_foreground(d: &[f64]) -> f64 {
    let v: Vec<f64> = d
        .iter()
        .skip(1)
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Trains `model` in place on `train_idx` frames of `src`, validating on `val_idx`.
/// Resumes from `out_dir/checkpoint` when one exists with the same options.
pub fn train(
    backend: &mut dyn Backend,
    model: &mut Model,
    src: &dyn FrameSource,
    train_idx: &[usize],
    val_idx: &[usize],
    opts: &TrainOptions,
    progress: &dyn Progress,
) -> Result<TrainSummary, TrainError> {
    if train_idx.is_empty() {
        return Err(TrainError::Data("no training frames".into()));
    }
    if !src.size().is_multiple_of(model.config().size_multiple()) {
        return Err(TrainError::Data(format!(
            "frame size {} is not divisible by {}",
            src.size(),
            model.config().size_multiple()
        )));
    }
    let batch = opts.batch.max(1);
    let per_epoch = opts.images_per_epoch.unwrap_or(train_idx.len()).max(1);
    let steps_per_epoch = per_epoch.div_ceil(batch) as u64;
    let schedule = if opts.constant_lr {
        Schedule::constant(opts.lr, steps_per_epoch * opts.epochs as u64)
    } else {
        Schedule::cosine(opts.lr, steps_per_epoch * opts.epochs as u64)
    };
    let ckpt = CheckpointDir::new(&opts.out_dir);
    let (mut opt, mut state) = if ckpt.exists() {
        let (m, o, s) = ckpt.load()?;
        if s.options != opts.fingerprint() {
            return Err(TrainError::Checkpoint(format!(
                "{} holds a run with other options; use another --out or delete it",
                ckpt.dir.display()
            )));
        }
        *model = m;
        log::info!("resuming after epoch {} (step {})", s.epochs_done, s.step);
        (o, s)
    } else {
        let s = LoopState {
            best_score: -1.0,
            options: opts.fingerprint(),
            ..Default::default()
        };
        (AdamW::new(&model.params, opts.lr, opts.weight_decay), s)
    };
    let started = Instant::now();
    let spent_before = state.seconds;
    let mut stopped_by_budget = false;
    while state.epochs_done < opts.epochs {
        let epoch = state.epochs_done;
        let t0 = Instant::now();
        // Epoch order: a seeded shuffle, repeated as needed to fill `per_epoch` images.
        let mut rng = Rng::new(opts.seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut order = Vec::with_capacity(per_epoch);
        while order.len() < per_epoch {
            let mut o = train_idx.to_vec();
            rng.shuffle(&mut o);
            order.extend(o);
        }
        order.truncate(per_epoch);
        let mut loss_sum = 0.0;
        for (s, idx) in order.chunks(batch).enumerate() {
            let ts = Instant::now();
            let (x, target) = make_batch(src, idx, &opts.augment, opts.seed, state.step);
            let out = backend.train_step(&mut model.params, &x, &target)?;
            if !out.loss.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step: state.step,
                });
            }
            opt.lr = schedule.lr(state.step);
            let trainable = opts.trainable;
            opt.update(&mut model.params, &out.grads, &|n| trainable.allows(n));
            state.step += 1;
            loss_sum += out.loss * idx.len() as f64;
            progress.step(
                epoch,
                s + 1,
                steps_per_epoch as usize,
                out.loss,
                idx.len() as f64 / ts.elapsed().as_secs_f64(),
            );
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        let dice = if val_idx.is_empty() {
            vec![]
        } else {
            validate(backend, model, src, val_idx, batch)?
        };
        let score = mean_foreground(&dice);
        let report = EpochReport {
            epoch: epoch + 1,
            train_loss: loss_sum / per_epoch as f64,
            val_dice: dice.iter().map(|d| d.is_finite().then_some(*d)).collect(),
            lr: opt.lr,
            images_per_s: per_epoch as f64 / train_seconds,
            seconds: t0.elapsed().as_secs_f64(),
        };
        progress.epoch(&report);
        state.epochs_done += 1;
        state.seconds = spent_before + started.elapsed().as_secs_f64();
        state.history.push(report);
        if score > state.best_score || val_idx.is_empty() {
            state.best_score = score;
            state.best_epoch = epoch + 1;
            model.save(&opts.out_dir.join("best.safetensors"), StoreAs::F32)?;
        }
        ckpt.save(model, &opt, &state)?;
        if let Some(b) = opts.budget {
            if state.seconds >= b.as_secs_f64() && state.epochs_done < opts.epochs {
                stopped_by_budget = true;
                break;
            }
        }
    }
    model.save(&opts.out_dir.join("last.safetensors"), StoreAs::F32)?;
    let summary = TrainSummary {
        epochs_done: state.epochs_done,
        best_epoch: state.best_epoch,
        best_score: state.best_score,
        stopped_by_budget,
        history: state.history.clone(),
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let hist = opts.out_dir.join("history.json");
    std::fs::write(&hist, json).map_err(|e| TrainError::io(&hist, e))?;
    Ok(summary)
}
