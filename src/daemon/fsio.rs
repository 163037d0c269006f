//! Small durable file-system steps shared by the spool and the queue: write-then-rename with
//! fsync of the file and of its directory, so a record either exists whole or not at all
//! after a power cut.

use super::DaemonError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// fsync a directory so a rename or create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), DaemonError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| DaemonError::io(dir, e))
}

/// Writes `bytes` to `tmp`, fsyncs it, renames it to `dest` and fsyncs `dest`'s directory.
pub fn write_atomic(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), DaemonError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| DaemonError::io(tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| DaemonError::io(tmp, e))?;
    drop(f);
    rename_durable(tmp, dest)
}

/// Renames `from` to `to` and fsyncs both directories.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), DaemonError> {
    std::fs::rename(from, to).map_err(|e| DaemonError::io(to, e))?;
    if let Some(d) = to.parent() {
        sync_dir(d)?;
    }
    match from.parent() {
        Some(d) if Some(d) != to.parent() => sync_dir(d),
        _ => Ok(()),
    }
}

/// Creates a folder (and parents).
pub fn ensure_dir(dir: &Path) -> Result<(), DaemonError> {
    std::fs::create_dir_all(dir).map_err(|e| DaemonError::io(dir, e))
}

/// Free space of the file system holding `path`: (fraction free 0..1, bytes free).
pub fn free_space(path: &Path) -> Result<(f64, u64), DaemonError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| DaemonError::BadObject(format!("{}: NUL in path", path.display())))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(DaemonError::io(path, std::io::Error::last_os_error()));
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let avail = st.f_bavail as u64 * frsize;
    Ok((
        if total == 0 {
            0.0
        } else {
            avail as f64 / total as f64
        },
        avail,
    ))
}

/// Milliseconds since the Unix epoch (for records that must survive a restart).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
