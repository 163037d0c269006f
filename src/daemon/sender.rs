//! Sends stored results to the destination: takes `stored` jobs, C-STOREs their folder, and
//! moves them to `done`. Transient failures are retried with a doubling delay up to
//! `attempts`; files the peer rejects permanently, or that still fail after the last attempt,
//! are copied to `<spool>/dead-letter/<job>/` with the reason, so nothing is retried forever
//! and nothing is silently lost. Without a destination, stored jobs are simply done.

use super::config::DestinationConfig;
use super::net::scu::{send_files, Outcome, Peer};
use super::queue::{JobQueue, JobState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs until `stop`: the sender loop.
pub fn run(
    queue: Arc<JobQueue>,
    dest: Option<DestinationConfig>,
    calling: String,
    output_dir: PathBuf,
    dead_letter: PathBuf,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let job = match queue.take(JobState::Stored, Duration::from_millis(300)) {
            Ok(Some(j)) => j,
            Ok(None) => continue,
            Err(e) => {
                log::error!("job queue: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Some(d) = &dest {
            let dir = output_dir.join(&job.id);
            let failures = deliver(d, &calling, &dir, &stop);
            if !failures.is_empty() {
                dead_letter_files(&dead_letter.join(&job.id), &failures);
            }
        }
        if let Err(e) = queue.advance(&job.id, JobState::Stored, JobState::Done) {
            log::error!("job {}: {e}", job.id);
        }
    }
}

/// Sends a result folder with retries; returns the files that could not be delivered.
pub fn deliver(
    d: &DestinationConfig,
    calling: &str,
    dir: &Path,
    stop: &AtomicBool,
) -> Vec<(PathBuf, String)> {
    let peer = Peer {
        address: d.address.clone(),
        called: d.ae_title.clone(),
        calling: d
            .calling_ae_title
            .clone()
            .unwrap_or_else(|| calling.to_string()),
        timeout: Duration::from_secs(d.timeout_s),
    };
    let mut files = Vec::new();
    crate::daemon::net::scu::collect_dcm_files(dir, &mut files);
    files.sort();
    let mut permanent = Vec::new();
    let mut delay = d.retry_delay_s.max(0.0);
    for attempt in 1..=d.attempts {
        let outcomes = send_files(&peer, &files);
        let mut retry = Vec::new();
        for (f, o) in outcomes {
            match o {
                Outcome::Stored => {}
                Outcome::Permanent(why) => {
                    log::error!("{} rejected {} permanently: {why}", d.ae_title, f.display());
                    permanent.push((f, why));
                }
                Outcome::Transient(why) => retry.push((f, why)),
            }
        }
        if retry.is_empty() {
            log::info!(
                "results in {} sent to {} (attempt {attempt})",
                dir.display(),
                d.ae_title
            );
            return permanent;
        }
        log::warn!(
            "sending to {}: {} files not stored (attempt {attempt} of {}): {}",
            d.ae_title,
            retry.len(),
            d.attempts,
            retry[0].1
        );
        if attempt == d.attempts || stop.load(Ordering::SeqCst) {
            permanent.extend(retry);
            break;
        }
        files = retry.into_iter().map(|(f, _)| f).collect();
        std::thread::sleep(Duration::from_secs_f64(delay));
        delay *= 2.0;
    }
    permanent
}

fn dead_letter_files(dir: &Path, failures: &[(PathBuf, String)]) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        log::error!("{}: {e}", dir.display());
        return;
    }
    let mut reasons = String::new();
    for (i, (f, why)) in failures.iter().enumerate() {
        let name = format!("{i:04}.dcm");
        if let Err(e) = std::fs::copy(f, dir.join(&name)) {
            log::error!("dead letter {}: {e}", f.display());
        }
        reasons.push_str(&format!("{name}\t{}\t{why}\n", f.display()));
    }
    let _ = std::fs::write(dir.join("reasons.tsv"), reasons);
    log::error!(
        "{} result files moved to the dead-letter folder {}",
        failures.len(),
        dir.display()
    );
}
