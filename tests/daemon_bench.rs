//! Daemon speed (ignored by default; run with
//! `cargo test --release --test daemon_bench -- --ignored --nocapture`):
//! - latency from the last instance acknowledged (storescu exits) to every result file stored
//!   at a storescp destination, for a Sunnybrook series (12 slices x 20 phases), repeated
//!   with fresh UIDs; median and p95;
//! - receive throughput (instances/s) with 4 storescu senders in parallel;
//! - the daemon's peak resident memory (VmHWM).
//!
//! The model is the default architecture (base 32, depth 4, 160 px at 1.5 mm) with random
//! weights (`CINESEG_BENCH_MODEL=tiny` for the test model): the cost is the real one, the
//! contours are not. `CINESEG_BENCH_REPEATS` sets the repeats (default 5).

mod daemon_support;

use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, Preprocess, UNetConfig, UNetParams};
use daemon_support::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn sunnybrook() -> Option<PathBuf> {
    let base = std::env::var_os("CINESEG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    Some(base.join("sunnybrook/dicoms/SCD0000101")).filter(|d| d.is_dir())
}

/// Copies a series with a new SeriesInstanceUID and new SOPInstanceUIDs (a fresh acquisition).
fn relabel(src: &Path, dst: &Path, tag: &str) -> Vec<PathBuf> {
    std::fs::create_dir_all(dst).expect("dst");
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .expect("src")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let mut obj = dicom_object::open_file(f).expect("read");
        let sop = format!("2.25.{tag}{:05}", i);
        obj.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(format!("2.25.{tag}")),
        ));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(sop.as_str()),
        ));
        obj.update_meta(|m| m.media_storage_sop_instance_uid = sop.clone());
        let p = dst.join(format!("{i}.dcm"));
        obj.write_to_file(&p).expect("write");
        out.push(p);
    }
    out
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
#[ignore]
fn daemon_latency_throughput_memory() {
    if !have_dcmtk() {
        return;
    }
    let Some(sb) = sunnybrook() else {
        println!("skipped: Sunnybrook data absent");
        return;
    };
    let repeats: usize = std::env::var("CINESEG_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("d");
    std::fs::create_dir_all(&root).expect("root");
    // CINESEG_BENCH_MODEL: "shipped" (default: models/cineseg-acdc.safetensors), "tiny", or
    // "random32" (the default architecture with random weights).
    let choice = std::env::var("CINESEG_BENCH_MODEL").unwrap_or_else(|_| "shipped".into());
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cineseg-acdc.safetensors");
    let tiny = choice == "tiny";
    if tiny {
        tiny_model(&root);
    } else if choice == "shipped" && shipped.is_file() {
        std::fs::copy(&shipped, root.join("tiny.safetensors")).expect("copy shipped model");
    } else {
        let m = Model::new(
            UNetParams::init(&UNetConfig::new(32, 4), 3).expect("params"),
            Some(Preprocess::default()),
        );
        m.save(&root.join("tiny.safetensors"), StoreAs::F32)
            .expect("save");
    }
    let (port, pacs_port) = (free_port(), free_port());
    let pacs_dir = dir.path().join("pacs");
    let mut pacs = storescp(pacs_port, &pacs_dir, &["+B"]);
    let dest = format!("[destination]\nae_title = \"PACS\"\naddress = \"127.0.0.1:{pacs_port}\"\n");
    let d = Served::start(&root, &dest, port);
    println!(
        "model: {}",
        if tiny {
            "tiny test model (base 4, depth 2, 32 px)".to_string()
        } else {
            format!(
                "{choice} ({})",
                if choice == "shipped" {
                    "models/cineseg-acdc.safetensors, base 16"
                } else {
                    "base 32, depth 4, 160 px, random weights"
                }
            )
        }
    );
    let mut lat = Vec::new();
    for r in 0..repeats {
        let files = relabel(&sb, &dir.path().join(format!("s{r}")), &format!("77{r}"));
        let before = count(&pacs_dir);
        let out = storescu(port, "SCANNER", &files);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t_last = Instant::now();
        assert!(
            d.wait_done(r + 1, Duration::from_secs(900)),
            "log:\n{}",
            d.log_text()
        );
        let res = d.results();
        let expected = before
            + res
                .iter()
                .map(|p| 1 + count(&p.join("overlays")))
                .max()
                .unwrap_or(1);
        while count(&pacs_dir) < expected && t_last.elapsed() < Duration::from_secs(900) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = t_last.elapsed().as_secs_f64();
        println!("repeat {r}: last instance -> results stored at destination: {s:.2} s");
        if let Some(line) = d.log_text().lines().rev().find(|l| l.contains("busy:")) {
            println!(
                "  stage busy times: {}",
                line.rsplit("busy: ")
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(')')
            );
        }
        lat.push(s);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "latency over {repeats} sends: median {:.2} s, p95 {:.2} s (includes the {} ms settle time)",
        pct(0.5),
        pct(0.95),
        300
    );
    // throughput: 4 senders in parallel, 240 instances each
    let sets: Vec<Vec<PathBuf>> = (0..4)
        .map(|i| relabel(&sb, &dir.path().join(format!("t{i}")), &format!("88{i}")))
        .collect();
    let total: usize = sets.iter().map(Vec::len).sum();
    let t0 = Instant::now();
    let hs: Vec<_> = sets
        .into_iter()
        .map(|f| std::thread::spawn(move || storescu(port, "SCANNER", &f)))
        .collect();
    for h in hs {
        assert!(h.join().expect("join").status.success());
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "receive throughput, 4 parallel storescu: {total} instances in {secs:.2} s = {:.0} instances/s",
        total as f64 / secs
    );
    assert!(
        d.wait_done(repeats + 4, Duration::from_secs(1800)),
        "log:\n{}",
        d.log_text()
    );
    if let Some(kb) = vm_hwm_kb(d.child.id()) {
        println!(
            "daemon peak resident memory (VmHWM): {:.0} MiB",
            kb as f64 / 1024.0
        );
    }
    let _ = pacs.kill();
    let _ = pacs.wait();
}
