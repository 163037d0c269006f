//! Fine-tuning and BatchNorm adaptation on a tiny synthetic task (base 4, depth 2, 32x32):
//! the frozen phase leaves encoder convolutions alone, a run stopped by its budget resumes to
//! the same weights as an uninterrupted run, partial labels hide the undrawn class, and
//! adaptation moves only the running statistics, to the target's averages.

use cineseg::nn::cpu::CpuBackend;
use cineseg::nn::params::Kind;
use cineseg::nn::rng::Rng;
use cineseg::nn::{Backend, Model, UNetConfig, UNetParams};
use cineseg::train::adapt::{adapt_batchnorm, AdaptOptions};
use cineseg::train::augment::AugmentConfig;
use cineseg::train::data::{plain_batch, MemoryFrames};
use cineseg::train::finetune::{finetune, phase_dir, FinetuneRecipe, PartialLabels, PhaseRecipe};
use cineseg::train::trainer::{validate, NoProgress, Trainable};
use std::time::Duration;

/// Discs (LV) in rings (MYO) beside ellipses (RV); `gain`/`offset` shift the intensity domain.
fn frames(n: usize, seed: u64, gain: f32, offset: f32) -> MemoryFrames {
    let size = 32;
    let mut r = Rng::new(seed);
    let mut f = MemoryFrames {
        size,
        ..Default::default()
    };
    for i in 0..n {
        let (cx, cy, rad) = (r.range(10.0, 20.0), r.range(10.0, 20.0), r.range(3.0, 6.0));
        let mut img = vec![0.0f32; size * size];
        let mut mask = vec![0u8; size * size];
        for y in 0..size {
            for x in 0..size {
                let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                let ell = ((x as f64 - cx - rad - 5.0) / 2.0).powi(2)
                    + ((y as f64 - cy) / 5.0).powi(2)
                    < 1.0;
                let (v, l) = if d < rad {
                    (0.9, 1)
                } else if d < rad + 2.5 {
                    (0.3, 2)
                } else if ell {
                    (0.7, 3)
                } else {
                    (0.1, 0)
                };
                img[y * size + x] = (v + 0.05 * r.normal() as f32) * gain + offset;
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

fn base() -> Model {
    Model::new(UNetParams::init(&UNetConfig::new(4, 2), 3).unwrap(), None)
}

fn recipe() -> FinetuneRecipe {
    let mut r = FinetuneRecipe::paper();
    r.phases = vec![
        PhaseRecipe {
            epochs: 2,
            lr: 3e-3,
            trainable: Trainable::FrozenEncoder,
        },
        PhaseRecipe {
            epochs: 1,
            lr: 1e-3,
            trainable: Trainable::All,
        },
    ];
    r.batch = 4;
    r.seed = 5;
    r.augment = AugmentConfig {
        rotate_deg: 15.0,
        ..AugmentConfig::none()
    };
    r.images_per_epoch = Some(12);
    r
}

#[test]
fn frozen_phase_keeps_encoder_convolutions() {
    let d = tempfile::tempdir().unwrap();
    let src = frames(10, 1, 1.0, 0.0);
    let (train, val): (Vec<usize>, Vec<usize>) = ((0..8).collect(), vec![8, 9]);
    let mut be = CpuBackend::new(1).unwrap();
    let b = base();
    let (m, s) = finetune(
        &mut be,
        &b,
        &src,
        &train,
        &val,
        &recipe(),
        d.path(),
        None,
        &NoProgress,
    )
    .unwrap();
    let m = m.expect("no budget: the run completes");
    assert_eq!(s.phases.len(), 2);
    assert_eq!(s.images_per_epoch, 12);
    assert_eq!(s.curve().len(), 3);
    let p1 = Model::load(&phase_dir(d.path(), 1).join("last.safetensors")).unwrap();
    assert_eq!(
        p1.params.enc[0].conv1, b.params.enc[0].conv1,
        "phase 1 froze the encoder convolutions"
    );
    assert_ne!(
        p1.params.enc[0].bn1.weight, b.params.enc[0].bn1.weight,
        "encoder BatchNorm still trains"
    );
    assert_ne!(p1.params.dec[0].conv1, b.params.dec[0].conv1);
    assert_ne!(
        m.params.enc[0].conv1, b.params.enc[0].conv1,
        "phase 2 trains everything"
    );
    assert!(s.kept_score > 0.0 && (1..=2).contains(&s.kept_phase));
}

#[test]
fn budget_stop_then_resume_matches_uninterrupted_run() {
    let src = frames(8, 2, 1.0, 0.0);
    let train: Vec<usize> = (0..8).collect();
    let mut be = CpuBackend::new(1).unwrap();
    let straight = tempfile::tempdir().unwrap();
    let (full, _) = finetune(
        &mut be,
        &base(),
        &src,
        &train,
        &[],
        &recipe(),
        straight.path(),
        None,
        &NoProgress,
    )
    .unwrap();
    let split = tempfile::tempdir().unwrap();
    let (none, s) = finetune(
        &mut be,
        &base(),
        &src,
        &train,
        &[],
        &recipe(),
        split.path(),
        Some(Duration::ZERO),
        &NoProgress,
    )
    .unwrap();
    assert!(none.is_none() && s.stopped_by_budget);
    assert_eq!(
        s.phases[0].epochs_done, 1,
        "the budget stops after the first epoch"
    );
    let (resumed, s2) = finetune(
        &mut be,
        &base(),
        &src,
        &train,
        &[],
        &recipe(),
        split.path(),
        None,
        &NoProgress,
    )
    .unwrap();
    assert!(!s2.stopped_by_budget);
    assert_eq!(
        resumed.unwrap().params,
        full.unwrap().params,
        "resume is exact"
    );
}

#[test]
fn partial_labels_hide_undrawn_classes() {
    let src = frames(6, 3, 1.0, 0.0);
    let lv_myo = PartialLabels::new(&src, vec![true, true, true, false]);
    let mut be = CpuBackend::new(1).unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut r = recipe();
    r.phases.truncate(1);
    let (m, _) = finetune(
        &mut be,
        &base(),
        &lv_myo,
        &[0, 1, 2, 3],
        &[4, 5],
        &r,
        d.path(),
        None,
        &NoProgress,
    )
    .unwrap();
    let dice = validate(&mut be, &m.unwrap(), &lv_myo, &[4, 5], 2).unwrap();
    assert!(dice[1].is_finite() && dice[2].is_finite());
    assert!(
        dice[3].is_nan(),
        "RV was not drawn, so it has no Dice: {dice:?}"
    );
}

#[test]
fn adaptation_moves_only_running_statistics_to_the_target() {
    let mut be = CpuBackend::new(1).unwrap();
    // A base whose statistics describe domain A (training-mode passes on A, no weight update).
    let a = frames(8, 4, 1.0, 0.0);
    let (mut m, _) = adapt_batchnorm(
        &mut be,
        &base(),
        &a,
        &(0..8).collect::<Vec<_>>(),
        &AdaptOptions { batch: 4 },
    )
    .unwrap();
    m.extra.clear();
    // Domain B: brighter and with more contrast, as from another scanner.
    let b = frames(6, 5, 1.8, 0.4);
    let idx: Vec<usize> = (0..6).collect();
    let (adapted, report) =
        adapt_batchnorm(&mut be, &m, &b, &idx, &AdaptOptions { batch: 2 }).unwrap();
    assert_eq!(
        (report.images, report.batches, report.layers),
        (6, 3, 2 * 3 + 2 * 2)
    );
    assert!(report.mean_shift_sd > 0.03, "{report:?}");
    let layout = UNetParams::layout(m.config());
    for ((info, before), after) in layout
        .iter()
        .zip(m.params.tensors())
        .zip(adapted.params.tensors())
    {
        if info.kind != Kind::RunningStat {
            assert_eq!(before, after, "{} must not change", info.name);
        }
    }
    // The first layer's mean is linear in the images: the cumulative average over batches of
    // two equals the mean over all six images, whatever the base statistics were.
    let x = plain_batch(&b, &idx);
    let mut once = m.params.clone();
    let target = cineseg::nn::loss::Target {
        labels: vec![0; 6 * 32 * 32],
        labelled: vec![vec![true, false, false, false]; 6],
    };
    be.train_step(&mut once, &x, &target).unwrap();
    let momentum = cineseg::nn::cpu::batchnorm::MOMENTUM as f32;
    for c in 0..4 {
        let old = m.params.enc[0].bn1.running_mean[c];
        let whole = old + (once.enc[0].bn1.running_mean[c] - old) / momentum;
        let got = adapted.params.enc[0].bn1.running_mean[c];
        assert!(
            (got - whole).abs() <= 1e-4 * (1.0 + whole.abs()),
            "channel {c}: {got} vs {whole}"
        );
    }
    // Adapted statistics fit B better than A's did: B's batch statistics at the first layer.
    let dist = |p: &UNetParams| -> f32 {
        (0..4)
            .map(|c| {
                (p.enc[0].bn1.running_mean[c]
                    - (m.params.enc[0].bn1.running_mean[c]
                        + (once.enc[0].bn1.running_mean[c] - m.params.enc[0].bn1.running_mean[c])
                            / momentum))
                    .abs()
            })
            .sum()
    };
    assert!(dist(&adapted.params) < 0.01 * dist(&m.params).max(1e-3));
}
