//! Streaming inference (issue 14): a series sent slice by slice, as a scanner acquires it, is
//! segmented while it arrives, and the result is exactly the one of segmenting the whole series
//! after it closed. Two daemons receive the same series: one with streaming on, sent one slice
//! per association with a pause; one with `streaming = false`, sent in one association. Their
//! measurements, quality flags, confidences and SEG pixel data must be identical, and the
//! streaming daemon must really have segmented slices before the series closed.

mod daemon_support;

use daemon_support::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many images the daemon says it segmented while the series arrived (from its log).
fn reused_images(log: &str) -> Option<usize> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("segmented while the series arrived"))?;
    let before = line
        .split(" images segmented while the series arrived")
        .next()?;
    before.rsplit(' ').next()?.parse().ok()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
        .expect("parse report.json")
}

fn seg_pixels(dir: &Path) -> Vec<u8> {
    let obj = dicom_object::open_file(dir.join("seg.dcm")).expect("seg.dcm");
    obj.element(dicom_dictionary_std::tags::PIXEL_DATA)
        .expect("PixelData")
        .to_bytes()
        .expect("bytes")
        .to_vec()
}

/// Makes the slices of a synthetic series differ (the generator draws every slice alike), so
/// that each has its own chunks: adds `slice` grey levels to every pixel.
fn vary_by_slice(files: &[PathBuf], phases: usize) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    for (i, f) in files.iter().enumerate() {
        let slice = (i / phases) as u16;
        let mut obj = dicom_object::open_file(f).expect("read");
        let px: Vec<u8> = obj
            .element(tags::PIXEL_DATA)
            .expect("PixelData")
            .to_bytes()
            .expect("bytes")
            .chunks_exact(2)
            .flat_map(|b| (u16::from_le_bytes([b[0], b[1]]) + 7 * slice).to_le_bytes())
            .collect();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(px),
        ));
        obj.write_to_file(f).expect("write");
    }
}

fn send_by_slice(port: u16, files: &[PathBuf], phases: usize, pause: Duration) {
    for slice in files.chunks(phases) {
        let out = storescu(port, "SCANNER", slice);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(pause);
    }
}

#[test]
fn streaming_gives_the_whole_series_result() {
    if !have_dcmtk() {
        return;
    }
    let (slices, phases) = (5, 8);
    let dir = tempfile::tempdir().expect("tempdir");
    let files = synthetic_series(&dir.path().join("series"), "2.25.7301", slices, phases);
    vary_by_slice(&files, phases);
    // A pause shorter than settle_ms between slices: one series, not five continuations.
    let spool = "settle_ms = 1500\n";
    let (ps, pw) = (free_port(), free_port());
    let streaming = Served::start_with(&dir.path().join("s"), "", spool, "", ps);
    let whole = Served::start_with(&dir.path().join("w"), "", spool, "streaming = false\n", pw);
    send_by_slice(ps, &files, phases, Duration::from_millis(400));
    let out = storescu(pw, "SCANNER", &files);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for d in [&streaming, &whole] {
        assert!(
            d.wait_done(1, Duration::from_secs(120)),
            "log:\n{}",
            d.log_text()
        );
    }
    let (rs, rw) = (streaming.results(), whole.results());
    assert_eq!((rs.len(), rw.len()), (1, 1), "one result each");
    let reused = reused_images(&streaming.log_text()).expect("streaming log line");
    let reused_whole = reused_images(&whole.log_text()).expect("whole-series log line");
    println!(
        "streaming daemon: {reused} of {} images segmented while the series arrived",
        slices * phases
    );
    assert!(
        reused >= (slices - 1) * phases,
        "streaming segmented no whole slice ahead ({reused} images); log:\n{}",
        streaming.log_text()
    );
    assert_eq!(reused_whole, 0, "streaming = false must not segment ahead");
    let (a, b) = (report(&rs[0]), report(&rw[0]));
    for key in [
        "slices",
        "phases",
        "measurements",
        "summary",
        "per_slice",
        "ef_flagged",
        "quality_flags",
        "confidence_per_phase",
        "key_phase_trigger_times_ms",
    ] {
        assert_eq!(
            a[key], b[key],
            "{key} differs between streaming and whole-series"
        );
    }
    // Idle again: the health line counts no series in flight (it said 1 while the feeder
    // merely waited for a job).
    let idle_line = |d: &Served| {
        let log = d.log_text();
        log.lines()
            .rev()
            .find(|l| l.contains("health:"))
            .map(str::to_string)
    };
    let before = idle_line(&streaming);
    assert!(
        wait_until(Duration::from_secs(10), || idle_line(&streaming) != before
            && idle_line(&streaming)
                .is_some_and(|l| l.contains(" 0 in flight, 1 done"))),
        "health line on an idle daemon: {:?}",
        idle_line(&streaming)
    );
    let masks = seg_pixels(&rs[0]);
    assert!(
        masks.iter().any(|b| *b != 0),
        "the SEG holds no segment pixel at all"
    );
    assert_eq!(
        masks,
        seg_pixels(&rw[0]),
        "SEG masks differ between streaming and whole-series"
    );
}
