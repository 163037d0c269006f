//! The training loop on a tiny synthetic task: it learns, it is bit-for-bit repeatable for a
//! seed, and a run interrupted after an epoch and resumed ends exactly where an uninterrupted
//! run ends.

use cineseg::nn::cpu::CpuBackend;
use cineseg::nn::rng::Rng;
use cineseg::nn::{Model, UNetConfig, UNetParams};
use cineseg::train::augment::AugmentConfig;
use cineseg::train::data::MemoryFrames;
use cineseg::train::trainer::{train, NoProgress, TrainOptions};
use std::path::Path;
use std::time::Duration;

/// Discs (class 1) inside rings (class 2) beside ellipses (class 3) on noise.
fn frames(n: usize, size: usize, seed: u64) -> MemoryFrames {
    let mut r = Rng::new(seed);
    let mut f = MemoryFrames {
        size,
        ..Default::default()
    };
    for i in 0..n {
        let (cx, cy) = (r.range(10.0, 22.0), r.range(10.0, 22.0));
        let rad = r.range(3.0, 6.0);
        let mut img = vec![0.0f32; size * size];
        let mut mask = vec![0u8; size * size];
        for y in 0..size {
            for x in 0..size {
                let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                let (v, l) = if d < rad {
                    (0.9, 1)
                } else if d < rad + 2.5 {
                    (0.3, 2)
                } else if ((x as f64 - cx - rad - 5.0) / 2.0).powi(2)
                    + ((y as f64 - cy) / 5.0).powi(2)
                    < 1.0
                {
                    (0.7, 3)
                } else {
                    (0.1, 0)
                };
                img[y * size + x] = v + 0.05 * r.normal() as f32;
                mask[y * size + x] = l;
            }
        }
        f.images.push(img);
        f.masks.push(mask);
        f.labelled.push(vec![true; 4]);
        f.patients.push(format!("p{}", i % 4));
    }
    f
}

fn opts(dir: &Path, epochs: usize) -> TrainOptions {
    let mut o = TrainOptions::new(dir.to_path_buf());
    o.epochs = epochs;
    o.batch = 4;
    o.lr = 5e-3;
    o.seed = 42;
    o.augment = AugmentConfig {
        rotate_deg: 20.0,
        ..AugmentConfig::default()
    };
    o
}

fn fresh() -> Model {
    Model::new(UNetParams::init(&UNetConfig::new(4, 2), 9).unwrap(), None)
}

#[test]
fn training_learns_and_is_repeatable_and_resumable() {
    let data = frames(48, 32, 1);
    let train_idx: Vec<usize> = (0..40).collect();
    let val_idx: Vec<usize> = (40..48).collect();
    let mut cpu = CpuBackend::new(2).unwrap();

    // Uninterrupted run, twice: identical parameters (bit for bit).
    let d1 = tempfile::tempdir().unwrap();
    let mut m1 = fresh();
    let s1 = train(
        &mut cpu,
        &mut m1,
        &data,
        &train_idx,
        &val_idx,
        &opts(d1.path(), 12),
        &NoProgress,
    )
    .unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let mut m2 = fresh();
    train(
        &mut cpu,
        &mut m2,
        &data,
        &train_idx,
        &val_idx,
        &opts(d2.path(), 12),
        &NoProgress,
    )
    .unwrap();
    assert!(m1.params == m2.params, "two runs with one seed differ");

    // It learned: loss fell and validation Dice of the disc class is well above chance.
    let first = s1.history.first().unwrap().train_loss;
    let last = s1.history.last().unwrap().train_loss;
    assert!(last < 0.7 * first, "loss {first} -> {last}");
    let dice_lv = s1.history.last().unwrap().val_dice[1].unwrap();
    assert!(dice_lv > 0.6, "validation Dice of class 1 only {dice_lv}");

    // Interrupted after the first epoch (zero time budget), then resumed: same end point.
    let d3 = tempfile::tempdir().unwrap();
    let mut m3 = fresh();
    let mut o = opts(d3.path(), 12);
    o.budget = Some(Duration::ZERO);
    let partial = train(
        &mut cpu,
        &mut m3,
        &data,
        &train_idx,
        &val_idx,
        &o,
        &NoProgress,
    )
    .unwrap();
    assert!(partial.stopped_by_budget && partial.epochs_done == 1);
    let mut m4 = fresh();
    let resumed = train(
        &mut cpu,
        &mut m4,
        &data,
        &train_idx,
        &val_idx,
        &opts(d3.path(), 12),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(resumed.epochs_done, 12);
    assert!(
        m4.params == m1.params,
        "resumed run differs from the uninterrupted one"
    );
    assert!(
        d1.path().join("best.safetensors").is_file() && d1.path().join("history.json").is_file()
    );
}

#[test]
fn resume_with_other_options_is_refused() {
    let data = frames(8, 32, 2);
    let idx: Vec<usize> = (0..8).collect();
    let mut cpu = CpuBackend::new(1).unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut m = fresh();
    train(
        &mut cpu,
        &mut m,
        &data,
        &idx,
        &[],
        &opts(d.path(), 1),
        &NoProgress,
    )
    .unwrap();
    let mut other = opts(d.path(), 1);
    other.lr = 1e-4;
    let err = train(
        &mut cpu,
        &mut fresh(),
        &data,
        &idx,
        &[],
        &other,
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("other options"), "{err}");
}
