//! The model's self-description: architecture (`config`) and input preparation (`preprocess`),
//! both stored in the weights file's metadata so a model file is enough to run it.

use super::NnError;
use serde::{Deserialize, Serialize};

/// Architecture of the fixed U-Net (ARCHITECTURE.md): `depth` poolings, `base * 2^i` channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub classes: usize,
    pub base: usize,
    pub depth: usize,
    #[serde(default = "default_norm")]
    pub norm: String,
}

fn default_norm() -> String {
    "batch".into()
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 1,
            classes: 4,
            base: 32,
            depth: 4,
            norm: default_norm(),
        }
    }
}

impl UNetConfig {
    /// A config with the given width and depth, one input channel, four classes.
    pub fn new(base: usize, depth: usize) -> Self {
        UNetConfig {
            base,
            depth,
            ..Default::default()
        }
    }

    /// Rejects configurations the engine cannot run.
    pub fn validate(&self) -> Result<(), NnError> {
        if self.in_channels != 1 {
            return Err(NnError::Config(format!(
                "in_channels {} (only 1 is supported)",
                self.in_channels
            )));
        }
        if self.classes < 2 || self.base == 0 || self.depth == 0 || self.depth > 8 {
            return Err(NnError::Config(format!(
                "classes {}, base {}, depth {} (need classes >= 2, base >= 1, 1 <= depth <= 8)",
                self.classes, self.base, self.depth
            )));
        }
        if self.norm != "batch" {
            return Err(NnError::Config(format!(
                "norm {:?} (only \"batch\" is supported)",
                self.norm
            )));
        }
        Ok(())
    }

    /// Channels at encoder level `i`.
    pub fn channels(&self, level: usize) -> usize {
        self.base << level
    }

    /// Image sizes must be divisible by this (one halving per level).
    pub fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    /// Checks that an input of `h` x `w` can pass through the network.
    pub fn check_input(&self, h: usize, w: usize, c: usize) -> Result<(), NnError> {
        let m = self.size_multiple();
        if c != self.in_channels || h == 0 || w == 0 || h % m != 0 || w % m != 0 {
            return Err(NnError::Shape(format!(
                "input {h}x{w} with {c} channel(s): the model needs {} channel(s) and sizes divisible by {m}",
                self.in_channels
            )));
        }
        Ok(())
    }

    /// Forward FLOPs per image of `h` x `w` (multiply-add = 2), for benchmarks.
    pub fn forward_flops(&self, h: usize, w: usize) -> f64 {
        let mut f = 0.0;
        let px = |l: usize| ((h >> l) * (w >> l)) as f64;
        for l in 0..=self.depth {
            let cin = if l == 0 {
                self.in_channels
            } else {
                self.channels(l - 1)
            };
            let c = self.channels(l);
            f += 2.0 * 9.0 * px(l) * (cin * c + c * c) as f64;
        }
        for l in 0..self.depth {
            let c = self.channels(l);
            f += 2.0 * px(l + 1) * (self.channels(l + 1) * c * 4) as f64;
            f += 2.0 * 9.0 * px(l) * (2 * c * c + c * c) as f64;
        }
        f += 2.0 * px(0) * (self.base * self.classes) as f64;
        f
    }
}

/// How inference must prepare an image so it looks like the training data. Stored in the model
/// file's metadata (`preprocess`) so `segment` repeats exactly what `train` did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// In-plane pixel spacing (mm) images are resampled to.
    pub spacing_mm: f32,
    /// Side of the square centre crop (pixels after resampling), padded with zeros if smaller.
    pub size: usize,
    /// Intensity normalisation applied after resampling.
    pub normalisation: Normalisation,
}

/// Robust intensity normalisation: map the `low`..`high` percentiles of each 2D slice to 0..1
/// (values outside are clipped). Percentiles are immune to the bright fat and flow artefacts
/// that break min-max scaling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    pub kind: String,
    pub low_percentile: f32,
    pub high_percentile: f32,
}

impl Default for Normalisation {
    fn default() -> Self {
        Normalisation {
            kind: "percentile".into(),
            low_percentile: 1.0,
            high_percentile: 99.0,
        }
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            spacing_mm: 1.5,
            size: 160,
            normalisation: Normalisation::default(),
        }
    }
}
