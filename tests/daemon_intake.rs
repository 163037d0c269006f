//! The receiver's promises at the intake, against real dcmtk peers: a paused transfer and a
//! re-sent series are processed whole as superseding versions (never a second, partial
//! result); a pure repeat produces nothing; data sets that are not what the service takes are
//! refused with their DICOM status; SIGTERM drains instead of killing; a full disk loses no
//! acknowledged instance and leaves no temporary file; kill -9 at random points loses nothing
//! and duplicates nothing. Without dcmtk each test prints "skipped" and returns.

mod daemon_support;

use daemon_support::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// report.json of every complete result folder.
fn reports(d: &Served) -> Vec<serde_json::Value> {
    d.results()
        .iter()
        .filter_map(|r| std::fs::read(r.join("report.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

fn wait_reports(d: &Served, n: usize, limit: Duration) -> Vec<serde_json::Value> {
    wait_until(limit, || reports(d).len() >= n);
    reports(d)
}

fn stored_ok(out: &std::process::Output) -> bool {
    out.status.success()
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut dicom_object::DefaultDicomObject)) {
    let mut obj = dicom_object::open_file(path).expect("open");
    edit(&mut obj);
    obj.write_to_file(path).expect("write");
}

#[test]
fn a_paused_transfer_gives_one_superseding_whole_result() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = synthetic_series(&dir.path().join("in"), "1.2.826.0.1.3680043.10.1.1", 4, 6);
    let port = free_port();
    let d = Served::start(dir.path(), "", port);
    // two whole slices, then a pause longer than settle_ms: the first part closes
    assert!(stored_ok(&storescu(port, "SCANNER", &files[..12])));
    let first = wait_reports(&d, 1, Duration::from_secs(60));
    assert_eq!(first.len(), 1, "log:\n{}", d.log_text());
    assert_eq!(first[0]["slices"], 2);
    // the rest arrives: one new version of the whole series, superseding the first
    assert!(stored_ok(&storescu(port, "SCANNER", &files[12..])));
    let all = wait_reports(&d, 2, Duration::from_secs(60));
    assert_eq!(all.len(), 2, "log:\n{}", d.log_text());
    let second = all
        .iter()
        .find(|r| r["version"] == 2)
        .unwrap_or_else(|| panic!("no version 2 in {all:?}"));
    assert_eq!(second["slices"], 4, "processed whole: {second}");
    assert_eq!(second["phases"], 6);
    assert_eq!(second["supersedes"], first[0]["job"]);
}

#[test]
fn a_resent_series_is_processed_whole_and_a_pure_repeat_not_at_all() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = synthetic_series(&dir.path().join("in"), "1.2.826.0.1.3680043.10.1.2", 3, 5);
    let port = free_port();
    let d = Served::start(dir.path(), "", port);
    assert!(stored_ok(&storescu(port, "SCANNER", &files)));
    assert_eq!(wait_reports(&d, 1, Duration::from_secs(60)).len(), 1);
    // the same files again, byte for byte (a sender retrying): no second result
    assert!(stored_ok(&storescu(port, "SCANNER", &files)));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reports(&d).len(), 1, "log:\n{}", d.log_text());
    // three images corrected and the whole series sent again: processed whole
    for f in &files[..3] {
        rewrite(f, |o| {
            o.put(DataElement::new(
                tags::SERIES_DESCRIPTION,
                VR::LO,
                PrimitiveValue::from("corrected"),
            ));
        });
    }
    assert!(stored_ok(&storescu(port, "SCANNER", &files)));
    let all = wait_reports(&d, 2, Duration::from_secs(60));
    let v2 = all
        .iter()
        .find(|r| r["version"] == 2)
        .unwrap_or_else(|| panic!("no version 2 in {all:?}\n{}", d.log_text()));
    assert_eq!(
        (v2["slices"].as_u64(), v2["phases"].as_u64()),
        (Some(3), Some(5))
    );
    assert!(v2["supersedes"].is_string());
}

#[test]
fn instances_the_service_does_not_take_are_refused_with_their_status() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = synthetic_series(&dir.path().join("in"), "1.2.826.0.1.3680043.10.1.3", 1, 2);
    // an MR SOP class holding a CT image
    rewrite(&files[0], |o| {
        o.put(DataElement::new(
            tags::MODALITY,
            VR::CS,
            PrimitiveValue::from("CT"),
        ));
    });
    // pixel data far shorter than 40 x 40 x 16 bits: a valid encoding of a broken image
    rewrite(&files[1], |o| {
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(vec![1u8, 0]),
        ));
    });
    let port = free_port();
    let d = Served::start(dir.path(), "", port);
    let send = |file: &Path| {
        let out = run_limited(
            Command::new("storescu")
                .args(["-v", "-aet", "SCANNER", "-aec", "CINESEG", "127.0.0.1"])
                .arg(port.to_string())
                .arg(file),
            Duration::from_secs(60),
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .to_lowercase()
    };
    let mut broken: Vec<String> = Vec::new();
    let text = send(&files[0]);
    if !text.contains("datasetdoesnotmatchsopclass") {
        broken.push(format!("item 8: storescu not told of the CT image: {text}"));
    }
    if !d.log_text().contains("refused with status 0xA900") {
        broken.push("item 8: no 0xA900 refusal logged".into());
    }
    let text = send(&files[1]);
    if !text.contains("0xc000") && !text.contains("cannotunderstand") {
        broken.push(format!(
            "item 9: storescu not told of the cut-short pixel data: {text}"
        ));
    }
    let kept = count(&dir.path().join("state/objects"));
    if kept != 0 {
        broken.push(format!("{kept} refused instance(s) kept in the spool"));
    }
    assert!(broken.is_empty(), "promises broken: {broken:#?}");
}

fn sigterm(d: &Served) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(d.child.id() as libc::pid_t, libc::SIGTERM);
    }
}

#[test]
fn sigterm_lets_the_open_association_finish_and_exits_cleanly() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = synthetic_series(&dir.path().join("in"), "1.2.826.0.1.3680043.10.1.4", 4, 10);
    let port = free_port();
    let mut d = Served::start(dir.path(), "", port);
    let mut sender = Command::new("storescu");
    sender
        .args(["-aet", "SCANNER", "-aec", "CINESEG", "127.0.0.1"])
        .arg(port.to_string())
        .args(&files)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut sender = sender.spawn().expect("storescu");
    // SIGTERM as soon as the association is open and instances are arriving
    assert!(wait_until(Duration::from_secs(20), || count(
        &dir.path().join("state/objects")
    ) >= 2));
    sigterm(&d);
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = d.child.try_wait() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}; log:\n{}", d.log_text());
    assert!(d.log_text().contains("stopped cleanly"), "{}", d.log_text());
    assert!(
        sender.wait().expect("storescu").success(),
        "the open association finished"
    );
    // new associations were refused while draining; after a restart the series is processed
    let d2 = Served::spawn(dir.path(), d.config.clone(), port);
    let r = wait_reports(&d2, 1, Duration::from_secs(60));
    assert_eq!(r.len(), 1, "log:\n{}", d2.log_text());
    assert_eq!(
        (r[0]["slices"].as_u64(), r[0]["phases"].as_u64()),
        (Some(4), Some(10))
    );
}

/// A small tmpfs for the spool, or None (with "skipped") where mounting is not allowed.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("skipped: cannot mount a small tmpfs (needs root) for the disk-full test");
            return None;
        }
        Some(SmallDisk(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_loses_no_acknowledged_instance_and_leaves_no_temporary_file() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = synthetic_series(&dir.path().join("in"), "1.2.826.0.1.3680043.10.1.5", 6, 10);
    let Some(disk) = SmallDisk::mount(&dir.path().join("state"), "160k") else {
        return;
    };
    let port = free_port();
    let mut d = Served::start(dir.path(), "", port);
    // Each promise is checked and reported (by issue-10 item), so a build that breaks several
    // says which.
    let mut broken: Vec<String> = Vec::new();
    // each instance ~3.5 KB: the disk fills part way through the series
    let _partly_refused = storescu(port, "SCANNER", &files);
    let objects = dir.path().join("state/objects");
    let stored = count(&objects);
    assert!(
        stored > 0 && stored < files.len(),
        "the disk filled part way: {stored}"
    );
    let leftovers = count(&dir.path().join("state/tmp"));
    if leftovers != 0 {
        broken.push(format!(
            "item 3: {leftovers} temporary file(s) stay after a failed write"
        ));
    }
    d.kill9();
    disk.resize("64m");
    let d2 = Served::spawn(dir.path(), d.config.clone(), port);
    let kept = count(&objects);
    if kept != stored {
        broken.push(format!(
            "item 1: recovery kept {kept} of {stored} acknowledged instances"
        ));
    }
    // the sender sends everything again; the whole series is processed once
    if !stored_ok(&storescu(port, "SCANNER", &files)) {
        broken.push("the re-sent series was not stored".into());
    }
    let r = wait_reports(&d2, 1, Duration::from_secs(60));
    let shape: Vec<_> = r
        .iter()
        .map(|r| (r["slices"].as_u64(), r["phases"].as_u64()))
        .collect();
    if shape != [(Some(6), Some(10))] {
        broken.push(format!(
            "one whole 6 x 10 result expected, got {shape:?}; log:\n{}",
            d2.log_text()
        ));
    }
    assert!(broken.is_empty(), "promises broken: {broken:#?}");
}

/// Item 1 end to end: a record torn while the daemon runs (the disk filled in the middle of
/// it) stays in `index.jsonl`, and the records of later instances are appended after it. After
/// kill -9 and a restart every acknowledged instance must still be there.
#[test]
fn a_record_torn_while_running_costs_no_acknowledged_instance() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = synthetic_series(&dir.path().join("in"), "1.2.826.0.1.3680043.10.1.6", 2, 3);
    let port = free_port();
    // nothing is processed before the kill: the instances stay in the spool
    let spool = "settle_ms = 600000\nseries_idle_s = 600";
    let mut d = Served::start_with_spool(dir.path(), "", spool, port);
    assert!(stored_ok(&storescu(port, "SCANNER", &files[..3])));
    {
        use std::io::Write;
        let mut index = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("state/index.jsonl"))
            .expect("index.jsonl");
        index
            .write_all(br#"{"op":"instance","sop":"1.2.826.0.1.3680043.10.1.6.999","ser"#)
            .expect("torn record");
    }
    assert!(stored_ok(&storescu(port, "SCANNER", &files[3..])));
    let objects = dir.path().join("state/objects");
    assert_eq!(count(&objects), files.len());
    d.kill9();
    let _d2 = Served::spawn(dir.path(), d.config.clone(), port);
    assert_eq!(
        count(&objects),
        files.len(),
        "every acknowledged instance survives the torn record"
    );
}

/// `chattr` on every file of a folder (`+i` makes them undeletable, even for root).
fn chattr_all(dir: &Path, flag: &str) -> bool {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    !files.is_empty()
        && Command::new("chattr")
            .arg(flag)
            .args(&files)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

/// Item 2 end to end: the crash between "results stored" and "received images removed" is
/// staged by making the images undeletable (`chattr +i`) until the daemon is killed; after the
/// restart the images of the processed series must go (`keep_received = false`).
#[test]
fn images_of_a_processed_series_do_not_outlive_a_crash() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = synthetic_series(&dir.path().join("in"), "1.2.826.0.1.3680043.10.1.7", 2, 3);
    let port = free_port();
    // no continuation window: the images are no longer needed once the series is processed
    let spool = "settle_ms = 2000\ncontinuation_window_s = 0";
    let mut d = Served::start_with_spool(dir.path(), "", spool, port);
    assert!(stored_ok(&storescu(port, "SCANNER", &files)));
    let objects = dir.path().join("state/objects");
    if !chattr_all(&objects, "+i") {
        println!("skipped: chattr +i is not supported here");
        return;
    }
    let r = wait_reports(&d, 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    d.kill9();
    let undeletable = chattr_all(&objects, "-i");
    assert!(undeletable, "chattr -i");
    assert_eq!(r.len(), 1, "the series was processed before the kill");
    assert_eq!(count(&objects), files.len(), "the removal was held off");
    let _d2 = Served::spawn(dir.path(), d.config.clone(), port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&objects) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        count(&objects),
        0,
        "the received images of a processed series are removed after the crash"
    );
}

#[test]
fn kill_9_at_random_points_loses_nothing_and_duplicates_nothing() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let series: Vec<(String, Vec<PathBuf>)> = (0..3)
        .map(|i| {
            let uid = format!("1.2.826.0.1.3680043.10.2.{i}");
            let files = synthetic_series(&dir.path().join(format!("in{i}")), &uid, 3, 6);
            (uid, files)
        })
        .collect();
    let port = free_port();
    let spool = "settle_ms = 2500\ncontinuation_window_s = 0";
    let mut d = Served::start_with_spool(dir.path(), "", spool, port);
    // a fixed seed: the kill points differ per round but the test is repeatable
    let mut seed = 0x9e37_79b9_u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..4 {
        let senders: Vec<_> = series
            .iter()
            .map(|(_, files)| {
                Command::new("storescu")
                    .args(["-aet", "SCANNER", "-aec", "CINESEG", "127.0.0.1"])
                    .arg(port.to_string())
                    .args(files)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("storescu")
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100 + next(900)));
        d.kill9();
        for mut s in senders {
            let _ = s.wait();
        }
        d = Served::spawn(dir.path(), d.config.clone(), port);
        assert!(
            !d.log_text().contains("panicked"),
            "round {round}: {}",
            d.log_text()
        );
    }
    // everything not acknowledged is sent again (the senders cannot tell, so: everything)
    for (_, files) in &series {
        assert!(stored_ok(&storescu(port, "SCANNER", files)));
    }
    let r = wait_reports(&d, series.len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(4));
    let r2 = reports(&d);
    assert_eq!(r.len(), r2.len(), "no further result appears");
    for (uid, _) in &series {
        let mine: Vec<_> = r2
            .iter()
            .filter(|x| x["series_instance_uid"] == uid.as_str())
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "series {uid}: {mine:?}\nlog:\n{}",
            d.log_text()
        );
        assert_eq!(
            (mine[0]["slices"].as_u64(), mine[0]["phases"].as_u64()),
            (Some(3), Some(6)),
            "nothing lost"
        );
    }
    assert!(wait_until(Duration::from_secs(30), || count(
        &dir.path().join("state/objects")
    ) == 0));
    assert_eq!(count(&dir.path().join("state/tmp")), 0);
}
