//! Learning-rate schedule: linear warm-up then cosine decay ("one-cycle"-like), a function of
//! the global step only, so a resumed run follows the same curve.

use serde::{Deserialize, Serialize};

/// Warm-up + cosine schedule from `peak` down to `peak * final_fraction`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub peak: f64,
    pub total_steps: u64,
    pub warmup_steps: u64,
    pub final_fraction: f64,
}

impl Schedule {
    /// A schedule with 5 % warm-up decaying to 1 % of the peak.
    pub fn cosine(peak: f64, total_steps: u64) -> Self {
        Schedule {
            peak,
            total_steps: total_steps.max(1),
            warmup_steps: (total_steps / 20).max(1),
            final_fraction: 0.01,
        }
    }

    /// A flat schedule (fine-tuning phases with a fixed rate).
    pub fn constant(lr: f64, total_steps: u64) -> Self {
        Schedule {
            peak: lr,
            total_steps: total_steps.max(1),
            warmup_steps: 0,
            final_fraction: 1.0,
        }
    }

    /// Learning rate at `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.total_steps - self.warmup_steps.min(self.total_steps)).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let lo = self.peak * self.final_fraction;
        lo + (self.peak - lo) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays() {
        let s = Schedule::cosine(1e-3, 1000);
        assert!(s.lr(0) < s.lr(49));
        assert!((s.lr(49) - 1e-3).abs() < 1e-12);
        assert!(s.lr(500) < 1e-3 && s.lr(500) > 1e-5);
        assert!((s.lr(999) - 1e-5).abs() < 1e-7);
    }
}
