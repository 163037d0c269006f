//! The overnight hook end to end with real dcmtk clients: three patients' cine series are sent
//! with `storescu` and segmented; corrected contours come back as DICOM SEG (also by
//! `storescu`) and are kept as labels, not segmented; inside the (always open) window the
//! daemon fine-tunes, registers the candidate, promotes it on the held-out patient, and serves
//! it from the next series on, while it keeps answering C-ECHO during training.

mod daemon_support;

use cineseg::dicom::masks::{LabelMasks, LV, MYO};
use cineseg::dicom::patient::StudyContext;
use cineseg::dicom::seg::{write_seg, Algorithm, SegScope};
use cineseg::dicom::stack::{load_folder, AssembleOptions};
use cineseg::dicom::writer::SeriesId;
use daemon_support::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SLICES: usize = 3;
const PHASES: usize = 4;

/// The true contours of a synthetic series, written as a SEG referencing it.
fn corrected_seg(series_dir: &Path, out: &Path) -> PathBuf {
    let stack = load_folder(series_dir, &AssembleOptions::default())
        .expect("series")
        .stacks
        .remove(0);
    let (rows, cols) = (stack.grid.rows, stack.grid.cols);
    let mut masks = LabelMasks::empty(
        stack.n_slices(),
        stack.n_phases(),
        rows,
        cols,
        vec![LV, MYO],
    );
    for s in 0..stack.n_slices() {
        for p in 0..stack.n_phases() {
            let r = synthetic_lv_radius(p, PHASES);
            let img = masks.image_mut(s, p).expect("image");
            for y in 0..rows {
                for x in 0..cols {
                    let d = ((x as f32 - 20.0).powi(2) + (y as f32 - 20.0).powi(2)).sqrt();
                    img[y * cols + x] = if d < r {
                        LV
                    } else if d < r + 3.0 {
                        MYO
                    } else {
                        0
                    };
                }
            }
            masks.annotated[s * stack.n_phases() + p] = vec![LV, MYO];
        }
    }
    let path = out.join("seg.dcm");
    std::fs::create_dir_all(out).expect("seg dir");
    write_seg(
        &stack,
        &masks,
        &Algorithm {
            name: "expert".into(),
            version: "1".into(),
        },
        SegScope::Cine,
        &StudyContext::of_stack(&stack).expect("study context"),
        &SeriesId::new(9901),
        &path,
    )
    .expect("write SEG");
    path
}

fn report_model(dir: &Path) -> String {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report"))
            .expect("json");
    r["model"]["name"].as_str().unwrap_or_default().to_string()
}

#[test]
fn corrected_contours_fine_tune_promote_and_swap_the_serving_model() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let finetune = "[finetune]\nenabled = true\nwindow = \"00:00-24:00\"\ncheck_interval_s = 1\nsite = \"test-site\"\n\
        margin = 0.0\nepochs1 = 3\nlr1 = 0.003\nepochs2 = 2\nlr2 = 0.001\nbatch = 4\nimages_per_epoch = 32\naugment = false\n";
    let d = Served::start_with_spool(
        &dir.path().join("d"),
        finetune,
        "keep_received = true",
        port,
    );
    let mut series_dirs = Vec::new();
    for (k, patient) in ["PAT-A", "PAT-B", "PAT-C"].iter().enumerate() {
        let sd = dir.path().join(format!("in{k}"));
        let files = synthetic_series_of(
            &sd,
            &format!("1.2.826.0.1.3680043.2.1125.88.{}", k + 1),
            patient,
            SLICES,
            PHASES,
        );
        let out = storescu(port, "SCANNER", &files);
        assert!(
            out.status.success(),
            "storescu: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        series_dirs.push(sd);
    }
    assert!(
        d.wait_done(3, Duration::from_secs(120)),
        "series not processed; log:\n{}",
        d.log_text()
    );
    let first_results = d.results();
    assert_eq!(first_results.len(), 3);
    assert!(
        first_results
            .iter()
            .all(|r| report_model(r) == "tiny.safetensors"),
        "served by the configured model first"
    );

    // The corrected contours come back from a viewer.
    let segs: Vec<PathBuf> = series_dirs
        .iter()
        .enumerate()
        .map(|(k, sd)| corrected_seg(sd, &dir.path().join(format!("seg{k}"))))
        .collect();
    // -R: propose exactly the files' SOP classes (storescu's default list lacks SEG).
    let send_segs = |files: &[PathBuf]| {
        let mut cmd = std::process::Command::new("storescu");
        cmd.args([
            "-R",
            "-aet",
            "VIEWER",
            "-aec",
            "CINESEG",
            "127.0.0.1",
            &port.to_string(),
        ])
        .args(files);
        let out = run_limited(&mut cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "storescu SEG: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // One patient's contours: nothing to hold out yet, so the night's run waits for more.
    send_segs(&segs[..1]);
    assert!(
        d.wait_done(4, Duration::from_secs(60)),
        "SEG job not done; log:\n{}",
        d.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(60), || d
            .log_text()
            .contains("overnight fine-tuning skipped")),
        "no skip with one patient; log:\n{}",
        d.log_text()
    );
    send_segs(&segs[1..]);
    assert!(
        d.wait_done(6, Duration::from_secs(60)),
        "SEG jobs not done; log:\n{}",
        d.log_text()
    );
    let labels = d.root.join("state/labels");
    assert_eq!(count(&labels), 3, "one label folder per corrected series");
    assert_eq!(
        d.results().len(),
        3,
        "a SEG is kept as labels, not segmented"
    );

    // Training runs on its own thread; the daemon keeps answering meanwhile.
    let decided = wait_until(Duration::from_secs(240), || {
        assert!(
            echoscu(port, "SCANNER").status.success(),
            "C-ECHO failed during fine-tuning"
        );
        d.log_text().contains("overnight fine-tuning: candidate")
    });
    let log = d.log_text();
    assert!(decided, "no overnight decision; log:\n{log}");
    assert!(
        log.contains("promoted"),
        "the fine-tuned candidate should beat the untrained model; log:\n{log}"
    );
    let registry: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.root.join("state/registry/registry.json")).expect("registry"),
    )
    .expect("json");
    let current = registry["current"]
        .as_str()
        .expect("current model")
        .to_string();
    let split: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.root.join("state/registry/split.json")).expect("split"),
    )
    .expect("json");
    assert_eq!(
        split["validation"].as_array().map(Vec::len),
        Some(1),
        "one of three patients held out: {split}"
    );
    assert!(
        !std::fs::read_to_string(d.root.join("state/registry/split.json"))
            .expect("split")
            .contains("PAT-"),
        "patient IDs are hashed"
    );

    // The next series is segmented by the promoted model.
    let files = synthetic_series_of(
        &dir.path().join("in9"),
        "1.2.826.0.1.3680043.2.1125.88.9",
        "PAT-D",
        SLICES,
        PHASES,
    );
    assert!(storescu(port, "SCANNER", &files).status.success());
    assert!(
        d.wait_done(7, Duration::from_secs(60)),
        "log:\n{}",
        d.log_text()
    );
    let newest = d
        .results()
        .into_iter()
        .find(|r| !first_results.contains(r))
        .expect("new result");
    assert_eq!(report_model(&newest), format!("registry:{current}"));
    assert!(!d.log_text().contains("panicked"));
    for line in d
        .log_text()
        .lines()
        .filter(|l| l.contains("overnight") || l.contains("serving") || l.contains("registry"))
    {
        println!("{line}");
    }

    // A restart serves the promoted model straight away.
    let mut d = d;
    d.kill9();
    let d = Served::spawn(&d.root.clone(), d.config.clone(), port);
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log_text()
            .contains(&format!("serving registry model {current}"))),
        "log:\n{}",
        d.log_text()
    );
}
