use super::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
const ELE: &str = "1.2.840.10008.1.2.1";

/// Data-set bytes (no file meta) of a tiny MR instance at slice `z` of a 2-slice x 2-phase series.
fn dataset(series: &str, sop: &str, z: usize, extra: u8) -> Vec<u8> {
    let obj = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(MR)),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop)),
        DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(series),
        ),
        DataElement::new(
            tags::CARDIAC_NUMBER_OF_IMAGES,
            VR::IS,
            PrimitiveValue::from("2"),
        ),
        DataElement::new(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            PrimitiveValue::from(format!("0\\0\\{}", z * 10)),
        ),
        DataElement::new(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from(format!("x{extra}")),
        ),
    ]);
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("encode");
    out
}

fn setup(dir: &Path, settle_ms: u64) -> (Arc<JobQueue>, Spool) {
    let q = Arc::new(JobQueue::open(&dir.join("jobs")).expect("queue"));
    let cfg = SpoolConfig {
        dir: dir.join("spool"),
        settle_ms,
        series_idle_s: 3600,
        keep_received: false,
    };
    let s = Spool::open(&cfg, q.clone()).expect("spool");
    (q, s)
}

fn store(s: &Spool, series: &str, sop: &str, z: usize, extra: u8) -> Result<Stored, DaemonError> {
    let mut inc = s.begin(sop, MR, ELE)?;
    let bytes = dataset(series, sop, z, extra);
    let (a, b) = bytes.split_at(bytes.len() / 2);
    inc.write(a)?;
    inc.write(b)?;
    inc.commit()
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn stored_files_are_readable_dicom_with_generated_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_q, s) = setup(dir.path(), 0);
    assert_eq!(
        store(&s, "1.2.3", "1.2.3.1", 0, 0).expect("store"),
        Stored::New
    );
    let entries: Vec<_> = std::fs::read_dir(s.objects_dir())
        .expect("objects")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(entries.len(), 1);
    let name = entries[0].file_name().to_string_lossy().to_string();
    assert!(
        !name.contains("1.2.3"),
        "file name {name} must not come from DICOM values"
    );
    let obj = dicom_object::open_file(entries[0].path()).expect("a valid DICOM file");
    assert_eq!(
        obj.element(tags::SERIES_INSTANCE_UID)
            .expect("series")
            .to_str()
            .expect("str")
            .trim_end_matches('\0'),
        "1.2.3"
    );
    assert_eq!(files_in(&dir.path().join("spool/tmp")), 0);
}

#[test]
fn duplicates_are_idempotent_and_series_close_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, s) = setup(dir.path(), 0);
    for (i, z) in [(1, 0), (2, 0), (3, 1)] {
        store(&s, "1.2.3", &format!("1.2.3.{i}"), z, 0).expect("store");
    }
    assert_eq!(
        store(&s, "1.2.3", "1.2.3.1", 0, 0).expect("dup"),
        Stored::Duplicate
    );
    assert!(
        s.poll(Instant::now()).expect("poll").is_empty(),
        "slice 1 has 1 of 2 phases"
    );
    store(&s, "1.2.3", "1.2.3.4", 1, 0).expect("store");
    let jobs = s.poll(Instant::now()).expect("poll");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].files.len(), 4);
    assert!(s.poll(Instant::now()).expect("poll").is_empty());
    // the same bytes again after the close: still a duplicate, no new job
    assert_eq!(
        store(&s, "1.2.3", "1.2.3.2", 0, 0).expect("dup"),
        Stored::Duplicate
    );
    assert_eq!(s.open_series(), 0);
    assert_eq!(q.count(JobState::Pending), 1);
    // changed bytes after the close open a new reception epoch
    assert_eq!(
        store(&s, "1.2.3", "1.2.3.2", 0, 9).expect("new"),
        Stored::New
    );
    assert_eq!(s.open_series(), 1);
}

#[test]
fn dropped_instances_leave_nothing_and_restart_recovers_open_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_q, s) = setup(dir.path(), 0);
        store(&s, "9.9", "9.9.1", 0, 0).expect("store");
        let mut inc = s.begin("9.9.2", MR, ELE).expect("begin");
        inc.write(&dataset("9.9", "9.9.2", 0, 0)[..20])
            .expect("write");
        drop(inc); // the sender vanished mid-instance
        assert_eq!(files_in(&dir.path().join("spool/tmp")), 0);
        // garbage bytes are refused and leave nothing behind
        let mut bad = s.begin("9.9.3", MR, ELE).expect("begin");
        bad.write(b"\x01\x02garbage").expect("write");
        assert!(bad.commit().is_err());
        assert_eq!(files_in(&s.objects_dir()), 1);
    }
    // a torn index line (crash mid-append) and an orphan object (crash before indexing)
    let index = dir.path().join("spool/index.jsonl");
    let mut f = OpenOptions::new().append(true).open(&index).expect("index");
    f.write_all(b"{\"op\":\"instance\",\"sop\":\"9.9")
        .expect("tear");
    std::fs::write(dir.path().join("spool/objects/orphan.dcm"), b"x").expect("orphan");
    let (q, s) = setup(dir.path(), 0);
    assert_eq!(s.open_series(), 1);
    assert!(
        !dir.path().join("spool/objects/orphan.dcm").exists(),
        "unacknowledged file removed"
    );
    store(&s, "9.9", "9.9.2", 0, 0).expect("store after restart");
    let jobs = s.poll(Instant::now()).expect("poll");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].files.len(), 2);
    // a crash after the job was written but before the index said "closed": still closed once
    let text = std::fs::read_to_string(&index).expect("index");
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("\"closed\"")).collect();
    std::fs::write(&index, kept.join("\n") + "\n").expect("rewrite");
    let (_q2, s2) = setup(dir.path(), 0);
    assert_eq!(s2.open_series(), 0);
    assert!(s2.poll(Instant::now()).expect("poll").is_empty());
    assert_eq!(q.count(JobState::Pending), 1);
}

#[test]
fn restart_compacts_the_index_and_forgets_long_finished_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = dir.path().join("spool/index.jsonl");
    let job = {
        let (q, s) = setup(dir.path(), 0);
        for (i, z) in [(1, 0), (2, 0), (3, 1), (4, 1)] {
            store(&s, "5.5", &format!("5.5.{i}"), z, 0).expect("store");
        }
        let jobs = s.poll(Instant::now()).expect("poll");
        assert_eq!(jobs.len(), 1);
        q.advance(&jobs[0].id, JobState::Pending, JobState::Done)
            .expect("done");
        jobs[0].clone()
    };
    // The job finished two days ago, and the index holds many superseded records.
    let done = dir.path().join(format!("jobs/done/{}.json", job.id));
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&done).expect("job")).expect("json");
    rec["enqueued_ms"] = serde_json::json!(unix_ms() - 48 * 3600 * 1000);
    std::fs::write(&done, serde_json::to_vec(&rec).expect("json")).expect("write job");
    let text = std::fs::read_to_string(&index).expect("index");
    let first = text.lines().next().expect("a record").to_string();
    let padded = format!("{text}{}", format!("{first}\n").repeat(COMPACT_SLACK + 10));
    std::fs::write(&index, padded).expect("pad");

    let (_q, s) = setup(dir.path(), 0);
    let after = std::fs::read_to_string(&index).expect("index");
    assert_eq!(
        after.lines().count(),
        1,
        "only the closed epoch remains:\n{after}"
    );
    assert!(after.contains("\"closed\"") && after.contains(&job.id));
    // Long finished: the same instance again is a new reception, in a new epoch.
    assert_eq!(store(&s, "5.5", "5.5.1", 0, 0).expect("store"), Stored::New);
    assert_eq!(s.open_series(), 1);
    for (i, z) in [(2, 0), (3, 1), (4, 1)] {
        store(&s, "5.5", &format!("5.5.{i}"), z, 0).expect("store");
    }
    let jobs = s.poll(Instant::now()).expect("poll");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].epoch, job.epoch + 1);
}
