//! Socket options that decide how fast one association can go.
//!
//! A sender with Nagle's algorithm on (dcmtk's `storescu` as Debian builds it) writes each data
//! set as a run of PDUs and holds the last, short segment until the previous ones are
//! acknowledged, while Linux delays acknowledgements by up to 40 ms. Every instance then waited
//! about 45 ms for its response (measured with `strace -tt` on `storescu`: 31 instances/s on
//! one association, against dcmtk's own `storescp` no better). Acknowledging at once removes
//! the wait. The kernel drops `TCP_QUICKACK` again after a while, so [`quick_ack`] is called
//! before every read; our own writes go out unbuffered with `TCP_NODELAY`.

use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Asks the kernel to acknowledge what arrives on `s` without delay (Linux; elsewhere a no-op).
/// Failure only costs speed, so it is ignored.
pub fn quick_ack(s: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a pointer to a c_int of the stated size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = s.as_raw_fd();
}

/// Sends responses as soon as they are written (no Nagle delay on our side).
pub fn no_delay(s: &TcpStream) {
    if let Err(e) = s.set_nodelay(true) {
        log::debug!("TCP_NODELAY not set: {e}");
    }
}
