//! Hard time limits per connection: the negotiation deadline, then the total association time.
//! A watchdog thread shuts down a socket whose deadline passed, so even a peer trickling bytes
//! (which keeps every read timeout from firing) cannot hold a thread or a slot past its limit.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(100);

/// A socket shut down when its deadline passes.
struct Deadline {
    at: Instant,
    /// "negotiation" or "association": which limit it is.
    stage: &'static str,
    peer: String,
    stream: TcpStream,
}

/// The deadlines of all open connections, by connection id.
#[derive(Default)]
pub struct Deadlines {
    map: Mutex<HashMap<u64, Deadline>>,
}

impl Deadlines {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Deadline>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts connection `id` (socket `s`, from `peer`) under the limit `stage`, `after` from
    /// now, replacing any earlier deadline of that connection.
    pub fn set(&self, id: u64, stage: &'static str, after: Duration, peer: &str, s: &TcpStream) {
        if let Ok(stream) = s.try_clone() {
            let d = Deadline {
                at: Instant::now() + after,
                stage,
                peer: peer.to_string(),
                stream,
            };
            self.map().insert(id, d);
        }
    }

    /// Forgets connection `id` (it ended on its own).
    pub fn remove(&self, id: u64) {
        self.map().remove(&id);
    }

    /// Shuts down sockets past their deadline, once each, until `stop` is set.
    pub fn watch(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
            let now = Instant::now();
            self.map().retain(|id, d| {
                if now < d.at {
                    return true;
                }
                log::warn!(
                    "connection {id} from {}: {} time limit passed; closing it",
                    d.peer,
                    d.stage
                );
                let _ = d.stream.shutdown(std::net::Shutdown::Both);
                false
            });
        }
    }
}
