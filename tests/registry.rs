//! The model registry: content-hashed versions, the persisted held-out split, promotion that
//! refuses a worse candidate (and one not better by the margin), rollback, tamper detection.

use cineseg::nn::cpu::CpuBackend;
use cineseg::nn::rng::Rng;
use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, UNetConfig, UNetParams};
use cineseg::registry::evaluate::held_out_validation;
use cineseg::registry::{Registry, RegistryError, Validation};
use cineseg::train::augment::AugmentConfig;
use cineseg::train::data::MemoryFrames;
use cineseg::train::finetune::split_by_patient;
use cineseg::train::trainer::{train, NoProgress, TrainOptions};
use std::path::Path;

fn frames(n: usize, seed: u64) -> MemoryFrames {
    let size = 32;
    let mut r = Rng::new(seed);
    let mut f = MemoryFrames {
        size,
        ..Default::default()
    };
    for i in 0..n {
        let (cx, cy, rad) = (r.range(10.0, 20.0), r.range(10.0, 20.0), r.range(4.0, 7.0));
        let mut img = vec![0.0f32; size * size];
        let mut mask = vec![0u8; size * size];
        for y in 0..size {
            for x in 0..size {
                let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                let (v, l) = if d < rad {
                    (0.9, 1)
                } else if d < rad + 2.5 {
                    (0.35, 2)
                } else {
                    (0.1, 0)
                };
                img[y * size + x] = v + 0.04 * r.normal() as f32;
                mask[y * size + x] = l;
            }
        }
        f.images.push(img);
        f.masks.push(mask);
        f.labelled.push(vec![true, true, true, false]);
        f.patients.push(format!("pt{:02}", i % 10));
    }
    f
}

fn save(m: &Model, dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    m.save(&p, StoreAs::F32).unwrap();
    p
}

#[test]
fn promotion_refuses_worse_candidates_and_rolls_back() {
    let d = tempfile::tempdir().unwrap();
    let reg_dir = d.path().join("registry");
    let mut reg = Registry::open(&reg_dir).unwrap();
    let data = frames(40, 1);
    let ids: Vec<String> = data.patients.clone();
    let split = reg
        .held_out_split("site-7t", 0.3, ids.iter().map(String::as_str))
        .unwrap();
    // Drawn once: asking again with another fraction changes nothing.
    let again = reg
        .held_out_split("site-7t", 0.6, ids.iter().map(String::as_str))
        .unwrap();
    assert_eq!(split, again);
    assert!(Registry::open(&reg_dir)
        .unwrap()
        .held_out_split("other-site", 0.3, ids.iter().map(String::as_str))
        .is_err());
    let (train_idx, held) = split_by_patient(&data, |p| split.is_held_out(p));
    assert!(!held.is_empty() && !train_idx.is_empty());

    // A good model (trained on the training patients only) and a bad one (always background).
    let mut good = Model::new(UNetParams::init(&UNetConfig::new(4, 2), 2).unwrap(), None);
    std::fs::create_dir_all(d.path().join("run")).unwrap();
    let mut o = TrainOptions::new(d.path().join("run"));
    o.epochs = 4;
    o.batch = 4;
    o.lr = 5e-3;
    o.augment = AugmentConfig::none();
    let mut cpu = CpuBackend::new(1).unwrap();
    train(&mut cpu, &mut good, &data, &train_idx, &[], &o, &NoProgress).unwrap();
    let mut bad = good.clone();
    bad.params.head_bias[0] += 100.0;
    let mut nudged = good.clone();
    nudged.params.head_bias[1] += 1e-6;

    let mut eval = |m: &Model| -> Result<Validation, RegistryError> {
        held_out_validation(&mut cpu, m, &data, &held, 4)
    };
    let bad_id = reg
        .add(
            &save(&bad, d.path(), "bad.safetensors"),
            None,
            "",
            "background only",
        )
        .unwrap()
        .id;
    let first = reg.promote(&bad_id, 0.01, &mut eval).unwrap();
    assert!(
        first.promoted && first.incumbent.is_none(),
        "{}",
        first.reason
    );

    let good_id = reg
        .add(
            &save(&good, d.path(), "good.safetensors"),
            Some(&bad_id),
            "synthetic",
            "trained",
        )
        .unwrap()
        .id;
    let better = reg.promote(&good_id, 0.01, &mut eval).unwrap();
    assert!(better.promoted, "{}", better.reason);
    assert!(
        better.candidate_validation.score > 0.5,
        "{:?}",
        better.candidate_validation
    );
    assert_eq!(reg.current(), Some(good_id.as_str()));

    // The worse candidate is refused and the current model stays.
    let again_bad = reg
        .add(&save(&bad, d.path(), "bad2.safetensors"), None, "", "")
        .unwrap();
    assert_eq!(again_bad.id, bad_id, "same weights, same version");
    let refused = reg.promote(&bad_id, 0.0, &mut eval).unwrap();
    assert!(!refused.promoted, "{}", refused.reason);
    assert_eq!(reg.current(), Some(good_id.as_str()));
    // A candidate equal within the margin is refused too.
    let nudged_id = reg
        .add(
            &save(&nudged, d.path(), "nudged.safetensors"),
            Some(&good_id),
            "",
            "",
        )
        .unwrap()
        .id;
    let within = reg.promote(&nudged_id, 0.01, &mut eval).unwrap();
    assert!(!within.promoted, "{}", within.reason);
    // Every validation is recorded.
    assert_eq!(reg.manifest(&bad_id).unwrap().validations.len(), 3);
    assert_eq!(reg.manifest(&good_id).unwrap().validations.len(), 3);
    assert_eq!(
        reg.manifest(&good_id).unwrap().parent.as_deref(),
        Some(bad_id.as_str())
    );

    // Rollback goes to the model current before, then there is nothing earlier.
    assert_eq!(reg.rollback(None).unwrap(), bad_id);
    assert!(reg.rollback(None).is_err());
    assert_eq!(reg.rollback(Some(&good_id)).unwrap(), good_id);
    // State survives reopening.
    let reopened = Registry::open(&reg_dir).unwrap();
    assert_eq!(reopened.current(), Some(good_id.as_str()));
    assert_eq!(reopened.list().unwrap().len(), 3);
    assert_eq!(reopened.events().len(), 4);

    // A registered file altered on disk is refused.
    let path = reopened.model_path(&nudged_id);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let e = reopened.load(&nudged_id).unwrap_err().to_string();
    assert!(e.contains("SHA-256") && e.contains(&nudged_id), "{e}");
    assert!(matches!(
        reopened.manifest("../etc"),
        Err(RegistryError::Unknown(_))
    ));
}
