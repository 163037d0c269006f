//! `index.jsonl`, the spool's journal: one JSON record per line, appended and fsync'd before
//! the receiver acknowledges an instance.
//!
//! A record can be torn: the disk fills, or the process dies, in the middle of a write. Three
//! rules keep a torn record from costing anything that was acknowledged:
//! - an append that fails is cut back off the file (`set_len` to the length before it); where
//!   even that fails, the next append starts on a fresh line, so a good record is never glued
//!   to the tail of a torn one;
//! - replay skips a line that does not parse and goes on with the next one (it never truncates
//!   the journal there), and salvages a whole record glued behind a torn prefix by older
//!   versions;
//! - the instance of a torn record was never acknowledged (acknowledgement waits for the
//!   fsync of a complete record), so skipping it is exactly right.

use super::super::DaemonError;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What the index keeps about one acknowledged instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct InstanceRecord {
    pub sop: String,
    pub series: String,
    pub epoch: u32,
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// Slice position key (ImagePositionPatient rounded to 0.01 mm).
    pub slice: Option<String>,
    pub images_in_acquisition: Option<u64>,
    pub cardiac_images: Option<u64>,
    pub frames: u64,
    pub at_ms: u64,
}

/// One line of `index.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Record {
    /// An instance was acknowledged.
    Instance(InstanceRecord),
    /// Reception `epoch` of `series` became job `job`.
    Closed {
        series: String,
        epoch: u32,
        job: String,
    },
    /// Reception `epoch` of `series` only repeated instances of the processed reception (a
    /// sender retrying): it was dropped without a job.
    Repeated { series: String, epoch: u32 },
}

/// What replay found, for the start-up log.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// Complete records, in file order.
    pub records: Vec<Record>,
    /// Lines that held no complete record (torn or corrupt), skipped.
    pub skipped: usize,
    /// Records recovered from behind a torn prefix on the same line.
    pub salvaged: usize,
}

/// The open journal.
pub(super) struct Index {
    file: File,
    path: PathBuf,
    /// Bytes of the file that are known to end at a record boundary.
    len: u64,
    /// The file may end in the middle of a line: the next append starts with a newline.
    needs_newline: bool,
    /// Test hook: the next append writes only this many bytes, then fails as a full disk.
    #[cfg(test)]
    pub fail_next_after: Option<usize>,
}

impl Index {
    /// Opens (creating) the journal at `path` and replays it.
    pub fn open(path: &Path) -> Result<(Index, Replay), DaemonError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| DaemonError::io(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| DaemonError::io(path, e))?;
        let replay = replay(&bytes, path);
        let index = Index {
            file,
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            needs_newline: !bytes.is_empty() && !bytes.ends_with(b"\n"),
            #[cfg(test)]
            fail_next_after: None,
        };
        Ok((index, replay))
    }

    /// Appends `rec` and fsyncs it. On error the record is not in the journal (or, if the
    /// torn bytes could not be cut off, it is on a line of its own that replay skips).
    pub fn append(&mut self, rec: &Record) -> Result<(), DaemonError> {
        let mut line = Vec::with_capacity(256);
        if self.needs_newline {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, rec).map_err(|e| DaemonError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        match self.write_synced(&line) {
            Ok(()) => {
                self.len += line.len() as u64;
                self.needs_newline = false;
                Ok(())
            }
            Err(e) => {
                let cut = self
                    .file
                    .set_len(self.len)
                    .and_then(|_| self.file.sync_data());
                self.needs_newline = cut.is_err() || self.needs_newline;
                if let Err(c) = cut {
                    log::error!(
                        "{}: cannot cut off a torn record ({c}); the next one starts a new line",
                        self.path.display()
                    );
                }
                Err(DaemonError::io(&self.path, e))
            }
        }
    }

    fn write_synced(&mut self, line: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_next_after.take() {
            self.file.write_all(&line[..n.min(line.len())])?;
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.file.write_all(line)?;
        self.file.sync_data()
    }

    /// Replaces the journal with `records` (temporary file, fsync, rename).
    pub fn rewrite(&mut self, records: &[Record]) -> Result<(), DaemonError> {
        let mut out = Vec::new();
        for r in records {
            serde_json::to_writer(&mut out, r).map_err(|e| DaemonError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            out.push(b'\n');
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        super::super::fsio::write_atomic(&tmp, &self.path, &out)?;
        self.file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(|e| DaemonError::io(&self.path, e))?;
        self.len = out.len() as u64;
        self.needs_newline = false;
        Ok(())
    }
}

/// Every complete record of `bytes`; torn or corrupt lines are counted and skipped.
fn replay(bytes: &[u8], path: &Path) -> Replay {
    let mut out = Replay::default();
    let mut offset = 0usize;
    for line in bytes.split(|b| *b == b'\n') {
        let at = offset;
        offset += line.len() + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Ok(r) = serde_json::from_slice::<Record>(line) {
            out.records.push(r);
            continue;
        }
        out.skipped += 1;
        match salvage(line) {
            Some(r) => {
                out.salvaged += 1;
                log::warn!(
                    "{}: torn record at byte {at} skipped; the complete record behind it kept",
                    path.display()
                );
                out.records.push(r);
            }
            None => log::warn!(
                "{}: torn or corrupt record at byte {at} ({} bytes) skipped",
                path.display(),
                line.len()
            ),
        }
    }
    out
}

/// A complete record that starts after a torn prefix on the same line (journals written
/// before appends were cut back on failure).
fn salvage(line: &[u8]) -> Option<Record> {
    const START: &[u8] = b"{\"op\":";
    (1..line.len())
        .filter(|&i| line[i..].starts_with(START))
        .find_map(|i| serde_json::from_slice::<Record>(&line[i..]).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sop: &str) -> Record {
        Record::Instance(InstanceRecord {
            sop: sop.into(),
            series: "1.2".into(),
            epoch: 0,
            file: format!("{sop}.dcm"),
            sha256: "00".into(),
            bytes: 10,
            slice: None,
            images_in_acquisition: None,
            cardiac_images: Some(2),
            frames: 1,
            at_ms: 5,
        })
    }

    #[test]
    fn a_failed_append_is_cut_off_and_later_records_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index.jsonl");
        let (mut ix, _) = Index::open(&path).expect("open");
        ix.append(&rec("a")).expect("a");
        ix.fail_next_after = Some(17);
        assert!(ix.append(&rec("torn")).is_err());
        ix.append(&rec("b")).expect("b");
        ix.append(&rec("c")).expect("c");
        drop(ix);
        let (_, replay) = Index::open(&path).expect("reopen");
        assert_eq!(replay.records, vec![rec("a"), rec("b"), rec("c")]);
        assert_eq!(replay.skipped, 0);
    }

    #[test]
    fn a_torn_line_in_the_middle_is_skipped_not_a_cut_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index.jsonl");
        let line = |r: &Record| {
            let mut v = serde_json::to_vec(r).expect("json");
            v.push(b'\n');
            v
        };
        let mut bytes = line(&rec("a"));
        let torn = line(&rec("torn"));
        bytes.extend_from_slice(&torn[..20]);
        // What a2d2f54 wrote after a torn record: the next record glued to the torn prefix.
        bytes.extend(line(&rec("b")));
        bytes.extend(line(&rec("c")));
        bytes.extend_from_slice(b"{\"op\":\"instance\",\"so");
        std::fs::write(&path, &bytes).expect("write");
        let (mut ix, replay) = Index::open(&path).expect("open");
        assert_eq!(replay.records, vec![rec("a"), rec("b"), rec("c")]);
        assert_eq!((replay.skipped, replay.salvaged), (2, 1));
        // The torn tail does not swallow the next record either.
        ix.append(&rec("d")).expect("d");
        drop(ix);
        let (_, again) = Index::open(&path).expect("reopen");
        assert_eq!(again.records.last(), Some(&rec("d")));
        assert_eq!(again.records.len(), 4);
    }
}
