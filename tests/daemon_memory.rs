//! Daemon memory over many series (issue 10, item 15): the shipped model segments the same
//! real Sunnybrook cine sent again and again under new UIDs, and the daemon's peak resident
//! memory (VmHWM: monotone, unlike a VmRSS sample that may land mid-series) after the 50th
//! series must be within 10 % of what it was after the 5th. Takes minutes on 2
//! cores, so it is `#[ignore]`d: run it with
//! `cargo test --release --test daemon_memory -- --ignored --nocapture`.

mod daemon_support;

use daemon_support::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The Sunnybrook series rewritten under series number `i` (new Series and SOP Instance UIDs).
fn copy_as(src: &[PathBuf], out: &Path, i: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(out).expect("dir");
    src.iter()
        .enumerate()
        .map(|(n, f)| {
            let mut o = dicom_object::open_file(f).expect("open");
            let series = format!("1.2.826.0.1.3680043.10.9.{i}");
            let sop = format!("{series}.{n}");
            o.put(DataElement::new(
                tags::SERIES_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(series.as_str()),
            ));
            o.put(DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(sop.as_str()),
            ));
            o.meta_mut().media_storage_sop_instance_uid = sop;
            let p = out.join(format!("{n}.dcm"));
            o.write_to_file(&p).expect("write");
            p
        })
        .collect()
}

#[test]
#[ignore]
fn resident_memory_is_flat_over_50_series() {
    if !have_dcmtk() {
        return;
    }
    let base = std::env::var_os("CINESEG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let src_dir = base.join("sunnybrook/dicoms/SCD0000101");
    if !src_dir.is_dir() {
        println!("skipped: {} is absent", src_dir.display());
        return;
    }
    let mut src: Vec<PathBuf> = std::fs::read_dir(&src_dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    src.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cineseg-acdc.safetensors"),
        dir.path().join("tiny.safetensors"),
    )
    .expect("shipped model");
    let port = free_port();
    let d = Served::start_with_spool(dir.path(), "", "continuation_window_s = 0", port);
    let pid = d.child.id();
    let n = std::env::var("CINESEG_MEMORY_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50usize);
    let mut after5 = 0;
    for i in 0..n {
        let files = copy_as(&src, &dir.path().join(format!("in{i}")), i);
        assert!(storescu(port, "SCANNER", &files).status.success());
        assert!(
            wait_until(Duration::from_secs(180), || d.results().len() > i),
            "series {i} not processed; log:\n{}",
            d.log_text()
        );
        let _ = std::fs::remove_dir_all(dir.path().join(format!("in{i}")));
        println!(
            "series {:2}: VmRSS {:7} KiB, VmHWM {:7} KiB",
            i + 1,
            rss_kib(pid, "VmRSS:"),
            rss_kib(pid, "VmHWM:")
        );
        if i + 1 == 5 {
            after5 = rss_kib(pid, "VmHWM:");
        }
    }
    let last = rss_kib(pid, "VmHWM:");
    assert!(
        after5 > 0 && (last as f64) <= after5 as f64 * 1.10,
        "peak RSS after {n} series {last} KiB vs {after5} KiB after 5"
    );
}
