//! The transfer-learning commands end to end on a tiny synthetic target store (32x32 frames,
//! 6 patients x 3 phases x 2 slices, no ED/ES tags) with a tiny model (base 4, depth 2):
//! `experiment transfer` writes its table, JSON and PNG; `finetune` stops at its budget and
//! resumes; `adapt` writes a model; `models` promotes and refuses on the held-out split.

use cineseg::image::Phase;
use cineseg::nn::config::Normalisation;
use cineseg::nn::rng::Rng;
use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, Preprocess, UNetConfig, UNetParams};
use cineseg::store::{FrameMeta, FrameStore};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cineseg(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cineseg"))
        .args(args)
        .args(["--threads", "1"])
        .env("CINESEG_NO_CUDA", "1")
        .output()
        .expect("run cineseg");
    assert!(
        out.status.success(),
        "cineseg {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn pre() -> Preprocess {
    Preprocess {
        spacing_mm: 1.5,
        size: 32,
        normalisation: Normalisation::default(),
    }
}

/// LV disc whose radius follows the phase (largest at phase 1), MYO ring, RV ellipse.
fn store(dir: &Path) -> PathBuf {
    let path = dir.join("store");
    let mut w = FrameStore::create(&path, &pre(), 4).unwrap();
    let mut r = Rng::new(11);
    for p in 0..6 {
        for phase in 0..3usize {
            for slice in 0..2 {
                let rad = [5.0, 7.0, 3.5][phase] + r.range(-0.5, 0.5);
                let (cx, cy) = (r.range(12.0, 18.0), r.range(12.0, 18.0));
                let (mut img, mut mask) = (vec![0f32; 1024], vec![0u8; 1024]);
                for y in 0..32 {
                    for x in 0..32 {
                        let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                        let ell = ((x as f64 - cx - rad - 6.0) / 2.0).powi(2)
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
                        img[y * 32 + x] = (v + 0.05 * r.normal()).clamp(0.0, 1.0) as f32;
                        mask[y * 32 + x] = l;
                    }
                }
                let meta = FrameMeta {
                    patient_id: format!("p{p}"),
                    group: String::new(),
                    slice,
                    phase_index: phase,
                    phase: Phase::Other,
                    labelled: vec![true; 4],
                    source: "synthetic".into(),
                    native_spacing: [1.5, 1.5],
                };
                w.push(&img, &mask, meta).unwrap();
            }
        }
    }
    w.finish().unwrap();
    path
}

fn model(dir: &Path) -> PathBuf {
    let p = dir.join("base.safetensors");
    Model::new(
        UNetParams::init(&UNetConfig::new(4, 2), 1).unwrap(),
        Some(pre()),
    )
    .save(&p, StoreAs::F32)
    .unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn experiment_transfer_writes_table_json_and_curves() {
    let d = tempfile::tempdir().unwrap();
    let (data, base) = (store(d.path()), model(d.path()));
    let docs = d.path().join("docs");
    let work = d.path().join("work");
    let args = [
        "experiment",
        "transfer",
        "--model",
        s(&base),
        "--data",
        s(&data),
        "--out",
        s(&docs),
        "--work",
        s(&work),
    ];
    let quick = [
        "--test-patients",
        "p4,p5",
        "--epochs1",
        "1",
        "--epochs2",
        "1",
        "--batch",
        "4",
        "--images-per-epoch",
        "8",
        "--no-augment",
        "--device",
        "cpu",
    ];
    cineseg(&[&args[..], &quick[..]].concat());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docs.join("transfer.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["base", "all", "ed-es", "one-patient", "random", "bn-adapt"]
    );
    assert_eq!(json["test_patients"], 2);
    assert_eq!(json["train_frames"], 24);
    // ED/ES: 2 of 3 phases of 4 patients x 2 slices; random takes as many; one patient = 6.
    let frames: Vec<u64> = rows.iter().map(|r| r["frames"].as_u64().unwrap()).collect();
    assert_eq!(frames, [0, 24, 16, 6, 16, 24]);
    for r in rows {
        let lv = r["dice"][1].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&lv), "{r}");
    }
    assert_eq!(
        rows[1]["curve"].as_array().unwrap().len(),
        2,
        "one point per epoch"
    );
    let md = std::fs::read_to_string(docs.join("transfer.md")).unwrap();
    assert!(
        md.contains("| 3 | ed-es") && md.contains("Dice LV") && md.contains("experiment transfer"),
        "{md}"
    );
    let png = std::fs::read(docs.join("transfer-curves.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1000);
}

#[test]
fn finetune_resumes_after_budget_and_adapt_and_registry_work() {
    let d = tempfile::tempdir().unwrap();
    let (data, base) = (store(d.path()), model(d.path()));
    let out = d.path().join("m2.safetensors");
    let ft = [
        "finetune",
        "--model",
        s(&base),
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--subset",
        "ed-es",
        "--classes",
        "lv,myo",
    ];
    let quick = [
        "--epochs1",
        "2",
        "--epochs2",
        "1",
        "--batch",
        "4",
        "--images-per-epoch",
        "8",
        "--device",
        "cpu",
    ];
    let first = cineseg(&[&ft[..], &quick[..], &["--budget", "0s"]].concat());
    assert!(String::from_utf8_lossy(&first.stdout).contains("stopped by the time budget"));
    assert!(!out.exists());
    cineseg(&[&ft[..], &quick[..]].concat());
    let m2 = Model::load(&out).unwrap();
    assert_eq!(
        m2.extra.get("finetune_subset").map(String::as_str),
        Some("ed-es")
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("m2.run/finetune.json")).unwrap())
            .unwrap();
    assert_eq!(summary["phases"][0]["epochs_done"], 2);
    // Only LV and MYO were drawn: validation has no RV Dice.
    assert!(
        summary["phases"][1]["history"][0]["val_dice"][3].is_null(),
        "{summary}"
    );

    let adapted = d.path().join("adapted.safetensors");
    cineseg(&[
        "adapt",
        "--model",
        s(&base),
        "--images",
        s(&data),
        "--out",
        s(&adapted),
        "--device",
        "cpu",
    ]);
    let a = Model::load(&adapted).unwrap();
    let b = Model::load(&base).unwrap();
    assert_eq!(a.params.enc[0].conv1, b.params.enc[0].conv1);
    assert_ne!(
        a.params.enc[0].bn1.running_mean,
        b.params.enc[0].bn1.running_mean
    );

    let reg = d.path().join("registry");
    let add = |m: &Path| {
        String::from_utf8_lossy(&cineseg(&["models", "--registry", s(&reg), "add", s(m)]).stdout)
            .trim()
            .to_string()
    };
    let (id_base, id_ft) = (add(&base), add(&out));
    let promote = |id: &str| {
        String::from_utf8_lossy(
            &cineseg(&[
                "models",
                "--registry",
                s(&reg),
                "promote",
                id,
                "--data",
                s(&data),
                "--site",
                "test",
                "--margin",
                "0",
                "--device",
                "cpu",
            ])
            .stdout,
        )
        .to_string()
    };
    assert!(promote(&id_base).starts_with("promoted"));
    let second = promote(&id_ft);
    assert!(
        second.starts_with("promoted") || second.starts_with("refused"),
        "{second}"
    );
    let list = String::from_utf8_lossy(&cineseg(&["models", "--registry", s(&reg), "list"]).stdout)
        .to_string();
    assert_eq!(list.lines().count(), 2);
    assert!(
        list.lines().filter(|l| l.starts_with('*')).count() == 1,
        "{list}"
    );
    assert!(reg.join("split.json").is_file());
}

#[test]
fn arms_that_select_the_same_frames_are_trained_once() {
    let d = tempfile::tempdir().unwrap();
    let (data, base) = (store(d.path()), model(d.path()));
    let docs = d.path().join("docs");
    let work = d.path().join("work");
    // One training patient: "one-patient" is exactly "all", so it must not be trained again.
    let args = [
        "experiment",
        "transfer",
        "--model",
        s(&base),
        "--data",
        s(&data),
        "--out",
        s(&docs),
        "--work",
        s(&work),
        "--train-patients",
        "1",
        "--arms",
        "all,one-patient",
    ];
    let quick = [
        "--test-patients",
        "p4,p5",
        "--epochs1",
        "1",
        "--epochs2",
        "1",
        "--batch",
        "4",
        "--images-per-epoch",
        "8",
        "--no-augment",
        "--device",
        "cpu",
    ];
    cineseg(&[&args[..], &quick[..]].concat());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docs.join("transfer.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["base", "all", "one-patient"]);
    assert_eq!(json["train_patients"], 1);
    assert_eq!(json["train_frames"], 6);
    assert_eq!(rows[1]["dice"], rows[2]["dice"]);
    assert!(
        rows[2]["description"]
            .as_str()
            .unwrap()
            .contains("same 6 frames as `all`"),
        "{}",
        rows[2]
    );
    assert!(
        !work.join("one-patient").exists(),
        "the duplicate arm left a run folder"
    );
}

#[test]
fn unknown_arm_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let (data, base) = (store(d.path()), model(d.path()));
    let out = Command::new(env!("CARGO_BIN_EXE_cineseg"))
        .args([
            "experiment",
            "transfer",
            "--model",
            s(&base),
            "--data",
            s(&data),
            "--out",
            s(&d.path().join("o")),
            "--arms",
            "all,bogus",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown arm \"bogus\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
