//! The model's self-description: architecture (`config`) and input preparation (`preprocess`),
//! both stored in the weights file's metadata so a model file is enough to run it.

use super::NnError;
use serde::{Deserialize, Serialize};

/// Deepest U-Net accepted: 8 poolings already need 256-pixel-divisible inputs.
pub const MAX_DEPTH: usize = 8;
/// Widest first level accepted. The shipped model uses 32; with [`MAX_DEPTH`] levels the
/// deepest has `base << depth` channels, so this bound also keeps every shape product far
/// from overflowing. A model file's sizes are checked against its length as well.
pub const MAX_BASE: usize = 1024;
/// Most output classes accepted (labels are one string each).
pub const MAX_CLASSES: usize = 1024;
/// Largest crop side accepted in `preprocess.size` (pixels): 1024 x 1024 at 0.25 mm is a
/// 256 mm field of view, beyond any cardiac matrix.
pub const MAX_CROP: usize = 1024;
/// Accepted range of `preprocess.spacing_mm`: images are resampled to it before cropping,
/// so a tiny spacing would make the resampled image (and its allocation) enormous.
pub const SPACING_RANGE_MM: (f32, f32) = (0.1, 20.0);

/// Architecture of the fixed U-Net (docs/ARCHITECTURE.md): `depth` poolings, `base * 2^i`
/// channels.
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
        if self.classes < 2 || self.base == 0 || self.depth == 0 || self.depth > MAX_DEPTH {
            return Err(NnError::Config(format!(
                "classes {}, base {}, depth {} (need classes >= 2, base >= 1, 1 <= depth <= {MAX_DEPTH})",
                self.classes, self.base, self.depth
            )));
        }
        if self.base > MAX_BASE {
            return Err(NnError::Config(format!(
                "base {} (at most {MAX_BASE} channels at the first level)",
                self.base
            )));
        }
        if self.classes > MAX_CLASSES {
            return Err(NnError::Config(format!(
                "classes {} (at most {MAX_CLASSES})",
                self.classes
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
        if c != self.in_channels || h == 0 || w == 0 || !h.is_multiple_of(m) || !w.is_multiple_of(m)
        {
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

impl Preprocess {
    /// Rejects values inference cannot use or that would size an allocation without bound,
    /// naming the field (`preprocess.size`, ...). `multiple` is the model's
    /// [`UNetConfig::size_multiple`]: the crop must pass through every pooling.
    pub fn validate(&self, multiple: usize) -> Result<(), String> {
        if self.size == 0 || self.size > MAX_CROP || !self.size.is_multiple_of(multiple.max(1)) {
            return Err(format!(
                "preprocess.size {} (need 1..={MAX_CROP}, divisible by {multiple})",
                self.size
            ));
        }
        let (lo, hi) = SPACING_RANGE_MM;
        if !(lo..=hi).contains(&self.spacing_mm) {
            return Err(format!(
                "preprocess.spacing_mm {} (need {lo}..={hi} mm)",
                self.spacing_mm
            ));
        }
        let n = &self.normalisation;
        if n.kind != "percentile" {
            return Err(format!(
                "preprocess.normalisation.kind {:?} (only \"percentile\" is supported)",
                n.kind
            ));
        }
        let (l, h) = (n.low_percentile, n.high_percentile);
        if !(l.is_finite() && h.is_finite() && 0.0 <= l && l < h && h <= 100.0) {
            return Err(format!(
                "preprocess.normalisation percentiles {l}..{h} (need 0 <= low < high <= 100)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_or_degenerate_numbers_are_refused_by_name() {
        let mut c = UNetConfig::default();
        assert!(c.validate().is_ok());
        c.base = 1 << 40;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("base 1099511627776"));
        let c = UNetConfig {
            classes: 1 << 31,
            ..UNetConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("classes 2147483648"));
        let p = Preprocess::default();
        assert_eq!(p.validate(16), Ok(()));
        let big = Preprocess {
            size: 1 << 31,
            ..Preprocess::default()
        };
        assert!(big
            .validate(16)
            .unwrap_err()
            .contains("preprocess.size 2147483648"));
        let odd = Preprocess {
            size: 100,
            ..Preprocess::default()
        };
        assert!(odd.validate(16).unwrap_err().contains("divisible by 16"));
        for bad in [0.0, 1e-6, f32::NAN, f32::INFINITY, 1e9] {
            let p = Preprocess {
                spacing_mm: bad,
                ..Preprocess::default()
            };
            assert!(p.validate(16).unwrap_err().contains("spacing_mm"), "{bad}");
        }
        let mut p = Preprocess::default();
        p.normalisation.high_percentile = f32::NAN;
        assert!(p.validate(16).unwrap_err().contains("percentiles"));
    }
}
