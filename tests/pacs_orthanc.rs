//! A real PACS as the destination: Orthanc (Debian package `orthanc`) on loopback receives the
//! source series from a "scanner" (storescu) and cineseg's results from `cineseg serve`; its
//! REST API must then show the SR, the SEGs and the secondary captures in the same patient and
//! study as the source images, with the source's PatientName and PatientID.

#[path = "daemon_support/mod.rs"]
mod daemon_support;
#[path = "dicom_support/mod.rs"]
mod dicom_support;

use daemon_support::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Orthanc {
    child: Child,
    http: u16,
    dicom: u16,
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_orthanc(dir: &Path) -> Option<Orthanc> {
    let bin = ["Orthanc", "/usr/sbin/Orthanc"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(bin) = bin else {
        println!("skipped: Orthanc not installed (apt-get install orthanc)");
        return None;
    };
    let (http, dicom) = (free_port(), free_port());
    let db = dir.join("orthanc-db");
    std::fs::create_dir_all(&db).unwrap();
    let config = serde_json::json!({
        "Name": "cineseg-test-pacs",
        "StorageDirectory": db,
        "IndexDirectory": db,
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "DicomCheckCalledAet": false,
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "UnknownSopClassAccepted": true,
        "Plugins": [],
        "StableAge": 1
    });
    let cfg = dir.join("orthanc.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("orthanc.log")).unwrap();
    let child = Command::new(bin)
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start Orthanc");
    let o = Orthanc { child, http, dicom };
    assert!(
        wait_until(Duration::from_secs(30), || get(o.http, "/system").is_some()),
        "Orthanc did not answer; log:\n{}",
        std::fs::read_to_string(dir.join("orthanc.log")).unwrap_or_default()
    );
    Some(o)
}

/// GET `path` from Orthanc's REST API as JSON (plain HTTP/1.0 on loopback).
fn get(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

fn destination(port: u16) -> String {
    format!("[destination]\nae_title = \"ORTHANC\"\naddress = \"127.0.0.1:{port}\"\nattempts = 3\nretry_delay_s = 1.0\ntimeout_s = 10\n")
}

#[test]
fn results_reach_orthanc_in_the_source_patient_and_study() {
    if !have_dcmtk() {
        return;
    }
    let Some(src) = dicom_support::data("sunnybrook/dicoms/SCD0000301") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(pacs) = start_orthanc(dir.path()) else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    // The scanner sends the series to the PACS and to cineseg.
    let to_pacs = storescu(pacs.dicom, "SCANNER", &files);
    assert!(
        to_pacs.status.success(),
        "{}",
        String::from_utf8_lossy(&to_pacs.stderr)
    );
    let port = free_port();
    let d = Served::start(&dir.path().join("box"), &destination(pacs.dicom), port);
    let sent = storescu(port, "SCANNER", &files);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        d.wait_done(1, Duration::from_secs(180)),
        "not processed; log:\n{}",
        d.log_text()
    );

    let modalities = |series: &serde_json::Value| -> Vec<String> {
        series
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["MainDicomTags"]["Modality"].as_str().map(String::from))
            .collect()
    };
    let expected_results = 3 + 1 + 1 + count(&d.results()[0].join("overlays")); // SEGs, SR, summary, overlays
    let delivered = wait_until(Duration::from_secs(60), || {
        get(pacs.http, "/instances").and_then(|v| v.as_array().map(Vec::len))
            == Some(files.len() + expected_results)
    });
    let instances = get(pacs.http, "/instances").unwrap();
    assert!(
        delivered,
        "Orthanc holds {} instances, expected {} source + {expected_results} results; log:\n{}",
        instances.as_array().map_or(0, Vec::len),
        files.len(),
        d.log_text()
    );

    let patients = get(pacs.http, "/patients?expand").unwrap();
    let studies = get(pacs.http, "/studies?expand").unwrap();
    let series = get(pacs.http, "/series?expand").unwrap();
    println!(
        "Orthanc /patients?expand:\n{}",
        serde_json::to_string_pretty(&patients).unwrap()
    );
    for s in series.as_array().unwrap() {
        let t = &s["MainDicomTags"];
        println!(
            "series {}: modality {}, {} instances, \"{}\"",
            t["SeriesNumber"].as_str().unwrap_or("?"),
            t["Modality"].as_str().unwrap_or("?"),
            s["Instances"].as_array().map_or(0, Vec::len),
            t["SeriesDescription"].as_str().unwrap_or("")
        );
    }
    assert_eq!(patients.as_array().unwrap().len(), 1, "one patient");
    assert_eq!(
        studies.as_array().unwrap().len(),
        1,
        "one study: results filed with the images"
    );
    let p = &patients[0]["MainDicomTags"];
    let source = dicom_object::open_file(&files[0]).unwrap();
    let tag = |t| {
        source
            .element(t)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string()
    };
    use dicom_dictionary_std::tags;
    assert_eq!(
        p["PatientName"].as_str(),
        Some(tag(tags::PATIENT_NAME).as_str())
    );
    assert_eq!(
        p["PatientID"].as_str(),
        Some(tag(tags::PATIENT_ID).as_str())
    );
    let m = modalities(&series);
    for want in ["MR", "SEG", "SR", "OT"] {
        assert!(
            m.iter().any(|x| x == want),
            "no {want} series in Orthanc: {m:?}"
        );
    }
    drop(pacs);
}
