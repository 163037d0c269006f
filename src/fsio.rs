//! Durable file-system steps: write-then-rename with fsync of the file and of its directory, so
//! a record or a results folder either exists whole or not at all after a power cut. Shared by
//! the daemon's spool and queue and by the results writer; errors name the path.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file-system operation on `path` failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PathIoError {
    /// The file or folder.
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
}

/// Wraps an `io::Error` with the path it concerns, for `map_err`.
pub fn at(path: &Path) -> impl FnOnce(std::io::Error) -> PathIoError + '_ {
    move |source| PathIoError {
        path: path.to_path_buf(),
        source,
    }
}

/// fsync a directory so a rename or create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), PathIoError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

/// Creates (truncates) `path`, writes `bytes` and fsyncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PathIoError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(at(path))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(at(path))
}

/// Writes `bytes` to `tmp`, fsyncs it, renames it to `dest` and fsyncs `dest`'s directory.
pub fn write_atomic(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), PathIoError> {
    write_synced(tmp, bytes)?;
    rename_durable(tmp, dest)
}

/// Renames `from` to `to` and fsyncs both directories.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), PathIoError> {
    std::fs::rename(from, to).map_err(at(to))?;
    if let Some(d) = to.parent() {
        sync_dir(d)?;
    }
    match from.parent() {
        Some(d) if Some(d) != to.parent() => sync_dir(d),
        _ => Ok(()),
    }
}

/// Creates a folder (and parents).
pub fn ensure_dir(dir: &Path) -> Result<(), PathIoError> {
    std::fs::create_dir_all(dir).map_err(at(dir))
}

/// Removes a folder and everything in it; a folder that is not there is no error.
pub fn remove_dir_all(dir: &Path) -> Result<(), PathIoError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(dir)(e)),
        _ => Ok(()),
    }
}
