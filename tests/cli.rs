//! The `cineseg` binary end to end on small generated inputs: segment writes masks on the
//! input grid and volumes per phase; bad input and an unusable device give clear errors and a
//! non-zero exit, never a panic.

use cineseg::io::write_labels;
use cineseg::nn::config::Normalisation;
use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, Preprocess, UNetConfig, UNetParams};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cineseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cineseg"))
        .args(args)
        .env("CINESEG_NO_CUDA", "1")
        .output()
        .expect("run cineseg")
}

fn tiny_model(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.safetensors");
    let pre = Preprocess {
        spacing_mm: 2.0,
        size: 32,
        normalisation: Normalisation::default(),
    };
    Model::new(
        UNetParams::init(&UNetConfig::new(4, 2), 1).unwrap(),
        Some(pre),
    )
    .save(&p, StoreAs::F32)
    .unwrap();
    p
}

/// A 4D "cine" of a bright disc that shrinks over 4 phases (u8 voxels, 48x40x3x4, 1.8 mm).
fn tiny_cine(dir: &Path) -> PathBuf {
    let (w, h, z, t) = (48, 40, 3, 4);
    let mut v = vec![0u8; w * h * z * t];
    for ti in 0..t {
        for zi in 0..z {
            for y in 0..h {
                for x in 0..w {
                    let r = ((x as f32 - 24.0).powi(2) + (y as f32 - 20.0).powi(2)).sqrt();
                    v[((ti * z + zi) * h + y) * w + x] =
                        if r < 10.0 - ti as f32 { 200 } else { 40 };
                }
            }
        }
    }
    let p = dir.join("cine.nii.gz");
    write_labels(&p, [w, h, z, t], [1.8, 1.8, 8.0, 0.05], &v).unwrap();
    p
}

#[test]
fn segment_writes_masks_on_the_input_grid_and_volumes() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let cine = tiny_cine(d.path());
    let out = d.path().join("out");
    let o = cineseg(&[
        "--threads",
        "1",
        "segment",
        cine.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let seg = cineseg::io::read_volume(&out.join("cine_seg.nii.gz")).unwrap();
    assert_eq!(seg.dims, [48, 40, 3, 4]);
    assert!(seg
        .data
        .iter()
        .all(|v| *v >= 0.0 && *v <= 3.0 && v.fract() == 0.0));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cine_volumes.json")).unwrap()).unwrap();
    assert_eq!(json["phases"], 4);
    assert_eq!(json["volumes"].as_array().unwrap().len(), 4);
    assert!(json["summary"]["ed_phase"].is_u64());
}

#[test]
fn bad_inputs_fail_with_the_file_named() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let out = d.path().join("out");
    let missing = d.path().join("missing.nii.gz");
    let o = cineseg(&[
        "segment",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("missing.nii.gz") && !err.contains("panicked"),
        "{err}"
    );

    let cine = tiny_cine(d.path());
    let bytes = std::fs::read(&cine).unwrap();
    let truncated = d.path().join("truncated.nii.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let o = cineseg(&[
        "segment",
        truncated.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("truncated.nii.gz") && !err.contains("panicked"),
        "{err}"
    );

    let not_a_model = d.path().join("model.safetensors");
    std::fs::write(&not_a_model, b"garbage").unwrap();
    let o = cineseg(&[
        "segment",
        cine.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        not_a_model.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("model.safetensors") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn cuda_device_without_gpu_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let cine = tiny_cine(d.path());
    let out = d.path().join("out");
    let o = cineseg(&[
        "segment",
        cine.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cuda",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "--device cuda must fail when CUDA is disabled"
    );
    assert!(
        err.to_lowercase().contains("cuda") && !err.contains("panicked"),
        "{err}"
    );
    // auto falls back to the CPU and says so.
    let o = cineseg(&[
        "segment",
        cine.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--device",
        "auto",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr)
        .to_lowercase()
        .contains("cpu"));
}

#[test]
fn help_teaches_the_commands() {
    let o = cineseg(&["--help"]);
    let s = String::from_utf8_lossy(&o.stdout);
    for c in ["segment", "train", "eval", "import", "bench"] {
        assert!(s.contains(c), "--help lacks {c}: {s}");
    }
}

fn sunnybrook() -> Option<PathBuf> {
    let root = std::env::var_os("CINESEG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let p = root.join("sunnybrook/dicoms/SCD0000101");
    if p.is_dir() {
        Some(p)
    } else {
        println!("skipped: {} absent", p.display());
        None
    }
}

/// A real GE series through `segment <dicom folder>` with the shipped model: SEG, overlays and
/// reports written; end-diastole found at the LAST phase, as it is in these series (not 0).
#[test]
fn segment_dicom_folder_with_shipped_model() {
    let Some(dir) = sunnybrook() else { return };
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cineseg-acdc.safetensors");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = cineseg(&[
        "segment",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let series_dir = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("results folder");
    for f in ["seg.dcm", "report.json", "report.html"] {
        assert!(series_dir.join(f).is_file(), "{f} missing");
    }
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(series_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["slices"], 12);
    assert_eq!(r["phases"], 20);
    assert_eq!(
        r["summary"]["ed_phase"], 19,
        "Sunnybrook series end in diastole"
    );
    let ef = r["summary"]["lv_ef_percent"].as_f64().unwrap();
    assert!((10.0..70.0).contains(&ef), "implausible LVEF {ef}");
    let o = cineseg(&["inspect", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j
        .to_string()
        .contains("2.16.124.113543.6006.99.08975550791105350405"));
}

#[test]
fn log_level_is_validated() {
    let bad = cineseg(&["--log-level", "loud", "inspect", "/nonexistent"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a bad log level is a usage error"
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("not a log level"), "{err}");
    let bad_directive = cineseg(&["--log-level", "cineseg=chatty", "man"]);
    assert_eq!(bad_directive.status.code(), Some(2));
    for ok in [
        "debug",
        "WARN",
        "cineseg=debug",
        "warn,cineseg::daemon=trace",
    ] {
        let o = cineseg(&["--log-level", ok, "man"]);
        assert!(
            o.status.success(),
            "{ok}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn completions_and_man_page_come_from_the_argument_definitions() {
    let bash = cineseg(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = String::from_utf8_lossy(&bash.stdout);
    // every subcommand is completed, among them the newest ones
    for sub in ["segment", "serve", "import", "completions", "man"] {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    let zsh = cineseg(&["completions", "zsh"]);
    assert!(
        zsh.status.success() && String::from_utf8_lossy(&zsh.stdout).contains("#compdef cineseg")
    );
    let man = cineseg(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH cineseg"),
        "{}",
        &page[..page.len().min(200)]
    );
    assert!(
        page.contains("log\\-level"),
        "the man page documents the global options"
    );
    let bad = cineseg(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn models_registry_is_never_created_by_reading_and_add_can_make_current() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = dir.path().join("reg");
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    // reading a registry that does not exist: a usage error, and nothing is created
    let list = cineseg(&["models", "list", "--registry", &s(&reg)]);
    assert_eq!(list.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&list.stderr).contains("no model registry"));
    assert!(!reg.exists(), "models list created {}", reg.display());
    // --registry after the action; --current without a data store
    let model = tiny_model(dir.path());
    let add = cineseg(&[
        "models",
        "add",
        &s(&model),
        "--current",
        "--registry",
        &s(&reg),
    ]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let out = String::from_utf8_lossy(&add.stdout).to_string();
    let id = out.lines().next().expect("id").trim().to_string();
    assert!(out.contains("current model"), "{out}");
    let cur = cineseg(&["models", "current", "--registry", &s(&reg)]);
    assert!(cur.status.success());
    assert!(String::from_utf8_lossy(&cur.stdout).contains(&id));
    let list = cineseg(&["models", "--registry", &s(&reg), "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains(&format!("* {id}")));
}

#[test]
fn flag_names_have_one_meaning() {
    // --base is a width (train); a model file is --model everywhere (eval, finetune, adapt,
    // experiment transfer); --json is a flag (inspect) and a JSON file is --json-out (eval).
    for (sub, flag) in [
        (&["finetune"][..], "--model"),
        (&["adapt"][..], "--model"),
        (&["experiment", "transfer"][..], "--model"),
        (&["eval"][..], "--json-out"),
    ] {
        let mut args: Vec<&str> = sub.to_vec();
        args.push("--help");
        let help = String::from_utf8_lossy(&cineseg(&args).stdout).to_string();
        assert!(help.contains(flag), "{sub:?} --help lacks {flag}");
        assert!(!help.contains("--base "), "{sub:?} still has --base");
    }
    let train = String::from_utf8_lossy(&cineseg(&["train", "--help"]).stdout).to_string();
    assert!(
        train.contains("--base"),
        "train keeps --base (the U-Net width)"
    );
}
