//! The durable file-system steps of [`crate::fsio`] with the daemon's error type, and the
//! daemon's own: free space (the receiver refuses when the disk is nearly full) and wall-clock
//! milliseconds for records that survive a restart.

use super::DaemonError;
use std::path::Path;

/// fsync a directory so a rename or create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), DaemonError> {
    Ok(crate::fsio::sync_dir(dir)?)
}

/// Writes `bytes` to `tmp`, fsyncs it, renames it to `dest` and fsyncs `dest`'s directory.
pub fn write_atomic(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), DaemonError> {
    Ok(crate::fsio::write_atomic(tmp, dest, bytes)?)
}

/// Renames `from` to `to` and fsyncs both directories.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), DaemonError> {
    Ok(crate::fsio::rename_durable(from, to)?)
}

/// Creates a folder (and parents).
pub fn ensure_dir(dir: &Path) -> Result<(), DaemonError> {
    Ok(crate::fsio::ensure_dir(dir)?)
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
