use super::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
use std::path::Path;

const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
const ELE: &str = "1.2.840.10008.1.2.1";

/// Data-set bytes (no file meta) of a tiny MR image at slice `z` of a 2-slice x 2-phase series.
fn dataset(series: &str, sop: &str, z: usize, extra: u8) -> Vec<u8> {
    dataset_with(series, sop, z, extra, |_| {})
}

/// [`dataset`] with `edit` applied to the object before it is encoded.
fn dataset_with(
    series: &str,
    sop: &str,
    z: usize,
    extra: u8,
    edit: impl FnOnce(&mut InMemDicomObject),
) -> Vec<u8> {
    let mut obj = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(MR)),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop)),
        DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("MR")),
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
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("MONOCHROME2"),
        ),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(2u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(2u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(vec![1u8, 0, 2, 0, 3, 0, 4, 0]),
        ),
    ]);
    edit(&mut obj);
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
        continuation_window_s: 600,
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
    // the same bytes again after the close (a sender retrying): still a duplicate, and the
    // reception it opens only repeats the processed one, so it closes without a job
    assert_eq!(
        store(&s, "1.2.3", "1.2.3.2", 0, 0).expect("dup"),
        Stored::Duplicate
    );
    assert!(s.poll(Instant::now()).expect("poll").is_empty());
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

/// Sends `bytes` as instance `sop` of class `class`.
fn store_bytes(s: &Spool, sop: &str, class: &str, bytes: &[u8]) -> Result<Stored, DaemonError> {
    let mut inc = s.begin(sop, class, ELE)?;
    inc.write(bytes)?;
    inc.commit()
}

fn refusal_status(r: Result<Stored, DaemonError>) -> u16 {
    match r {
        Err(DaemonError::Rejected { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_continuation_after_a_pause_is_processed_with_the_first_part_as_a_superseding_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, s) = setup(dir.path(), 0);
    // slice 0 complete, then the sender pauses: the series closes on slice 0 alone
    store(&s, "7.7", "7.7.1", 0, 0).expect("store");
    store(&s, "7.7", "7.7.2", 0, 0).expect("store");
    let first = s.poll(Instant::now()).expect("poll");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].files.len(), 2);
    assert_eq!(first[0].supersedes, None);
    // the rest of the series arrives: one new version with both slices, superseding the first
    store(&s, "7.7", "7.7.3", 1, 0).expect("store");
    assert!(
        s.poll(Instant::now()).expect("poll").is_empty(),
        "slice 1 has 1 of 2 phases"
    );
    store(&s, "7.7", "7.7.4", 1, 0).expect("store");
    let second = s.poll(Instant::now()).expect("poll");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].files.len(), 4, "processed whole: {:?}", second[0]);
    assert_eq!(second[0].supersedes.as_deref(), Some(first[0].id.as_str()));
    assert_eq!(q.count(JobState::Pending), 2);
}

#[test]
fn a_resent_series_with_one_changed_image_is_processed_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_q, s) = setup(dir.path(), 0);
    let sops = [(1, 0), (2, 0), (3, 1), (4, 1)];
    for (i, z) in sops {
        store(&s, "8.8", &format!("8.8.{i}"), z, 0).expect("store");
    }
    assert_eq!(s.poll(Instant::now()).expect("poll").len(), 1);
    // the whole series again; image 3 was corrected in between
    for (i, z) in sops {
        let extra = if i == 3 { 5 } else { 0 };
        store(&s, "8.8", &format!("8.8.{i}"), z, extra).expect("resend");
    }
    let jobs = s.poll(Instant::now()).expect("poll");
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].files.len(),
        4,
        "the whole series, not the changed image"
    );
    assert!(jobs[0].supersedes.is_some());
}

#[test]
fn data_sets_that_do_not_match_their_command_or_the_service_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_q, s) = setup(dir.path(), 0);
    let ct = "1.2.840.10008.5.1.4.1.1.2";
    let seg = "1.2.840.10008.5.1.4.1.1.66.4";
    let sc = "1.2.840.10008.5.1.4.1.1.7";
    let set = |o: &mut InMemDicomObject, t, vr, v: &str| {
        o.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
    };
    // a CT data set announced as MR
    let bytes = dataset_with("6.6", "6.6.1", 0, 0, |o| {
        set(o, tags::SOP_CLASS_UID, VR::UI, ct)
    });
    assert_eq!(refusal_status(store_bytes(&s, "6.6.1", MR, &bytes)), 0xA900);
    // an MR SOP class with Modality CT
    let bytes = dataset_with("6.6", "6.6.2", 0, 0, |o| {
        set(o, tags::MODALITY, VR::CS, "CT")
    });
    assert_eq!(refusal_status(store_bytes(&s, "6.6.2", MR, &bytes)), 0xA900);
    // a data set whose SOPInstanceUID is not the command's
    let bytes = dataset("6.6", "6.6.99", 0, 0);
    assert_eq!(refusal_status(store_bytes(&s, "6.6.3", MR, &bytes)), 0xA900);
    // classes the service does not process
    let bytes = dataset_with("6.6", "6.6.4", 0, 0, |o| {
        set(o, tags::SOP_CLASS_UID, VR::UI, sc)
    });
    assert_eq!(refusal_status(store_bytes(&s, "6.6.4", sc, &bytes)), 0x0122);
    let bytes = dataset_with("6.6", "6.6.5", 0, 0, |o| {
        set(o, tags::SOP_CLASS_UID, VR::UI, seg);
        set(o, tags::MODALITY, VR::CS, "SEG");
    });
    assert_eq!(
        refusal_status(store_bytes(&s, "6.6.5", seg, &bytes)),
        0x0122
    );
    s.set_accept_segmentations(true);
    assert_eq!(
        store_bytes(&s, "6.6.5", seg, &bytes).expect("seg"),
        Stored::New
    );
    // a second, different data set under an acknowledged SOPInstanceUID
    store(&s, "6.6", "6.6.6", 0, 0).expect("store");
    assert_eq!(refusal_status(store(&s, "6.6", "6.6.6", 0, 1)), 0x0111);
    assert_eq!(
        store(&s, "6.6", "6.6.6", 0, 0).expect("same"),
        Stored::Duplicate
    );
    // nothing refused was kept: the SEG and one image
    assert_eq!(files_in(&s.objects_dir()), 2);
    assert_eq!(files_in(&dir.path().join("spool/tmp")), 0);
}

#[test]
fn truncated_pixel_data_is_refused_before_it_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_q, s) = setup(dir.path(), 0);
    let bytes = dataset_with("5.4", "5.4.1", 0, 0, |o| {
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(vec![1u8, 0]),
        ));
    });
    assert_eq!(refusal_status(store_bytes(&s, "5.4.1", MR, &bytes)), 0xC000);
    let good = dataset("5.4", "5.4.2", 0, 0);
    let cut = &good[..good.len() - 5];
    assert_eq!(refusal_status(store_bytes(&s, "5.4.2", MR, cut)), 0xC000);
    assert_eq!(files_in(&s.objects_dir()), 0);
}

#[test]
fn a_torn_index_record_loses_no_acknowledged_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acknowledged = 0;
    {
        let (_q, s) = setup(dir.path(), 3_600_000);
        for i in 0..6 {
            if i == 2 {
                // the disk fills in the middle of this instance's record
                s.lock().index.fail_next_after = Some(30);
                let torn = store(&s, "4.4", "4.4.99", 0, 0);
                assert!(matches!(torn, Err(DaemonError::Io { .. })), "{torn:?}");
            }
            store(&s, "4.4", &format!("4.4.{i}"), i % 2, 0).expect("store");
            acknowledged += 1;
        }
    }
    let (q, s) = setup(dir.path(), 0);
    assert_eq!(s.open_series(), 1);
    assert_eq!(files_in(&s.objects_dir()), acknowledged);
    let jobs = s.poll(Instant::now()).expect("poll");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].files.len(), acknowledged);
    assert_eq!(q.count(JobState::Pending), 1);
}

#[test]
fn images_of_a_processed_series_are_removed_at_start_up_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Arc::new(JobQueue::open(&dir.path().join("jobs")).expect("queue"));
    let cfg = SpoolConfig {
        dir: dir.path().join("spool"),
        settle_ms: 0,
        series_idle_s: 3600,
        keep_received: false,
        continuation_window_s: 0,
    };
    {
        let s = Spool::open(&cfg, q.clone()).expect("spool");
        for (i, z) in [(1, 0), (2, 0), (3, 1), (4, 1)] {
            store(&s, "3.3", &format!("3.3.{i}"), z, 0).expect("store");
        }
        let jobs = s.poll(Instant::now()).expect("poll");
        // results stored and sent, then kill -9 before the images were removed
        q.advance(&jobs[0].id, JobState::Pending, JobState::Done)
            .expect("done");
        assert_eq!(files_in(&s.objects_dir()), 4);
    }
    let s = Spool::open(&cfg, q).expect("spool");
    assert_eq!(files_in(&s.objects_dir()), 0);
}
