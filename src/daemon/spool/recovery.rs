//! Start-up: the spool's state rebuilt from its index and the job queue. Jobs are the commit
//! point of a close, so a reception with a job is closed even when the index lost (or never
//! got) its `closed` record; receptions after the last closed one are open again.

use super::index::{Index, InstanceRecord, Record};
use super::series::{ClosedSeries, OpenSeries};
use super::DUPLICATE_WINDOW_MS;
use crate::daemon::fsio::unix_ms;
use crate::daemon::queue::{JobQueue, JobRecord, JobState};
use crate::daemon::DaemonError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// The state replay produced.
pub(super) struct Recovered {
    pub index: Index,
    pub open: HashMap<String, OpenSeries>,
    pub closed: HashMap<String, ClosedSeries>,
    pub epochs: HashMap<String, u32>,
    /// Every file an instance record names.
    pub known_files: HashSet<String>,
    /// Lines in the index (records and skipped ones): compaction compares it with what is
    /// still needed.
    pub lines: usize,
}

/// What the index and the queue say about one series.
#[derive(Default)]
struct SeriesLog {
    instances: Vec<InstanceRecord>,
    /// Closed receptions: epoch -> job id.
    closed: BTreeMap<u32, String>,
    repeated: HashSet<u32>,
}

/// Replays `index_path` and reconciles it with `queue`.
pub(super) fn recover(index_path: &Path, queue: &JobQueue) -> Result<Recovered, DaemonError> {
    let (index, replay) = Index::open(index_path)?;
    if replay.skipped > 0 {
        log::warn!(
            "{}: {} torn or corrupt records skipped ({} complete records recovered from \
             behind them); no acknowledged instance depends on a torn record",
            index_path.display(),
            replay.skipped,
            replay.salvaged
        );
    }
    let lines = replay.records.len() + replay.skipped;
    let mut logs: HashMap<String, SeriesLog> = HashMap::new();
    let mut known_files = HashSet::new();
    let mut epochs: HashMap<String, u32> = HashMap::new();
    let bump = |epochs: &mut HashMap<String, u32>, series: &str, epoch: u32| {
        let e = epochs.entry(series.to_string()).or_insert(epoch);
        *e = (*e).max(epoch);
    };
    for r in replay.records {
        match r {
            Record::Instance(i) => {
                known_files.insert(i.file.clone());
                bump(&mut epochs, &i.series, i.epoch);
                logs.entry(i.series.clone()).or_default().instances.push(i);
            }
            Record::Closed { series, epoch, job } => {
                bump(&mut epochs, &series, epoch);
                logs.entry(series).or_default().closed.insert(epoch, job);
            }
            Record::Repeated { series, epoch } => {
                bump(&mut epochs, &series, epoch);
                logs.entry(series).or_default().repeated.insert(epoch);
            }
        }
    }
    let mut jobs: HashMap<String, JobRecord> = HashMap::new();
    for s in JobState::ALL {
        for j in queue.list(s)? {
            bump(&mut epochs, &j.series_uid, j.epoch);
            logs.entry(j.series_uid.clone())
                .or_default()
                .closed
                .insert(j.epoch, j.id.clone());
            jobs.insert(j.id.clone(), j);
        }
    }
    let (mut open, mut closed) = (HashMap::new(), HashMap::new());
    let now_ms = unix_ms();
    for (uid, log) in logs {
        let last_closed = log.closed.iter().next_back().map(|(e, j)| (*e, j.clone()));
        let after = last_closed.as_ref().map(|(e, _)| *e);
        let pending: Vec<&InstanceRecord> = log
            .instances
            .iter()
            .filter(|r| after.is_none_or(|e| r.epoch > e) && !log.repeated.contains(&r.epoch))
            .collect();
        if let Some(o) = open_series(&pending) {
            open.insert(uid.clone(), o);
        }
        if let Some((epoch, job_id)) = last_closed {
            let job = jobs.get(&job_id);
            let closed_ms = job.map_or(0, |j| j.enqueued_ms);
            let recent = now_ms.saturating_sub(closed_ms) < DUPLICATE_WINDOW_MS;
            if recent || open.contains_key(&uid) {
                let sops = processed(&log.instances, epoch, job);
                closed.insert(
                    uid,
                    ClosedSeries {
                        epoch,
                        version: job.map_or(epoch + 1, JobRecord::version),
                        job: job_id,
                        sops,
                        closed_ms,
                    },
                );
            }
        }
    }
    Ok(Recovered {
        index,
        open,
        closed,
        epochs,
        known_files,
        lines,
    })
}

/// The open reception made of `recs` (latest copy of each instance), if any.
fn open_series(recs: &[&InstanceRecord]) -> Option<OpenSeries> {
    let epoch = recs.iter().map(|r| r.epoch).max()?;
    let mut sops = BTreeMap::new();
    for r in recs {
        sops.insert(r.sop.clone(), (*r).clone());
    }
    Some(OpenSeries {
        epoch,
        sops,
        last_seen: Instant::now(),
    })
}

/// What the job of closed reception `epoch` processed: the instance records its file list
/// names (the latest copy of each instance up to `epoch` when the job file is gone).
fn processed(
    recs: &[InstanceRecord],
    epoch: u32,
    job: Option<&JobRecord>,
) -> BTreeMap<String, InstanceRecord> {
    let files: Option<HashSet<&str>> = job.map(|j| j.files.iter().map(String::as_str).collect());
    let mut sops = BTreeMap::new();
    for r in recs.iter().filter(|r| r.epoch <= epoch) {
        if files.as_ref().is_none_or(|f| f.contains(r.file.as_str())) {
            sops.insert(r.sop.clone(), r.clone());
        }
    }
    sops
}
