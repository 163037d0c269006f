//! Delivery and association limits against real dcmtk peers: a destination that refuses
//! permanently sends the results to the dead-letter folder at once (no retries); one that is
//! down at first gets them on a later attempt; one that never answers gets them dead-lettered
//! after the configured attempts; a client beyond `max_associations` is rejected while others
//! are served; and the total-time watchdog aborts an association that outstays its limit.

mod daemon_support;

use daemon_support::*;
use dicom_ul::ClientAssociationOptions;
use std::path::Path;
use std::time::{Duration, Instant};

const VERIFICATION: &str = "1.2.840.10008.1.1";

fn destination(pacs_port: u16, attempts: u32, delay: f64) -> String {
    format!("[destination]\nae_title = \"PACS\"\naddress = \"127.0.0.1:{pacs_port}\"\nattempts = {attempts}\nretry_delay_s = {delay}\ntimeout_s = 5\n")
}

fn send_series(d: &Served, dir: &Path, uid: &str) {
    let files = synthetic_series(&dir.join(uid), uid, 2, 3);
    let out = storescu(d.port, "SCANNER", &files);
    assert!(
        out.status.success(),
        "storescu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn send_one_series(d: &Served, dir: &Path, uid: &str) {
    send_series(d, dir, uid);
    assert!(
        d.wait_done(1, Duration::from_secs(90)),
        "series not finished; log:\n{}",
        d.log_text()
    );
}

/// Result files of the one processed series.
fn result_files(d: &Served) -> usize {
    let res = d.results();
    assert_eq!(res.len(), 1);
    dcm_files(&res[0])
}

#[test]
fn permanent_refusal_goes_to_dead_letter_without_retries() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, pacs_port) = (free_port(), free_port());
    let mut pacs = storescp(pacs_port, &dir.path().join("pacs"), &["--refuse"]);
    let d = Served::start(&dir.path().join("d"), &destination(pacs_port, 4, 2.0), port);
    let t0 = Instant::now();
    send_one_series(&d, dir.path(), "1.2.826.0.1.3680043.2.1125.91.1");
    let dead = d.root.join("state/dead-letter");
    let jobs: Vec<_> = std::fs::read_dir(&dead)
        .expect("dead-letter folder")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(jobs.len(), 1, "one job dead-lettered");
    let reasons = std::fs::read_to_string(jobs[0].path().join("reasons.tsv")).expect("reasons");
    assert_eq!(
        count(&jobs[0].path()) - 1,
        result_files(&d),
        "every result file kept, plus reasons.tsv"
    );
    assert!(reasons.contains("association"), "{reasons}");
    let log = d.log_text();
    assert!(
        log.contains("rejected") && log.contains("permanently"),
        "{log}"
    );
    assert!(
        !log.contains("attempt 1 of 4"),
        "a permanent refusal is not retried:\n{log}"
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    let _ = pacs.kill();
    let _ = pacs.wait();
}

#[test]
fn destination_down_at_first_gets_the_results_on_a_retry() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, pacs_port) = (free_port(), free_port());
    let d = Served::start(&dir.path().join("d"), &destination(pacs_port, 6, 1.0), port);
    send_series(&d, dir.path(), "1.2.826.0.1.3680043.2.1125.91.2");
    // The first attempt failed (nothing listens); start the PACS before the retries run out.
    assert!(
        wait_until(Duration::from_secs(30), || d
            .log_text()
            .contains("attempt 1 of 6")),
        "no failed first attempt:\n{}",
        d.log_text()
    );
    let pacs_dir = dir.path().join("pacs");
    let mut pacs = storescp(pacs_port, &pacs_dir, &[]);
    let expected = result_files(&d);
    assert!(
        wait_until(Duration::from_secs(60), || count(&pacs_dir) >= expected),
        "PACS got {} of {expected}; log:\n{}",
        count(&pacs_dir),
        d.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_text()
            .contains("sent to PACS (attempt")),
        "{}",
        d.log_text()
    );
    assert!(
        !d.log_text().contains("attempt 1)"),
        "delivered on a retry, not the first attempt"
    );
    assert_eq!(count(&d.root.join("state/dead-letter")), 0);
    let _ = pacs.kill();
    let _ = pacs.wait();
}

#[test]
fn destination_never_up_is_dead_lettered_after_the_last_attempt() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, pacs_port) = (free_port(), free_port());
    let d = Served::start(&dir.path().join("d"), &destination(pacs_port, 3, 0.2), port);
    send_one_series(&d, dir.path(), "1.2.826.0.1.3680043.2.1125.91.3");
    let log = d.log_text();
    assert!(
        log.contains("attempt 1 of 3")
            && log.contains("attempt 2 of 3")
            && log.contains("attempt 3 of 3"),
        "{log}"
    );
    assert!(!log.contains("attempt 4"), "{log}");
    let dead = d.root.join("state/dead-letter");
    assert_eq!(count(&dead), 1, "{log}");
}

#[test]
fn associations_beyond_the_limit_are_rejected_and_the_watchdog_ends_long_ones() {
    if !have_dcmtk() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let limits = "max_associations = 1\nidle_timeout_s = 60\nassociation_timeout_s = 3\n";
    let d = Served::start(&dir.path().join("d"), limits, port);
    // The start-up probe's connection may still hold the slot for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut held, t0) = loop {
        let t0 = Instant::now();
        match ClientAssociationOptions::new()
            .with_abstract_syntax(VERIFICATION)
            .calling_ae_title("HOLDER")
            .called_ae_title("CINESEG")
            .read_timeout(Duration::from_secs(20))
            .establish(format!("127.0.0.1:{port}").as_str())
        {
            Ok(a) => break (a, t0),
            Err(e) if Instant::now() > deadline => panic!("first association: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    // The one allowed association is taken: echoscu is rejected (transient, local limit).
    let out = echoscu(port, "SCANNER");
    assert!(!out.status.success(), "a second association was accepted");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Rejected") || text.contains("rejected"),
        "{text}"
    );
    // The held association sends nothing but is not idle-limited (60 s): the total-time
    // watchdog (3 s) must end it.
    let ended = held.receive();
    let after = t0.elapsed();
    assert!(
        !matches!(ended, Ok(dicom_ul::Pdu::PData { .. })),
        "unexpected data: {ended:?}"
    );
    assert!(
        after >= Duration::from_millis(2500) && after < Duration::from_secs(15),
        "association ended after {after:?}"
    );
    // With the slot free again, a new association is served.
    assert!(
        wait_until(Duration::from_secs(10), || echoscu(port, "SCANNER")
            .status
            .success()),
        "{}",
        d.log_text()
    );
    assert!(!d.log_text().contains("panicked"));
}
