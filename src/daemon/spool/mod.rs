//! Durable receive. An instance streams into `tmp/` under a generated name and is fsync'd; its
//! header is checked against the C-STORE command ([`received`]); it is renamed into `objects/`
//! (directory fsync'd) and a record with its SHA-256 is appended to `index.jsonl` and fsync'd
//! ([`index`]). Only then does [`Incoming::commit`] return and the receiver send success. Names
//! are generated (counter + random), never built from DICOM text.
//!
//! Hash choice: SHA-256 (`sha2`, pure Rust, no C build) gives the same digest as coreutils'
//! `sha256sum`, so an operator can check a spool file by hand; at several hundred MB/s it is
//! far faster than the network that feeds it.
//!
//! Series bookkeeping is in [`series`]: receptions (epochs), completeness, continuations and
//! re-sends that produce a superseding version, repeats that produce nothing. The job file is
//! the commit point of a close: a restart treats a reception with a job as closed even if the
//! index lacks its `closed` record ([`recovery`]).
//!
//! Nothing acknowledged is deleted before it was processed: received files go only when no
//! open reception, pending or stored job, or recent processed reception (kept
//! `continuation_window_s` so a continuation can be processed with it) still needs them, and
//! only when `keep_received` is off. The same sweep runs at start-up, so a crash between
//! storing results and removing the images leaves nothing behind for long.

mod index;
mod received;
mod recovery;
mod series;

use super::config::SpoolConfig;
use super::fsio::{ensure_dir, sync_dir, unix_ms};
use super::queue::{new_job, JobQueue, JobRecord, JobState};
use super::DaemonError;
use crate::text::printable;
use index::{Index, InstanceRecord, Record};
use received::Announced;
use series::{ClosedSeries, OpenSeries};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// C-STORE failure status for a data set whose SOPInstanceUID was already acknowledged in the
/// same reception with different content (PS3.7 C.4.2 "Duplicate SOP Instance").
const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;

/// How long after its job was queued a finished series still answers re-sent instances with
/// "duplicate" (a sender retrying after a lost response) instead of processing them again.
const DUPLICATE_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// Superseded or expired records tolerated in the index before a start-up rewrites it.
const COMPACT_SLACK: usize = 1000;

/// How often [`Spool::poll`] also sweeps files no longer needed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A slice of a series still being received whose phases have all arrived (as many instances
/// at its position as CardiacNumberOfImages says): streaming inference segments it before the
/// series closes.
#[derive(Debug, Clone)]
pub struct ReadySlice {
    /// SeriesInstanceUID.
    pub series: String,
    /// The slice's received files.
    pub files: Vec<PathBuf>,
}

/// The outcome of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// New instance, durably stored.
    New,
    /// Same SOP instance with the same bytes as one already stored.
    Duplicate,
}

struct State {
    index: Index,
    open: HashMap<String, OpenSeries>,
    /// The last processed reception of every series still within the duplicate window.
    closed: HashMap<String, ClosedSeries>,
    /// Highest epoch number used per series (so job ids never repeat).
    epochs: HashMap<String, u32>,
    last_sweep: Instant,
}

/// The receive spool.
pub struct Spool {
    dir: PathBuf,
    cfg: SpoolConfig,
    queue: Arc<JobQueue>,
    state: Mutex<State>,
    counter: AtomicU64,
    nonce: u64,
    received: AtomicU64,
    accept_segmentations: AtomicBool,
    /// Where slices whose phases have all arrived are announced (streaming inference).
    slice_listener: Mutex<Option<crossbeam::channel::Sender<ReadySlice>>>,
}

/// An instance being received; dropped without [`Incoming::commit`], its bytes are deleted.
pub struct Incoming<'a> {
    spool: &'a Spool,
    tmp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    bytes: u64,
    sop: String,
    sop_class: String,
}

impl Spool {
    /// Opens the spool in `cfg.dir`, replays its index, reconciles with the queue (a series
    /// with a job is closed) and sweeps what is no longer needed.
    pub fn open(cfg: &SpoolConfig, queue: Arc<JobQueue>) -> Result<Spool, DaemonError> {
        let dir = cfg.dir.clone();
        let (objects, tmp) = (dir.join("objects"), dir.join("tmp"));
        ensure_dir(&objects)?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| DaemonError::io(&tmp, e))?;
        }
        ensure_dir(&tmp)?;
        let recovered = recovery::recover(&dir.join("index.jsonl"), &queue)?;
        let nonce = u64::from(std::process::id()) << 32 ^ unix_ms();
        let spool = Spool {
            dir,
            cfg: cfg.clone(),
            queue,
            state: Mutex::new(State {
                index: recovered.index,
                open: recovered.open,
                closed: recovered.closed,
                epochs: recovered.epochs,
                last_sweep: Instant::now(),
            }),
            counter: AtomicU64::new(0),
            nonce,
            received: AtomicU64::new(0),
            accept_segmentations: AtomicBool::new(false),
            slice_listener: Mutex::new(None),
        };
        spool.sweep(Some(&recovered.known_files))?;
        if recovered.lines > spool.records_needed() + COMPACT_SLACK {
            spool.compact()?;
        }
        Ok(spool)
    }

    /// Takes DICOM SEG objects (corrected contours for the overnight hook) instead of refusing
    /// them as a SOP class this service does not process.
    pub fn set_accept_segmentations(&self, yes: bool) {
        self.accept_segmentations.store(yes, Ordering::Relaxed);
    }

    /// Announces every slice whose phases have all arrived on `tx` from now on. The
    /// announcement never waits: when the listener is behind, the slice is simply segmented
    /// with its series.
    pub fn set_slice_listener(&self, tx: crossbeam::channel::Sender<ReadySlice>) {
        *self
            .slice_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Whether a reception of `series` is still open (its job not yet made).
    pub fn is_receiving(&self, series: &str) -> bool {
        self.lock().open.contains_key(series)
    }

    /// Folder of received instances.
    pub fn objects_dir(&self) -> PathBuf {
        self.dir.join("objects")
    }

    /// Instances acknowledged since start.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Series still waiting for instances.
    pub fn open_series(&self) -> usize {
        self.lock().open.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts receiving instance `sop` (from the C-STORE command).
    pub fn begin(
        &self,
        sop: &str,
        sop_class: &str,
        transfer_syntax: &str,
    ) -> Result<Incoming<'_>, DaemonError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{:016x}-{n:08}.part", self.nonce);
        let tmp = self.dir.join("tmp").join(name);
        let mut head = vec![0u8; 128];
        head.extend_from_slice(b"DICM");
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .transfer_syntax(transfer_syntax)
            .media_storage_sop_class_uid(sop_class)
            .media_storage_sop_instance_uid(sop)
            .build()
            .map_err(|e| {
                DaemonError::BadObject(format!("file meta for {}: {e}", printable(sop)))
            })?;
        meta.write(&mut head).map_err(|e| {
            DaemonError::BadObject(format!("file meta for {}: {e}", printable(sop)))
        })?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| DaemonError::io(&tmp, e))?;
        if let Err(e) = file.write_all(&head) {
            // A full disk: nothing of this instance may stay behind.
            drop(file);
            let _ = std::fs::remove_file(&tmp);
            return Err(DaemonError::io(&tmp, e));
        }
        let mut hasher = Sha256::new();
        hasher.update(&head);
        Ok(Incoming {
            spool: self,
            tmp,
            file: Some(file),
            hasher,
            bytes: head.len() as u64,
            sop: sop.into(),
            sop_class: sop_class.into(),
        })
    }

    /// Closes every reception that is complete at `now`; returns the jobs created.
    pub fn poll(&self, now: Instant) -> Result<Vec<JobRecord>, DaemonError> {
        let settle = Duration::from_millis(self.cfg.settle_ms);
        let idle = Duration::from_secs(self.cfg.series_idle_s);
        let mut jobs = Vec::new();
        let sweep_due = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let ready: Vec<(String, series::Closing)> = st
                .open
                .iter()
                .filter_map(|(uid, s)| {
                    series::completion(s, st.closed.get(uid), now, settle, idle)
                        .map(|c| (uid.clone(), c))
                })
                .collect();
            for (uid, closing) in ready {
                if let Some(job) = self.close(st, &uid, closing)? {
                    jobs.push(job);
                }
            }
            let due = now.saturating_duration_since(st.last_sweep) >= SWEEP_EVERY;
            if due {
                st.last_sweep = now;
            }
            due
        };
        if sweep_due {
            self.sweep(None)?;
        }
        Ok(jobs)
    }

    /// Turns the open reception of `uid` into a job (or drops it, when it only repeated the
    /// processed reception).
    fn close(
        &self,
        st: &mut State,
        uid: &str,
        closing: series::Closing,
    ) -> Result<Option<JobRecord>, DaemonError> {
        let Some(open) = st.open.get(uid) else {
            return Ok(None);
        };
        let base = st.closed.get(uid);
        if series::only_repeats(open, base) {
            let epoch = open.epoch;
            st.index.append(&Record::Repeated {
                series: uid.to_string(),
                epoch,
            })?;
            let copies: Vec<String> = open.sops.values().map(|r| r.file.clone()).collect();
            st.open.remove(uid);
            for f in copies {
                let _ = std::fs::remove_file(self.objects_dir().join(f));
            }
            log::info!(
                "series {}: reception {epoch} only repeated instances already processed; \
                 the processed result stands",
                crate::daemon::queue::short_hash(uid)
            );
            return Ok(None);
        }
        let objects = self.objects_dir();
        let mut union: BTreeMap<String, InstanceRecord> = BTreeMap::new();
        let mut gone = 0usize;
        for (sop, r) in series::union(open, base) {
            if open.sops.contains_key(sop) || objects.join(&r.file).is_file() {
                union.insert(sop.to_string(), r.clone());
            } else {
                gone += 1;
            }
        }
        let mut notes = closing.notes;
        if gone > 0 {
            notes.push(format!(
                "{gone} images of the earlier reception are no longer kept; this version holds \
                 what arrived since"
            ));
        }
        let files: Vec<String> = union.values().map(|r| r.file.clone()).collect();
        let last = open.sops.values().map(|r| r.at_ms).max().unwrap_or(0);
        let mut job = new_job(uid, open.epoch, files, last, closing.because);
        job.supersedes = base.map(|b| b.job.clone());
        job.version = base.map_or(1, |b| b.version + 1);
        job.incomplete = closing.incomplete;
        job.reception_notes = notes;
        self.queue.enqueue(&job)?;
        st.index.append(&Record::Closed {
            series: uid.to_string(),
            epoch: job.epoch,
            job: job.id.clone(),
        })?;
        st.closed.insert(
            uid.to_string(),
            ClosedSeries {
                epoch: job.epoch,
                job: job.id.clone(),
                version: job.version,
                sops: union,
                closed_ms: unix_ms(),
            },
        );
        st.open.remove(uid);
        let version = match &job.supersedes {
            Some(old) => format!(", a new version superseding job {old}"),
            None => String::new(),
        };
        log::info!(
            "series closed ({} instances, {}): job {}{version}",
            job.files.len(),
            job.closed_because,
            job.id
        );
        Ok(Some(job))
    }

    /// Called when a job finished: its received files go as soon as nothing needs them.
    pub fn discard(&self, _job: &JobRecord) {
        if let Err(e) = self.sweep(None) {
            log::warn!("spool sweep: {e}");
        }
    }

    /// Deletes received files nothing needs any more (with `keep_received` off). At start-up
    /// (`known` = every file the index names) it also deletes files no record knows: those were
    /// never acknowledged (a crash between their rename and their index record).
    fn sweep(&self, known: Option<&HashSet<String>>) -> Result<(), DaemonError> {
        if self.cfg.keep_received && known.is_none() {
            return Ok(());
        }
        let needed = self.needed_files()?;
        let objects = self.objects_dir();
        for e in std::fs::read_dir(&objects).map_err(|e| DaemonError::io(&objects, e))? {
            let p = e.map_err(|e| DaemonError::io(&objects, e))?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if needed.contains(&name) {
                continue;
            }
            let orphan = known.is_some_and(|k| !k.contains(&name));
            if self.cfg.keep_received && !orphan {
                continue;
            }
            if orphan {
                log::info!("spool: removing unacknowledged file {}", p.display());
            }
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("{}: {e}", p.display());
                }
            }
        }
        Ok(())
    }

    /// Files that must stay: those of open receptions, of pending and stored jobs, and of
    /// processed receptions within `continuation_window_s` (or all, with `keep_received`).
    fn needed_files(&self) -> Result<HashSet<String>, DaemonError> {
        let mut needed: HashSet<String> = HashSet::new();
        for s in [JobState::Pending, JobState::Stored] {
            for j in self.queue.list(s)? {
                needed.extend(j.files);
            }
        }
        let window_ms = self.cfg.continuation_window_s.saturating_mul(1000);
        let now_ms = unix_ms();
        let st = self.lock();
        for s in st.open.values() {
            needed.extend(s.sops.values().map(|r| r.file.clone()));
        }
        for c in st.closed.values() {
            if self.cfg.keep_received || now_ms.saturating_sub(c.closed_ms) < window_ms {
                needed.extend(c.sops.values().map(|r| r.file.clone()));
            }
        }
        Ok(needed)
    }

    /// Index records the current state needs (for the compaction threshold).
    fn records_needed(&self) -> usize {
        let st = self.lock();
        st.open.values().map(|s| s.sops.len()).sum::<usize>()
            + st.closed.values().map(|c| c.sops.len()).sum::<usize>()
            + st.epochs.len()
    }

    /// Rewrites the index with only what is needed: the last closed epoch of every series ever
    /// seen, the instances of recent processed receptions and of open ones.
    fn compact(&self) -> Result<(), DaemonError> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let mut recs = Vec::new();
        let mut series: Vec<(&String, &u32)> = st.epochs.iter().collect();
        series.sort();
        for (uid, epoch) in series {
            match st.closed.get(uid) {
                Some(c) => recs.push(Record::Closed {
                    series: uid.clone(),
                    epoch: c.epoch,
                    job: c.job.clone(),
                }),
                None if !st.open.contains_key(uid) => recs.push(Record::Closed {
                    series: uid.clone(),
                    epoch: *epoch,
                    job: JobRecord::id_for(uid, *epoch),
                }),
                None => {}
            }
        }
        let mut instances: Vec<&InstanceRecord> = st
            .closed
            .values()
            .flat_map(|c| c.sops.values())
            .chain(st.open.values().flat_map(|s| s.sops.values()))
            .collect();
        instances.sort_by_key(|r| (r.at_ms, r.sop.clone()));
        recs.extend(instances.into_iter().cloned().map(Record::Instance));
        let n = recs.len();
        st.index.rewrite(&recs)?;
        log::info!("spool: index compacted to {n} records");
        Ok(())
    }

    fn commit_record(&self, mut rec: InstanceRecord) -> Result<Stored, DaemonError> {
        let final_path = self.objects_dir().join(&rec.file);
        let mut guard = self.lock();
        let st = &mut *guard;
        let mut outcome = Stored::New;
        if let Some(open) = st.open.get(&rec.series) {
            if let Some(same) = open.sops.get(&rec.sop).map(|p| p.sha256 == rec.sha256) {
                drop(guard);
                let _ = std::fs::remove_file(&final_path);
                if same {
                    return Ok(Stored::Duplicate);
                }
                return Err(DaemonError::Rejected {
                    sop: printable(&rec.sop).into_owned(),
                    status: DUPLICATE_SOP_INSTANCE,
                    reason: "a different data set with this SOPInstanceUID was already \
                             acknowledged in this reception; the first one is kept"
                        .into(),
                });
            }
            rec.epoch = open.epoch;
        } else {
            let base = st.closed.get(&rec.series);
            if let Some(prev) = base.and_then(|b| b.sops.get(&rec.sop)) {
                if prev.sha256 == rec.sha256 {
                    outcome = Stored::Duplicate;
                } else {
                    log::warn!(
                        "instance {} re-sent with different content after its series was \
                         processed: the series will be processed again as a new version",
                        printable(&rec.sop)
                    );
                }
            }
            rec.epoch = st
                .epochs
                .get(&rec.series)
                .map_or(0, |e| e.saturating_add(1));
        }
        st.index.append(&Record::Instance(rec.clone()))?;
        st.epochs.insert(rec.series.clone(), rec.epoch);
        let epoch = rec.epoch;
        let series = st
            .open
            .entry(rec.series.clone())
            .or_insert_with(|| OpenSeries {
                epoch,
                sops: BTreeMap::new(),
                last_seen: Instant::now(),
            });
        series.last_seen = Instant::now();
        let ready = completes_slice(&series.sops, &rec).map(|files| ReadySlice {
            series: rec.series.clone(),
            files: files.iter().map(|f| self.objects_dir().join(f)).collect(),
        });
        series.sops.insert(rec.sop.clone(), rec);
        drop(guard);
        if let Some(r) = ready {
            self.announce(r);
        }
        if outcome == Stored::New {
            self.received.fetch_add(1, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    fn announce(&self, slice: ReadySlice) {
        let listener = self
            .slice_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = listener.as_ref() {
            if tx.try_send(slice).is_err() {
                log::debug!("streaming inference is behind; a slice waits for its series");
            }
        }
    }
}

/// The files of `rec`'s slice when `rec` (not yet in `sops`) is the instance that gives the
/// slice all its phases; single-frame images with a position and a phase count only.
fn completes_slice(
    sops: &BTreeMap<String, InstanceRecord>,
    rec: &InstanceRecord,
) -> Option<Vec<String>> {
    let (slice, phases) = (
        rec.slice.as_deref()?,
        rec.cardiac_images.filter(|c| *c > 0)?,
    );
    if rec.frames != 1 || sops.contains_key(&rec.sop) {
        return None;
    }
    let mut files: Vec<String> = sops
        .values()
        .filter(|r| r.slice.as_deref() == Some(slice) && r.frames == 1)
        .map(|r| r.file.clone())
        .collect();
    files.push(rec.file.clone());
    (files.len() as u64 == phases).then_some(files)
}

impl Incoming<'_> {
    /// Appends data-set bytes as they arrive.
    pub fn write(&mut self, data: &[u8]) -> Result<(), DaemonError> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| DaemonError::BadObject("write after commit".into()))?;
        f.write_all(data)
            .map_err(|e| DaemonError::io(&self.tmp, e))?;
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Makes the instance durable and indexes it. On error nothing is kept and the caller must
    /// not acknowledge; a [`DaemonError::Rejected`] carries the status to answer with.
    pub fn commit(mut self) -> Result<Stored, DaemonError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| DaemonError::BadObject("committed twice".into()))?;
        file.sync_all().map_err(|e| DaemonError::io(&self.tmp, e))?;
        drop(file);
        let header = received::check(
            &self.tmp,
            &Announced {
                sop_instance: &self.sop,
                sop_class: &self.sop_class,
                accept_segmentations: self.spool.accept_segmentations.load(Ordering::Relaxed),
            },
        )?;
        let name = self
            .tmp
            .file_name()
            .map(|n| n.to_string_lossy().replace(".part", ".dcm"))
            .unwrap_or_default();
        let final_path = self.spool.objects_dir().join(&name);
        std::fs::rename(&self.tmp, &final_path).map_err(|e| DaemonError::io(&final_path, e))?;
        sync_dir(&self.spool.objects_dir())?;
        let digest = std::mem::take(&mut self.hasher).finalize();
        let rec = InstanceRecord {
            sop: self.sop.trim_end_matches(['\0', ' ']).to_string(),
            series: header.series,
            epoch: 0,
            file: name,
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            bytes: self.bytes,
            slice: header.slice,
            images_in_acquisition: header.images_in_acquisition,
            cardiac_images: header.cardiac_images,
            frames: header.frames,
            at_ms: unix_ms(),
        };
        match self.spool.commit_record(rec) {
            Ok(s) => Ok(s),
            Err(e) => {
                let _ = std::fs::remove_file(&final_path);
                Err(e)
            }
        }
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests;
