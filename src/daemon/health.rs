//! Counters for the once-a-minute health line: what an operator needs to see that the box is
//! alive and keeping up, with no patient data.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Latencies kept for the percentiles (the most recent ones).
const WINDOW: usize = 1000;

/// Shared counters.
#[derive(Default)]
pub struct Health {
    /// Series taken into the pipeline and not finished.
    pub in_flight: AtomicU64,
    /// Series with results stored.
    pub done: AtomicU64,
    /// Series quarantined.
    pub failed: AtomicU64,
    latencies: Mutex<VecDeque<f64>>,
}

impl Health {
    /// Records a finished series: seconds from its last instance to its results stored.
    pub fn finished(&self, latency_s: f64) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let mut l = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() == WINDOW {
            l.pop_front();
        }
        l.push_back(latency_s);
    }

    /// Median and 95th percentile latency in seconds, if any series finished.
    pub fn percentiles(&self) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = self
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some((percentile(&v, 0.5), percentile(&v, 0.95)))
    }

    /// The health line.
    pub fn line(&self, received: u64, open_series: usize) -> String {
        let lat = match self.percentiles() {
            Some((p50, p95)) => format!("latency p50 {p50:.2} s p95 {p95:.2} s"),
            None => "latency n/a".into(),
        };
        format!(
            "health: received {received} instances, {open_series} series receiving, {} in flight, {} done, {} failed, {lat}",
            self.in_flight.load(Ordering::Relaxed),
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_line() {
        let h = Health::default();
        assert!(h.line(0, 0).contains("latency n/a"));
        for i in 1..=20 {
            h.finished(i as f64);
        }
        let (p50, p95) = h.percentiles().expect("some");
        assert_eq!((p50, p95), (10.0, 19.0));
        let line = h.line(240, 1);
        assert!(
            line.contains("received 240") && line.contains("20 done") && line.contains("p95 19.00"),
            "{line}"
        );
    }
}
