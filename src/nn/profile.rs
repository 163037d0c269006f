//! Opt-in time accounting per operation kind for the CPU backend (`CINESEG_PROFILE=1`), so a
//! slow step can be attributed to convolutions, BatchNorm, pooling or data movement without an
//! external profiler. Off by default: one relaxed atomic load per operation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Operation kinds that are timed.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    ConvForward = 0,
    ConvDataGrad,
    ConvWeightGrad,
    BatchNormForward,
    BatchNormBackward,
    Pool,
    UpConv,
    Head,
    Loss,
    Other,
}

const NAMES: [&str; 10] = [
    "conv forward",
    "conv data grad",
    "conv weight grad",
    "bn+relu forward",
    "bn+relu backward",
    "max-pool",
    "upconv+concat",
    "head",
    "loss",
    "other",
];

static TOTALS: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CINESEG_PROFILE").is_some_and(|v| v != "0"))
}

/// Times the enclosing scope as `op` when profiling is enabled.
pub struct Span(Option<(Op, Instant)>);

/// Starts timing `op`.
pub fn span(op: Op) -> Span {
    Span(enabled().then(|| (op, Instant::now())))
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some((op, t)) = self.0 {
            TOTALS[op as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

/// The accumulated times (milliseconds per operation kind) and resets them.
pub fn take_report() -> String {
    let mut s = String::new();
    for (i, t) in TOTALS.iter().enumerate() {
        let ns = t.swap(0, Ordering::Relaxed);
        if ns > 0 {
            s += &format!("{:>18}: {:9.1} ms\n", NAMES[i], ns as f64 / 1e6);
        }
    }
    s
}
