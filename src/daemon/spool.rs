//! Durable receive. An instance streams into `tmp/` under a generated name, is fsync'd, renamed
//! into `objects/` (directory fsync'd), its header is read, and a record with its SHA-256 is
//! appended to `index.jsonl` and fsync'd. Only then does [`Incoming::commit`] return and the
//! receiver send success. Names are generated (counter + random), never built from DICOM text.
//!
//! Hash choice: SHA-256 (`sha2`, pure Rust, no C build) gives the same digest as coreutils'
//! `sha256sum`, so an operator can check a spool file by hand; at several hundred MB/s it is
//! far faster than the network that feeds it.
//!
//! Series bookkeeping: the same SOPInstanceUID with the same bytes is an idempotent duplicate;
//! with different bytes it replaces the earlier copy while the series is open, or opens a new
//! reception epoch once the series was closed. A series closes (becomes a queued job) when
//! ImagesInAcquisition x CardiacNumberOfImages instances arrived, or when every slice position
//! holds CardiacNumberOfImages instances and nothing came for `settle_ms`, or after
//! `series_idle_s` of quiet whatever arrived. The job file is the commit point of a close: a
//! restart treats a series with a job as closed even if the index lacks its `closed` record.

use super::config::SpoolConfig;
use super::fsio::{ensure_dir, sync_dir, unix_ms};
use super::queue::{new_job, JobQueue, JobRecord, JobState};
use super::DaemonError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One line of `index.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Instance(InstanceRecord),
    Closed {
        series: String,
        epoch: u32,
        job: String,
    },
}

/// What the index keeps about one acknowledged instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstanceRecord {
    sop: String,
    series: String,
    epoch: u32,
    file: String,
    sha256: String,
    bytes: u64,
    /// Slice position key (ImagePositionPatient rounded to 0.01 mm).
    slice: Option<String>,
    images_in_acquisition: Option<u64>,
    cardiac_images: Option<u64>,
    frames: u64,
    at_ms: u64,
}

/// The outcome of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// New instance, durably stored.
    New,
    /// Same SOP instance with the same bytes as one already stored.
    Duplicate,
}

#[derive(Debug)]
struct OpenSeries {
    epoch: u32,
    sops: BTreeMap<String, InstanceRecord>,
    last_seen: Instant,
}

struct State {
    index: File,
    /// Latest record of every SOP instance.
    by_sop: HashMap<String, InstanceRecord>,
    open: HashMap<String, OpenSeries>,
    /// Highest closed epoch per series.
    closed: HashMap<String, u32>,
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
}

/// An instance being received; dropped without [`Incoming::commit`], its bytes are deleted.
pub struct Incoming<'a> {
    spool: &'a Spool,
    tmp: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    bytes: u64,
    sop: String,
}

fn index_error(path: &Path, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Corrupt {
        path: path.into(),
        reason: e.to_string(),
    }
}

impl Spool {
    /// Opens the spool in `cfg.dir`, replays its index, deletes unacknowledged leftovers and
    /// reconciles with the queue (a series with a job is closed).
    pub fn open(cfg: &SpoolConfig, queue: Arc<JobQueue>) -> Result<Spool, DaemonError> {
        let dir = cfg.dir.clone();
        let (objects, tmp) = (dir.join("objects"), dir.join("tmp"));
        ensure_dir(&objects)?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| DaemonError::io(&tmp, e))?;
        }
        ensure_dir(&tmp)?;
        let index_path = dir.join("index.jsonl");
        let mut by_sop: HashMap<String, InstanceRecord> = HashMap::new();
        let mut closed: HashMap<String, u32> = HashMap::new();
        let mut valid_len = 0u64;
        let mut lines = 0usize;
        if index_path.exists() {
            let f = File::open(&index_path).map_err(|e| DaemonError::io(&index_path, e))?;
            for line in BufReader::new(f).split(b'\n') {
                let line = line.map_err(|e| DaemonError::io(&index_path, e))?;
                // A torn last line was never fsync'd, so its instance was never acknowledged.
                match serde_json::from_slice::<Record>(&line) {
                    Ok(Record::Instance(r)) => {
                        by_sop.insert(r.sop.clone(), r);
                    }
                    Ok(Record::Closed { series, epoch, .. }) => {
                        let e = closed.entry(series).or_insert(epoch);
                        *e = (*e).max(epoch);
                    }
                    Err(e) => {
                        log::warn!(
                            "{}: ignoring a torn record at byte {valid_len}: {e}",
                            index_path.display()
                        );
                        break;
                    }
                }
                valid_len += line.len() as u64 + 1;
                lines += 1;
            }
        }
        let mut index = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&index_path)
            .map_err(|e| DaemonError::io(&index_path, e))?;
        let len = index
            .metadata()
            .map_err(|e| DaemonError::io(&index_path, e))?
            .len();
        if len > valid_len {
            index
                .set_len(valid_len)
                .map_err(|e| DaemonError::io(&index_path, e))?;
        }
        // Jobs are the commit point of a close.
        let mut referenced: HashSet<String> = HashSet::new();
        // Series whose instance records must stay: not finished, or finished so recently that
        // a sender retrying the same instances should still get "duplicate" for them.
        let mut live: HashSet<String> = HashSet::new();
        let now_ms = unix_ms();
        for s in JobState::ALL {
            for j in queue.list(s)? {
                if matches!(s, JobState::Pending | JobState::Stored)
                    || now_ms.saturating_sub(j.enqueued_ms) < DUPLICATE_WINDOW_MS
                {
                    live.insert(j.series_uid.clone());
                }
                let e = closed.entry(j.series_uid.clone()).or_insert(j.epoch);
                *e = (*e).max(j.epoch);
                if matches!(s, JobState::Pending | JobState::Stored) || cfg.keep_received {
                    referenced.extend(j.files.iter().cloned());
                }
            }
        }
        let mut open: HashMap<String, OpenSeries> = HashMap::new();
        let now = Instant::now();
        for r in by_sop.values() {
            referenced.insert(r.file.clone());
            if closed.get(&r.series).is_some_and(|c| *c >= r.epoch) {
                continue;
            }
            let s = open.entry(r.series.clone()).or_insert_with(|| OpenSeries {
                epoch: r.epoch,
                sops: BTreeMap::new(),
                last_seen: now,
            });
            s.sops.insert(r.sop.clone(), r.clone());
        }
        // Files nobody acknowledged (crash between rename and index) are removed.
        for e in std::fs::read_dir(&objects).map_err(|e| DaemonError::io(&objects, e))? {
            let p = e.map_err(|e| DaemonError::io(&objects, e))?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if !referenced.contains(&name) {
                log::info!("spool: removing unacknowledged file {}", p.display());
                std::fs::remove_file(&p).map_err(|e| DaemonError::io(&p, e))?;
            }
        }
        live.extend(open.keys().cloned());
        by_sop.retain(|_, r| {
            live.contains(&r.series) || !closed.get(&r.series).is_some_and(|c| *c >= r.epoch)
        });
        if lines > by_sop.len() + closed.len() + COMPACT_SLACK {
            index = compact(&index_path, &by_sop, &closed)?;
            log::info!(
                "spool: index compacted from {lines} to {} records",
                by_sop.len() + closed.len()
            );
        }
        let nonce = u64::from(std::process::id()) << 32 ^ unix_ms();
        let spool = Spool {
            dir,
            cfg: cfg.clone(),
            queue,
            state: Mutex::new(State {
                index,
                by_sop,
                open,
                closed,
            }),
            counter: AtomicU64::new(0),
            nonce,
            received: AtomicU64::new(0),
        };
        Ok(spool)
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
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| DaemonError::io(&tmp, e))?;
        let mut head = vec![0u8; 128];
        head.extend_from_slice(b"DICM");
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .transfer_syntax(transfer_syntax)
            .media_storage_sop_class_uid(sop_class)
            .media_storage_sop_instance_uid(sop)
            .build()
            .map_err(|e| DaemonError::BadObject(format!("file meta for {sop}: {e}")))?;
        meta.write(&mut head)
            .map_err(|e| DaemonError::BadObject(format!("file meta for {sop}: {e}")))?;
        file.write_all(&head)
            .map_err(|e| DaemonError::io(&tmp, e))?;
        let mut hasher = Sha256::new();
        hasher.update(&head);
        Ok(Incoming {
            spool: self,
            tmp,
            file: Some(file),
            hasher,
            bytes: head.len() as u64,
            sop: sop.into(),
        })
    }

    /// Closes every series that is complete at `now`; returns the jobs created.
    pub fn poll(&self, now: Instant) -> Result<Vec<JobRecord>, DaemonError> {
        let settle = Duration::from_millis(self.cfg.settle_ms);
        let idle = Duration::from_secs(self.cfg.series_idle_s);
        let mut st = self.lock();
        let ready: Vec<(String, &'static str)> = st
            .open
            .iter()
            .filter_map(|(uid, s)| completion(s, now, settle, idle).map(|why| (uid.clone(), why)))
            .collect();
        let mut jobs = Vec::new();
        for (uid, why) in ready {
            let Some(s) = st.open.get(&uid) else { continue };
            let files: Vec<String> = s.sops.values().map(|r| r.file.clone()).collect();
            let last = s.sops.values().map(|r| r.at_ms).max().unwrap_or(0);
            let job = new_job(&uid, s.epoch, files, last, why);
            self.queue.enqueue(&job)?;
            let rec = Record::Closed {
                series: uid.clone(),
                epoch: job.epoch,
                job: job.id.clone(),
            };
            append(&mut st.index, &self.dir.join("index.jsonl"), &rec)?;
            st.closed.insert(uid.clone(), job.epoch);
            st.open.remove(&uid);
            log::info!(
                "series closed ({} instances, {why}): job {}",
                job.files.len(),
                job.id
            );
            jobs.push(job);
        }
        Ok(jobs)
    }

    /// Deletes the received files of a finished job (unless `keep_received`).
    pub fn discard(&self, job: &JobRecord) {
        if self.cfg.keep_received {
            return;
        }
        let st = self.lock();
        for f in &job.files {
            // Still the live copy of an instance of an open series: keep it.
            if st
                .open
                .values()
                .any(|s| s.sops.values().any(|r| &r.file == f))
            {
                continue;
            }
            let p = self.objects_dir().join(f);
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("{}: {e}", p.display());
                }
            }
        }
    }

    fn commit_record(&self, mut rec: InstanceRecord) -> Result<Stored, DaemonError> {
        let final_path = self.objects_dir().join(&rec.file);
        let mut st = self.lock();
        let closed_epoch = st.closed.get(&rec.series).copied();
        if let Some(old) = st.by_sop.get(&rec.sop) {
            if old.sha256 == rec.sha256 && old.series == rec.series {
                drop(st);
                let _ = std::fs::remove_file(&final_path);
                return Ok(Stored::Duplicate);
            }
        }
        rec.epoch = match (st.open.get(&rec.series), closed_epoch) {
            (Some(s), _) => s.epoch,
            (None, Some(c)) => c + 1,
            (None, None) => 0,
        };
        append(
            &mut st.index,
            &self.dir.join("index.jsonl"),
            &Record::Instance(rec.clone()),
        )?;
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
        if let Some(prev) = series.sops.insert(rec.sop.clone(), rec.clone()) {
            // Replaced within the same open reception: the older copy is nobody's input.
            let _ = std::fs::remove_file(self.objects_dir().join(prev.file));
        }
        st.by_sop.insert(rec.sop.clone(), rec);
        self.received.fetch_add(1, Ordering::Relaxed);
        Ok(Stored::New)
    }
}

/// How long after its job was queued a finished series still answers re-sent instances with
/// "duplicate" (a sender retrying after a lost response) instead of processing them again.
const DUPLICATE_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// Superseded or expired records tolerated in the index before a start-up rewrites it.
const COMPACT_SLACK: usize = 1000;

/// Rewrites the index with only the records still needed (closed epochs of every series, the
/// instance records kept in memory) by temporary file, fsync and rename; returns it opened
/// for appending.
fn compact(
    path: &Path,
    by_sop: &HashMap<String, InstanceRecord>,
    closed: &HashMap<String, u32>,
) -> Result<File, DaemonError> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut out = Vec::new();
    let mut closed: Vec<(&String, &u32)> = closed.iter().collect();
    closed.sort();
    for (series, epoch) in closed {
        let rec = Record::Closed {
            series: series.clone(),
            epoch: *epoch,
            job: JobRecord::id_for(series, *epoch),
        };
        out.extend(serde_json::to_vec(&rec).map_err(|e| index_error(path, e))?);
        out.push(b'\n');
    }
    let mut recs: Vec<&InstanceRecord> = by_sop.values().collect();
    recs.sort_by_key(|r| (r.at_ms, r.sop.clone()));
    for r in recs {
        out.extend(
            serde_json::to_vec(&Record::Instance(r.clone())).map_err(|e| index_error(path, e))?,
        );
        out.push(b'\n');
    }
    super::fsio::write_atomic(&tmp, path, &out)?;
    OpenOptions::new()
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| DaemonError::io(path, e))
}

fn append(index: &mut File, path: &Path, rec: &Record) -> Result<(), DaemonError> {
    let mut line = serde_json::to_vec(rec).map_err(|e| index_error(path, e))?;
    line.push(b'\n');
    index
        .write_all(&line)
        .and_then(|_| index.sync_data())
        .map_err(|e| DaemonError::io(path, e))
}

/// Why an open series is complete at `now`, if it is.
fn completion(
    s: &OpenSeries,
    now: Instant,
    settle: Duration,
    idle: Duration,
) -> Option<&'static str> {
    let quiet = now.saturating_duration_since(s.last_seen);
    let count = s.sops.len() as u64;
    let first = s.sops.values().next()?;
    let phases = s
        .sops
        .values()
        .find_map(|r| r.cardiac_images)
        .filter(|c| *c > 0);
    if let (Some(n), Some(c)) = (
        s.sops.values().find_map(|r| r.images_in_acquisition),
        phases,
    ) {
        if n > 0 && count >= n * c {
            return Some("expected instance count reached");
        }
    }
    if quiet >= settle {
        if first.frames > 1 && s.sops.values().all(|r| r.frames > 1) {
            return Some("multi-frame instances settled");
        }
        if let Some(c) = phases {
            let mut per_slice: HashMap<&str, u64> = HashMap::new();
            for r in s.sops.values() {
                if let Some(k) = &r.slice {
                    *per_slice.entry(k.as_str()).or_default() += 1;
                }
            }
            if !per_slice.is_empty() && per_slice.values().all(|n| *n >= c) {
                return Some("every slice has its phase count");
            }
        }
    }
    if quiet >= idle {
        return Some("idle timeout");
    }
    None
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
    /// not acknowledge.
    pub fn commit(mut self) -> Result<Stored, DaemonError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| DaemonError::BadObject("committed twice".into()))?;
        file.sync_all().map_err(|e| DaemonError::io(&self.tmp, e))?;
        drop(file);
        let header = read_header(&self.tmp)?;
        if header.sop != self.sop {
            log::warn!(
                "spool: data set SOPInstanceUID differs from the command's; using the command's"
            );
        }
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
            sop: self.sop.clone(),
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

struct Header {
    sop: String,
    series: String,
    slice: Option<String>,
    images_in_acquisition: Option<u64>,
    cardiac_images: Option<u64>,
    frames: u64,
}

/// Reads the attributes the spool needs, stopping before the pixel data.
fn read_header(path: &Path) -> Result<Header, DaemonError> {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| DaemonError::BadObject(format!("not a readable DICOM data set: {e}")))?;
    let text = |t| {
        obj.element(t)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .filter(|s| !s.is_empty())
    };
    let int = |t| {
        obj.element(t)
            .ok()
            .and_then(|e| e.to_int::<i64>().ok())
            .and_then(|v| u64::try_from(v).ok())
    };
    let series = text(tags::SERIES_INSTANCE_UID)
        .ok_or_else(|| DaemonError::BadObject("no SeriesInstanceUID".into()))?;
    let slice = obj
        .element(tags::IMAGE_POSITION_PATIENT)
        .ok()
        .and_then(|e| e.to_multi_float64().ok())
        .filter(|v| v.len() == 3)
        .map(|v| {
            v.iter()
                .map(|x| format!("{:.2}", x))
                .collect::<Vec<_>>()
                .join("\\")
        });
    Ok(Header {
        sop: text(tags::SOP_INSTANCE_UID).unwrap_or_default(),
        series,
        slice,
        images_in_acquisition: int(tags::IMAGES_IN_ACQUISITION),
        cardiac_images: int(tags::CARDIAC_NUMBER_OF_IMAGES),
        frames: int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
    })
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
