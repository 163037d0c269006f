//! Daemon speed (ignored by default; run with
//! `cargo test --release --test daemon_bench -- --ignored --nocapture`):
//! - latency from the last instance acknowledged (the last storescu exits) to every result file
//!   stored at a storescp destination, for a Sunnybrook series (12 slices x 20 phases) sent at
//!   scanner pace (one association per slice, then a pause), repeated with fresh UIDs, by a
//!   daemon with streaming inference and one without, taking turns in the same run; median
//!   and p95 of each;
//! - the receive rate of one association sending the whole series (instances/s);
//! - receive throughput (instances/s) with 4 storescu senders in parallel;
//! - the daemon's peak resident memory (VmHWM).
//!
//! The model is the shipped one (`CINESEG_BENCH_MODEL=random32` for the default architecture
//! with random weights, `tiny` for the test model). `CINESEG_BENCH_REPEATS` sets the repeats
//! (default 5), `CINESEG_BENCH_PAUSE_MS` the pause between slices (default 600),
//! `CINESEG_TEST_THREADS` the daemons' CPU threads (default 2).

mod daemon_support;

use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, Preprocess, UNetConfig, UNetParams};
use daemon_support::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Quiet time after which a series whose slices all have their phases is complete; the pause
/// between slices must stay below it (else each slice is a series of its own).
const SETTLE_MS: u64 = 1000;

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

/// Writes the bench model into `root` (as the daemon support's model file); returns its name.
fn bench_model(root: &Path) -> String {
    // CINESEG_BENCH_MODEL: "shipped" (default: models/cineseg-acdc.safetensors), "tiny", or
    // "random32" (the default architecture with random weights).
    let choice = std::env::var("CINESEG_BENCH_MODEL").unwrap_or_else(|_| "shipped".into());
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cineseg-acdc.safetensors");
    std::fs::create_dir_all(root).expect("root");
    if choice == "tiny" {
        tiny_model(root);
        return "tiny test model (base 4, depth 2, 32 px)".into();
    }
    if choice == "shipped" && shipped.is_file() {
        std::fs::copy(&shipped, root.join("tiny.safetensors")).expect("copy shipped model");
        return "shipped (models/cineseg-acdc.safetensors, base 16)".into();
    }
    let m = Model::new(
        UNetParams::init(&UNetConfig::new(32, 4), 3).expect("params"),
        Some(Preprocess::default()),
    );
    m.save(&root.join("tiny.safetensors"), StoreAs::F32)
        .expect("save");
    "random32 (base 32, depth 4, 160 px, random weights)".into()
}

/// A daemon sending its results to its own storescp.
struct Bench {
    d: Served,
    pacs: Child,
    pacs_dir: PathBuf,
    done: usize,
}

impl Bench {
    fn start(dir: &Path, name: &str, pipeline: &str) -> Bench {
        let root = dir.join(name);
        bench_model(&root);
        let (port, pacs_port) = (free_port(), free_port());
        let pacs_dir = dir.join(format!("{name}-pacs"));
        let pacs = storescp(pacs_port, &pacs_dir, &["+B"]);
        let dest =
            format!("[destination]\nae_title = \"PACS\"\naddress = \"127.0.0.1:{pacs_port}\"\n");
        let spool = format!("settle_ms = {SETTLE_MS}\n");
        let d = Served::start_with(&root, &dest, &spool, pipeline, port);
        Bench {
            d,
            pacs,
            pacs_dir,
            done: 0,
        }
    }

    /// Sends `files` with `send`; returns seconds from the end of the sending to every result
    /// file at the destination.
    fn latency(&mut self, send: impl FnOnce(u16)) -> f64 {
        let before = count(&self.pacs_dir);
        send(self.d.port);
        let t_last = Instant::now();
        self.done += 1;
        assert!(
            self.d.wait_done(self.done, Duration::from_secs(900)),
            "log:\n{}",
            self.d.log_text()
        );
        let res = self.d.results();
        let newest = res
            .iter()
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
            .expect("a result");
        let expected = before + dcm_files(newest);
        while count(&self.pacs_dir) < expected && t_last.elapsed() < Duration::from_secs(900) {
            std::thread::sleep(Duration::from_millis(5));
        }
        t_last.elapsed().as_secs_f64()
    }

    fn busy_line(&self) -> String {
        self.d
            .log_text()
            .lines()
            .rev()
            .find(|l| l.contains("busy:"))
            .and_then(|l| l.split("quality flags; ").nth(1))
            .unwrap_or("")
            .trim_end_matches(')')
            .to_string()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.pacs.kill();
        let _ = self.pacs.wait();
    }
}

/// One association per slice (20 instances), then `pause`: a scanner sending each slice as it
/// is reconstructed.
fn send_at_scanner_pace(port: u16, files: &[PathBuf], phases: usize, pause: Duration) {
    let n = files.len().div_ceil(phases);
    for (i, slice) in files.chunks(phases).enumerate() {
        let out = storescu(port, "SCANNER", slice);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i + 1 < n {
            std::thread::sleep(pause);
        }
    }
}

/// Files of `files` in acquisition order: by slice position, then phase (instance number).
fn acquisition_order(files: Vec<PathBuf>) -> (Vec<PathBuf>, usize) {
    let mut keyed: Vec<(String, i64, PathBuf)> = files
        .into_iter()
        .map(|f| {
            let obj = dicom_object::open_file(&f).expect("read");
            let pos = obj
                .element(tags::SLICE_LOCATION)
                .ok()
                .and_then(|e| e.to_float64().ok())
                .unwrap_or(0.0);
            let inst = obj
                .element(tags::INSTANCE_NUMBER)
                .ok()
                .and_then(|e| e.to_int::<i64>().ok())
                .unwrap_or(0);
            (format!("{:012.3}", pos + 100000.0), inst, f)
        })
        .collect();
    keyed.sort();
    let mut per_slice = std::collections::BTreeMap::<String, usize>::new();
    for (k, _, _) in &keyed {
        *per_slice.entry(k.clone()).or_default() += 1;
    }
    let phases = per_slice.values().copied().max().unwrap_or(1);
    (keyed.into_iter().map(|(_, _, f)| f).collect(), phases)
}

fn median_p95(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let pct = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (pct(0.5), pct(0.95))
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
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let repeats = env("CINESEG_BENCH_REPEATS", 5) as usize;
    let pause = Duration::from_millis(env("CINESEG_BENCH_PAUSE_MS", 600));
    // The daemons' CPU threads (the support module reads CINESEG_TEST_THREADS; 2 unless set).
    let threads = env("CINESEG_TEST_THREADS", 2);
    std::env::set_var("CINESEG_TEST_THREADS", threads.to_string());
    println!("daemon CPU threads: {threads}");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("model: {}", bench_model(&dir.path().join("probe")));
    let mut streaming = Bench::start(dir.path(), "streaming", "");
    let mut whole = Bench::start(dir.path(), "whole", "streaming = false\n");
    let (mut lat_s, mut lat_w) = (Vec::new(), Vec::new());
    for r in 0..repeats {
        for (name, b, lat) in [
            ("whole series", &mut whole, &mut lat_w),
            ("streaming", &mut streaming, &mut lat_s),
        ] {
            let tag = format!("77{r}{}", name.len());
            let (files, phases) =
                acquisition_order(relabel(&sb, &dir.path().join(format!("s{tag}")), &tag));
            let s = b.latency(|port| send_at_scanner_pace(port, &files, phases, pause));
            println!(
                "repeat {r}, {name}: last instance -> results at destination {s:.2} s ({})",
                b.busy_line()
            );
            lat.push(s);
        }
    }
    let (sm, sp) = median_p95(&mut lat_s);
    let (wm, wp) = median_p95(&mut lat_w);
    println!(
        "scanner pace (one association per slice, {} ms pause, settle_ms {SETTLE_MS}), {repeats} \
         series each, last instance -> results at the destination:",
        pause.as_millis()
    );
    println!("| mode | median | p95 |\n|---|---|---|");
    println!("| whole series after it closes | {wm:.2} s | {wp:.2} s |");
    println!("| streaming inference | {sm:.2} s | {sp:.2} s |");
    drop(whole);

    // One association with the whole series: the receive rate a fast sender sees.
    let files = relabel(&sb, &dir.path().join("one"), "9901");
    let t0 = Instant::now();
    let out = storescu(streaming.d.port, "SCANNER", &files);
    let secs = t0.elapsed().as_secs_f64();
    assert!(out.status.success());
    println!(
        "receive rate, one association: {} instances in {secs:.2} s = {:.0} instances/s",
        files.len(),
        files.len() as f64 / secs
    );
    streaming.done += 1;
    assert!(streaming
        .d
        .wait_done(streaming.done, Duration::from_secs(900)));

    // throughput: 4 senders in parallel, 240 instances each
    let sets: Vec<Vec<PathBuf>> = (0..4)
        .map(|i| relabel(&sb, &dir.path().join(format!("t{i}")), &format!("88{i}")))
        .collect();
    let total: usize = sets.iter().map(Vec::len).sum();
    let port = streaming.d.port;
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
    streaming.done += 4;
    assert!(
        streaming
            .d
            .wait_done(streaming.done, Duration::from_secs(1800)),
        "log:\n{}",
        streaming.d.log_text()
    );
    if let Some(kb) = vm_hwm_kb(streaming.d.child.id()) {
        println!(
            "daemon peak resident memory (VmHWM): {:.0} MiB",
            kb as f64 / 1024.0
        );
    }
}
