//! The persisted job queue: one JSON file per job, in one folder per state, moved between
//! states by atomic renames (fsync'd file and directories). After `kill -9` a job is in exactly
//! one state, so a restart resumes every job once: `pending` jobs are (re)processed, `stored`
//! ones (results written) are (re)sent, `done` and `failed` ones are left alone. Job ids are
//! derived from the series (hash of its UID + reception epoch), so enqueueing twice is a no-op.

use super::fsio::{ensure_dir, rename_durable, unix_ms, write_atomic};
use super::DaemonError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting to be segmented.
    Pending,
    /// Results are in the output folder; they remain to be sent.
    Stored,
    /// Finished (results stored and sent, or dead-lettered).
    Done,
    /// Quarantined with its error.
    Failed,
}

impl JobState {
    /// All states, in life order.
    pub const ALL: [JobState; 4] = [
        JobState::Pending,
        JobState::Stored,
        JobState::Done,
        JobState::Failed,
    ];

    fn dir(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Stored => "stored",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// One complete series to process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Stable id: hash of the SeriesInstanceUID and the reception epoch.
    pub id: String,
    /// SeriesInstanceUID (a UID, not patient data).
    pub series_uid: String,
    /// How many times this series was received and closed before (0 the first time).
    pub epoch: u32,
    /// Spool file names of its instances.
    pub files: Vec<String>,
    /// When its last instance was acknowledged (ms since the epoch): latency starts here.
    pub last_received_ms: u64,
    /// When it was queued.
    pub enqueued_ms: u64,
    /// Why the series was considered complete.
    pub closed_because: String,
    /// The error, for failed jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Which processed version of its series this job is (1 the first time; 0 in records
    /// written before versions were counted, read as `epoch + 1`).
    #[serde(default)]
    pub version: u32,
    /// The job of the earlier reception of this series whose result this one replaces (a
    /// continuation or a re-send processed whole): reports say which version they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<String>,
    /// Why the series is known to be incomplete (closed on the idle timeout with slices
    /// short of their phases...): becomes a quality flag on the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// Doubts about the reception worth a note in the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reception_notes: Vec<String>,
}

impl JobRecord {
    /// Which processed version of its series this job is (see [`JobRecord::version`]).
    pub fn version(&self) -> u32 {
        if self.version == 0 {
            self.epoch + 1
        } else {
            self.version
        }
    }

    /// The id of reception `epoch` of series `series_uid` (hex of SHA-256, never DICOM text).
    pub fn id_for(series_uid: &str, epoch: u32) -> String {
        format!("{}-{epoch}", short_hash(series_uid))
    }
}

/// 16 hex digits of SHA-256: names files, folders and patients after DICOM values without
/// writing the values themselves.
pub fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The on-disk queue.
pub struct JobQueue {
    root: PathBuf,
    claimed: Mutex<HashSet<String>>,
    wake: Condvar,
}

impl JobQueue {
    /// Opens (creating) the queue under `root`; leftovers of interrupted writes are removed.
    pub fn open(root: &Path) -> Result<JobQueue, DaemonError> {
        for s in JobState::ALL {
            ensure_dir(&root.join(s.dir()))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| DaemonError::io(&tmp, e))?;
        }
        ensure_dir(&tmp)?;
        Ok(JobQueue {
            root: root.into(),
            claimed: Mutex::new(HashSet::new()),
            wake: Condvar::new(),
        })
    }

    fn path(&self, state: JobState, id: &str) -> PathBuf {
        self.root.join(state.dir()).join(format!("{id}.json"))
    }

    /// The state a job is in, if it exists.
    pub fn state_of(&self, id: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|s| self.path(*s, id).is_file())
    }

    /// Queues `job` as pending unless a job with its id exists in any state. Returns whether
    /// it was created.
    pub fn enqueue(&self, job: &JobRecord) -> Result<bool, DaemonError> {
        if self.state_of(&job.id).is_some() {
            return Ok(false);
        }
        let bytes = serde_json::to_vec_pretty(job).map_err(DaemonError::json("the job record"))?;
        let tmp = self.root.join("tmp").join(format!("{}.json", job.id));
        write_atomic(&tmp, &self.path(JobState::Pending, &job.id), &bytes)?;
        self.wake.notify_all();
        Ok(true)
    }

    fn read(&self, path: &Path) -> Result<JobRecord, DaemonError> {
        let bytes = std::fs::read(path).map_err(|e| DaemonError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| DaemonError::Corrupt {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// Every job in `state`, oldest first.
    pub fn list(&self, state: JobState) -> Result<Vec<JobRecord>, DaemonError> {
        let dir = self.root.join(state.dir());
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| DaemonError::io(&dir, e))? {
            let p = e.map_err(|e| DaemonError::io(&dir, e))?.path();
            if p.extension().is_some_and(|x| x == "json") {
                match self.read(&p) {
                    Ok(j) => out.push(j),
                    Err(e) => log::error!("skipping unreadable job file: {e}"),
                }
            }
        }
        out.sort_by(|a, b| (a.enqueued_ms, &a.id).cmp(&(b.enqueued_ms, &b.id)));
        Ok(out)
    }

    /// Number of jobs in `state`.
    pub fn count(&self, state: JobState) -> usize {
        std::fs::read_dir(self.root.join(state.dir()))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Claims the oldest unclaimed job in `state`, waiting up to `wait` for one.
    pub fn take(&self, state: JobState, wait: Duration) -> Result<Option<JobRecord>, DaemonError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let jobs = self.list(state)?;
            let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(j) = jobs.into_iter().find(|j| !claimed.contains(&j.id)) {
                claimed.insert(j.id.clone());
                return Ok(Some(j));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let _ = self
                .wake
                .wait_timeout(claimed, (deadline - now).min(Duration::from_millis(250)))
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Gives a claimed job back without changing its state.
    pub fn release(&self, id: &str) {
        self.claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.wake.notify_all();
    }

    /// Moves a job from `from` to `to` (atomic rename) and releases its claim.
    pub fn advance(&self, id: &str, from: JobState, to: JobState) -> Result<(), DaemonError> {
        let r = rename_durable(&self.path(from, id), &self.path(to, id));
        self.release(id);
        r
    }

    /// Quarantines a job: its record, with `error`, goes to `failed`.
    pub fn fail(&self, job: &JobRecord, from: JobState, error: &str) -> Result<(), DaemonError> {
        let mut j = job.clone();
        j.error = Some(error.to_string());
        let bytes = serde_json::to_vec_pretty(&j).map_err(DaemonError::json("the job record"))?;
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.failed.json", job.id));
        write_atomic(&tmp, &self.path(JobState::Failed, &job.id), &bytes)?;
        let src = self.path(from, &job.id);
        std::fs::remove_file(&src).map_err(|e| DaemonError::io(&src, e))?;
        super::fsio::sync_dir(&self.root.join(from.dir()))?;
        self.release(&job.id);
        Ok(())
    }

    /// Wakes waiters (new work elsewhere, or shutdown).
    pub fn notify(&self) {
        self.wake.notify_all();
    }
}

/// A new pending job for reception `epoch` of `series_uid`.
pub fn new_job(
    series_uid: &str,
    epoch: u32,
    files: Vec<String>,
    last_received_ms: u64,
    closed_because: &str,
) -> JobRecord {
    JobRecord {
        id: JobRecord::id_for(series_uid, epoch),
        series_uid: series_uid.into(),
        epoch,
        files,
        last_received_ms,
        enqueued_ms: unix_ms(),
        closed_because: closed_because.into(),
        error: None,
        version: 1,
        supersedes: None,
        incomplete: None,
        reception_notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_move_through_states_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = JobQueue::open(dir.path()).expect("open");
        let j = new_job("1.2.3", 0, vec!["a.dcm".into()], 5, "count");
        assert!(q.enqueue(&j).expect("enqueue"));
        assert!(
            !q.enqueue(&j).expect("again"),
            "second enqueue must be a no-op"
        );
        let got = q
            .take(JobState::Pending, Duration::from_millis(10))
            .expect("take")
            .expect("a job");
        assert_eq!(got, j);
        assert!(
            q.take(JobState::Pending, Duration::from_millis(10))
                .expect("take")
                .is_none(),
            "claimed jobs are not handed out twice"
        );
        q.advance(&j.id, JobState::Pending, JobState::Stored)
            .expect("advance");
        assert_eq!(q.state_of(&j.id), Some(JobState::Stored));
        // a restart sees the same state and no claim
        let q2 = JobQueue::open(dir.path()).expect("reopen");
        assert_eq!(q2.count(JobState::Pending), 0);
        let s = q2
            .take(JobState::Stored, Duration::from_millis(10))
            .expect("take")
            .expect("stored job");
        q2.fail(&s, JobState::Stored, "boom").expect("fail");
        let failed = q2.list(JobState::Failed).expect("list");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].error.as_deref(), Some("boom"));
        assert!(
            !q2.enqueue(&j).expect("enqueue after failure"),
            "a failed job is not re-queued by a resend of the same epoch"
        );
    }

    #[test]
    fn ids_depend_on_series_and_epoch_only() {
        assert_eq!(JobRecord::id_for("1.2", 0), JobRecord::id_for("1.2", 0));
        assert_ne!(JobRecord::id_for("1.2", 0), JobRecord::id_for("1.2", 1));
        assert_ne!(JobRecord::id_for("1.2", 0), JobRecord::id_for("1.3", 0));
        assert!(JobRecord::id_for("../../etc", 0)
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-'));
    }
}
