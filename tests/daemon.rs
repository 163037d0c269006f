//! The daemon against real DICOM peers (dcmtk's echoscu, storescu, storescp) on loopback, with
//! a tiny model generated here. Each test is bounded in time; without dcmtk they print
//! "skipped" and return.

mod daemon_support;

use daemon_support::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn sunnybrook() -> Option<PathBuf> {
    let base = std::env::var_os("CINESEG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let d = base.join("sunnybrook/dicoms/SCD0000101");
    if d.is_dir() {
        Some(d)
    } else {
        println!("skipped Sunnybrook part: {} is absent", d.display());
        None
    }
}

fn dicom_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    v.sort();
    v
}

#[test]
fn echo_allow_list_and_garbage() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let d = Served::start(dir.path(), "calling_ae_allow = [\"SCANNER\"]", port);
    let ok = echoscu(port, "SCANNER");
    assert!(
        ok.status.success(),
        "echoscu failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = echoscu(port, "INTRUDER");
    assert!(
        !bad.status.success(),
        "a disallowed calling AE title must be rejected"
    );
    let err = String::from_utf8_lossy(&bad.stderr).to_lowercase();
    assert!(
        err.contains("reject") || err.contains("calling ae title"),
        "{err}"
    );
    // garbage bytes on one connection, while a real association runs beside it
    let mut junk = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    junk.write_all(&[0x07, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8])
        .expect("garbage");
    let mut junk2 = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    junk2
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("http");
    let again = echoscu(port, "SCANNER");
    assert!(
        again.status.success(),
        "echo after garbage: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    junk.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut buf = [0u8; 64];
    let n = junk.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x07 || buf[0] == 0x03,
        "garbage peer gets an abort or a closed socket"
    );
    assert!(!d.log_text().contains("panicked"));
}

#[test]
fn storescu_series_to_results_and_storescp() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, pacs_port) = (free_port(), free_port());
    let pacs_dir = dir.path().join("pacs");
    let mut pacs = storescp(pacs_port, &pacs_dir, &["+B"]);
    let dest = format!("[destination]\nae_title = \"PACS\"\naddress = \"127.0.0.1:{pacs_port}\"\nattempts = 3\nretry_delay_s = 0.5\ntimeout_s = 10\n");
    let d = Served::start(&dir.path().join("d"), &dest, port);
    let files = synthetic_series(
        &dir.path().join("in"),
        "1.2.826.0.1.3680043.2.1125.77.1",
        3,
        6,
    );
    let t0 = Instant::now();
    let out = storescu(port, "SCANNER", &files);
    assert!(
        out.status.success(),
        "storescu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.wait_done(1, Duration::from_secs(90)),
        "series not processed; log:\n{}",
        d.log_text()
    );
    let res = d.results();
    assert_eq!(res.len(), 1);
    for f in ["seg.dcm", "report.json", "report.html"] {
        assert!(
            res[0].join(f).is_file(),
            "{f} missing in {}",
            res[0].display()
        );
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(res[0].join("report.json")).expect("json"))
            .expect("parse");
    assert_eq!(report["slices"], 3);
    assert_eq!(report["phases"], 6);
    assert!(
        report["summary"].is_object() || report["notes"].as_array().is_some_and(|n| !n.is_empty())
    );
    let html = std::fs::read_to_string(res[0].join("report.html")).expect("html");
    assert!(html.contains("data:image/png;base64,"), "images embedded");
    // storescp received every DICOM object of the result: SEGs, SR, summary page, overlays
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = dcm_files(&res[0]);
    while count(&pacs_dir) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = std::fs::read_dir(&pacs_dir)
        .expect("pacs")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect::<Vec<_>>();
    assert_eq!(got.len(), expected, "storescp got {got:?}");
    assert!(
        got.iter().filter(|n| n.starts_with("SG")).count() == 3
            && got.iter().any(|n| n.starts_with("SR")),
        "three SEGs and the SR arrived: {got:?}"
    );
    println!(
        "series of 18 instances: sent and results stored at storescp in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    // no patient names or IDs in the log at the default level
    let log = d.log_text();
    assert!(
        !log.contains("Secret") && !log.contains("PID-SECRET"),
        "patient data in the log"
    );
    // The health line comes every second (the results may be faster than that now).
    assert!(
        wait_until(Duration::from_secs(5), || d
            .log_text()
            .contains("health: received 18 instances")),
        "health line:\n{log}"
    );
    let _ = pacs.kill();
    let _ = pacs.wait();
}

#[test]
fn parallel_senders_and_sunnybrook() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let d = Served::start(&dir.path().join("d"), "", port);
    let mut series: Vec<Vec<PathBuf>> = (0..3)
        .map(|i| {
            synthetic_series(
                &dir.path().join(format!("in{i}")),
                &format!("1.2.826.0.1.3680043.2.1125.78.{i}"),
                2,
                5,
            )
        })
        .collect();
    if let Some(sb) = sunnybrook() {
        series.push(dicom_files(&sb));
    }
    let n = series.len();
    let handles: Vec<_> = series
        .into_iter()
        .map(|files| std::thread::spawn(move || storescu(port, "SCANNER", &files)))
        .collect();
    for h in handles {
        let out = h.join().expect("join");
        assert!(
            out.status.success(),
            "storescu: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        d.wait_done(n, Duration::from_secs(240)),
        "not all series processed; log:\n{}",
        d.log_text()
    );
    assert_eq!(d.results().len(), n);
    assert_eq!(
        count(&d.root.join("state/jobs/failed")),
        0,
        "{}",
        d.log_text()
    );
}

/// A sender that vanishes mid-instance: nothing acknowledged, nothing kept.
#[test]
fn disconnect_mid_instance_leaves_no_file() {
    use cineseg::daemon::net::dimse;
    use dicom_ul::pdu::{PDataValue, PDataValueType};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let d = Served::start(&dir.path().join("d"), "", port);
    let mut assoc = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("SCANNER")
        .called_ae_title("CINESEG")
        .with_presentation_context("1.2.840.10008.5.1.4.1.1.4", vec!["1.2.840.10008.1.2.1"])
        .establish(("127.0.0.1", port))
        .expect("associate");
    let pc = assoc.presentation_contexts()[0].id;
    // the command in two fragments, then half a data set
    let cmd = dimse::store_request(1, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.5").expect("cmd");
    let (a, b) = cmd.split_at(cmd.len() / 2);
    let pdv = |t, last, data: &[u8]| PDataValue {
        presentation_context_id: pc,
        value_type: t,
        is_last: last,
        data: data.to_vec(),
    };
    assoc
        .send(&dicom_ul::Pdu::PData {
            data: vec![
                pdv(PDataValueType::Command, false, a),
                pdv(PDataValueType::Command, true, b),
            ],
        })
        .expect("command");
    assoc
        .send(&dicom_ul::Pdu::PData {
            data: vec![pdv(
                PDataValueType::Data,
                false,
                &[0x08, 0x00, 0x16, 0x00, b'U', b'I'],
            )],
        })
        .expect("data");
    drop(assoc); // TCP closed without release
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(count(&d.root.join("state/spool/objects")), 0);
    assert_eq!(count(&d.root.join("state/spool/tmp")), 0);
    let index = std::fs::read_to_string(d.root.join("state/spool/index.jsonl")).unwrap_or_default();
    assert!(!index.contains("1.2.3.4.5"));
    assert!(d.log_text().contains("mid-instance"), "{}", d.log_text());
}

/// kill -9 during a transfer; the restarted daemon finishes every acknowledged series once.
#[test]
fn kill9_during_transfer_then_restart() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let root = dir.path().join("d");
    let mut d = Served::start(&root, "", port);
    let a = synthetic_series(
        &dir.path().join("a"),
        "1.2.826.0.1.3680043.2.1125.79.1",
        2,
        4,
    );
    let b = synthetic_series(
        &dir.path().join("b"),
        "1.2.826.0.1.3680043.2.1125.79.2",
        4,
        10,
    );
    let out = storescu(port, "SCANNER", &a);
    assert!(out.status.success());
    // B is being sent when the daemon dies
    let b2 = b.clone();
    let sender = std::thread::spawn(move || storescu(port, "SCANNER", &b2));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(root.join("state/spool/index.jsonl"))
        .unwrap_or_default()
        .matches("79.2.")
        .count()
        < 5
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    d.kill9();
    let _ = sender.join();
    let config = d.config.clone();
    drop(d);
    let d = Served::spawn(&root, config, port);
    // the scanner resends B in full (its association failed)
    let out = storescu(port, "SCANNER", &b);
    assert!(
        out.status.success(),
        "resend: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.wait_done(2, Duration::from_secs(90)),
        "log:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    let results = d.results();
    assert_eq!(
        results.len(),
        2,
        "exactly one result per series: {results:?}"
    );
    assert_eq!(count(&root.join("state/jobs/done")), 2);
    assert_eq!(
        count(&root.join("state/jobs/pending")) + count(&root.join("state/jobs/failed")),
        0
    );
    for r in &results {
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(r.join("report.json")).expect("json"))
                .expect("parse");
        let n = rep["slices"].as_u64().unwrap_or(0) * rep["phases"].as_u64().unwrap_or(0);
        assert!(n == 8 || n == 40, "complete series only: {rep}");
    }
}

/// A nearly full spool disk: new associations are refused (transient), nothing is accepted.
#[test]
fn nearly_full_disk_refuses_associations() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // 100 PB free required: no disk here has that
    let d = Served::start(dir.path(), "min_free_gb = 100000000.0", port);
    let out = echoscu(port, "SCANNER");
    assert!(!out.status.success(), "association must be refused");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("reject") || err.contains("congestion"),
        "{err}"
    );
    assert!(
        d.log_text().contains("spool disk is nearly full"),
        "{}",
        d.log_text()
    );
}
