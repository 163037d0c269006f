//! A synthetic short-axis cine series with known ground truth, for `cineseg demo` and for
//! end-to-end tests that need a beating heart without patient data.
//!
//! The images imitate 1.5/3 T bSSFP cine as in ACDC: bright blood (about 3x myocardium),
//! bright fat, dark lungs, grey liver and muscle, dark papillary muscles in a bright cavity,
//! Rician noise and a smooth receive-coil bias field. The LV cavity is an analytic
//! half-ellipsoid, so its volume at every phase is known; the RV crescent is calibrated on
//! the label grid to the requested RV volumes at ED and ES. The cycle starts at a random
//! phase offset, so ED and ES are not phase 0 and must be found, as in real series.
//!
//! Generation is deterministic for a given seed: every image draws its noise from its own
//! generator seeded from (seed, slice, phase), so it does not depend on thread scheduling.

mod anatomy;

use crate::analysis::postprocess::postprocess;
use crate::analysis::volume::LabelVolume;
use crate::nn::rng::Rng;
use anatomy::{surroundings, Heart, HeartPhase, Tissue};
use rayon::prelude::*;

/// Signal of blood in the output units (a typical magnitude of scanner pixel values).
const BLOOD_SIGNAL: f64 = 500.0;

/// Why a phantom could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    /// A parameter is out of its meaningful range; the message names it.
    #[error("invalid phantom parameter: {0}")]
    InvalidParams(String),
    /// Cleaning the generated truth failed (a bug: the volumes are built consistent here).
    #[error("phantom labels: {0}")]
    Labels(#[from] crate::analysis::AnalysisError),
}

/// What to generate. Defaults give a normal heart: 192x192 at 1.5 mm, 10 slices of 10 mm,
/// 25 phases, LVEDV 140 ml, LVEF 60 %, RVEDV 150 ml, RVEF 55 %.
#[derive(Clone, Debug, PartialEq)]
pub struct PhantomParams {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// In-plane pixel spacing in mm.
    pub pixel_mm: f32,
    /// Number of slices.
    pub slices: usize,
    /// Distance between slice centres in mm.
    pub slice_mm: f32,
    /// Number of phases over one cardiac cycle.
    pub phases: usize,
    /// LV end-diastolic volume in ml.
    pub lv_edv_ml: f64,
    /// LV ejection fraction as a fraction (0.6 = 60 %).
    pub lv_ef: f64,
    /// RV end-diastolic volume in ml.
    pub rv_edv_ml: f64,
    /// RV ejection fraction as a fraction.
    pub rv_ef: f64,
    /// LV wall thickness at end-diastole in mm.
    pub wall_mm: f64,
    /// Time from ED to ES as a fraction of the cycle.
    pub systole_fraction: f64,
    /// Rician noise standard deviation relative to the blood signal.
    pub noise: f64,
    /// Depth of the coil-sensitivity variation (0 = flat, 0.4 = +-40 %).
    pub bias: f64,
}

impl Default for PhantomParams {
    fn default() -> Self {
        PhantomParams {
            width: 192,
            height: 192,
            pixel_mm: 1.5,
            slices: 10,
            slice_mm: 10.0,
            phases: 25,
            lv_edv_ml: 140.0,
            lv_ef: 0.60,
            rv_edv_ml: 150.0,
            rv_ef: 0.55,
            wall_mm: 9.0,
            systole_fraction: 0.36,
            noise: 0.03,
            bias: 0.3,
        }
    }
}

impl PhantomParams {
    /// Rejects parameters that would give no heart, no cycle or nonsense contrast.
    pub fn validate(&self) -> Result<(), PhantomError> {
        let bad = |what: &str| Err(PhantomError::InvalidParams(what.to_string()));
        if self.width < 32 || self.height < 32 || self.slices < 2 || self.phases < 2 {
            return bad("need at least 32x32 pixels, 2 slices and 2 phases");
        }
        if !(self.pixel_mm > 0.0
            && self.pixel_mm.is_finite()
            && self.slice_mm > 0.0
            && self.slice_mm.is_finite())
        {
            return bad("spacings must be finite and > 0");
        }
        if !(self.lv_edv_ml > 1.0
            && self.rv_edv_ml > 1.0
            && self.lv_edv_ml.is_finite()
            && self.rv_edv_ml.is_finite())
        {
            return bad("LV and RV end-diastolic volumes must be finite and > 1 ml");
        }
        if !(0.0..0.95).contains(&self.lv_ef) || !(0.0..0.95).contains(&self.rv_ef) {
            return bad("ejection fractions must be in [0, 0.95)");
        }
        if !(1.0..30.0).contains(&self.wall_mm) {
            return bad("wall_mm must be in [1, 30)");
        }
        if !(0.05..0.95).contains(&self.systole_fraction) {
            return bad("systole_fraction must be in [0.05, 0.95)");
        }
        if !(0.0..1.0).contains(&self.noise) || !(0.0..0.9).contains(&self.bias) {
            return bad("noise must be in [0, 1) and bias in [0, 0.9)");
        }
        Ok(())
    }

    /// Spacing `[x, y, slice]` in mm, as [`LabelVolume`] wants it.
    pub fn spacing(&self) -> [f32; 3] {
        [self.pixel_mm, self.pixel_mm, self.slice_mm]
    }
}

/// A generated cine series and its truth.
#[derive(Clone, Debug)]
pub struct Phantom {
    /// The parameters it was made from.
    pub params: PhantomParams,
    /// Images, slice-major: `images[slice * phases + phase]`, each `width * height` values,
    /// row-major (x fastest).
    pub images: Vec<Vec<f32>>,
    /// Ground-truth labels, one volume per phase.
    pub labels: Vec<LabelVolume>,
    /// Phase of end-diastole (largest LV volume).
    pub ed_phase: usize,
    /// Phase of end-systole (smallest LV volume).
    pub es_phase: usize,
    /// Analytic LV cavity volume per phase in ml (the label volumes approximate it).
    pub lv_volume_ml: Vec<f64>,
}

impl Phantom {
    /// The image of `slice` at `phase`, or `None` when out of range.
    pub fn image(&self, slice: usize, phase: usize) -> Option<&[f32]> {
        if slice >= self.params.slices || phase >= self.params.phases {
            return None;
        }
        self.images
            .get(slice * self.params.phases + phase)
            .map(|v| v.as_slice())
    }

    /// All slices of one phase stacked in [`LabelVolume`] order (x, then y, then slice), the
    /// layout the segmentation pipeline produces labels in.
    pub fn phase_stack(&self, phase: usize) -> Option<Vec<f32>> {
        let mut out =
            Vec::with_capacity(self.params.width * self.params.height * self.params.slices);
        for s in 0..self.params.slices {
            out.extend_from_slice(self.image(s, phase)?);
        }
        Some(out)
    }
}

/// Generates a phantom; the same parameters and seed always give the same series.
pub fn generate(p: &PhantomParams, seed: u64) -> Result<Phantom, PhantomError> {
    p.validate()?;
    let mut rng = Rng::new(seed);
    let px = p.pixel_mm as f64;
    let (wmm, hmm) = (p.width as f64 * px, p.height as f64 * px);
    let stack_mm = p.slices as f64 * p.slice_mm as f64;

    // Cavity shape: long axis 2.5x the mean radius, slightly elliptical cross-section.
    let a = (3.0 * p.lv_edv_ml * 1000.0 / (2.0 * std::f64::consts::PI * 2.5)).cbrt();
    let aspect = rng.range(1.03, 1.12);
    let heart = Heart {
        centre: [rng.range(6.0, 16.0), rng.range(-10.0, 0.0)],
        // Rotation that puts the RV left of and below the LV, as in ACDC's arrays.
        angle: rng.range(-0.85, -0.35),
        base_z: p.slice_mm as f64 * (p.slices as f64 * 0.1).round().max(1.0),
        ed_axes: [a * aspect, a / aspect, 2.5 * a],
        ed_wall: p.wall_mm,
        rv_axes: [1.05 * (a + p.wall_mm), 1.3 * (a + p.wall_mm)],
        rv_length: 0.8,
        long_shortening: 0.12,
    };

    // Cycle: ED at a random phase, ES `systole_fraction` later, both on the phase grid.
    let n = p.phases;
    let offset = 1 + rng.below(n - 1);
    let ed_phase = (n - offset) % n;
    let es_steps = ((p.systole_fraction * n as f64).round() as usize).clamp(1, n - 1);
    let es_phase = (ed_phase + es_steps) % n;
    let weight = |phase: usize| -> f64 {
        let i = (phase + offset) % n;
        let pi = std::f64::consts::PI;
        if i <= es_steps {
            0.5 * (1.0 - (pi * i as f64 / es_steps as f64).cos())
        } else {
            0.5 * (1.0 + (pi * (i - es_steps) as f64 / (n - es_steps) as f64).cos())
        }
    };

    let grid = Grid {
        width: p.width,
        height: p.height,
        slices: p.slices,
        px,
        slice_mm: p.slice_mm as f64,
    };
    let rv_ed = calibrate_rv(&heart, &grid, heart.at(0.0, p.lv_ef, 1.0), p.rv_edv_ml);
    let rv_es = calibrate_rv(
        &heart,
        &grid,
        heart.at(1.0, p.lv_ef, 1.0),
        p.rv_edv_ml * (1.0 - p.rv_ef),
    );
    let poses: Vec<HeartPhase> = (0..n)
        .map(|ph| {
            let w = weight(ph);
            heart.at(w, p.lv_ef, rv_ed + (rv_es - rv_ed) * w)
        })
        .collect();
    let lv_volume_ml = poses.iter().map(|h| heart.lv_volume_ml(h)).collect();

    let coils: Vec<[f64; 3]> = [
        (-60.0, -120.0),
        (60.0, -120.0),
        (-60.0, 140.0),
        (60.0, 140.0),
    ]
    .iter()
    .map(|&(x, y)| {
        [
            x + rng.range(-25.0, 25.0),
            y + rng.range(-15.0, 15.0),
            stack_mm * rng.range(0.2, 0.8),
        ]
    })
    .collect();
    let bias = BiasField::new(coils, p.bias, [0.0, 0.0, 0.5 * stack_mm]);
    let texture = Texture::random(&mut rng);
    // Neither the coil field nor the tissue texture moves with the heart: one map per slice
    // serves every phase.
    let bias_maps: Vec<Vec<f64>> = (0..p.slices)
        .map(|s| {
            (0..p.width * p.height)
                .map(|k| {
                    let (x, y) = grid.xy(k % p.width, k / p.width, 0.0);
                    let at = [x, y, grid.z(s)];
                    bias.at(at) * texture.at(at)
                })
                .collect()
        })
        .collect();
    let body = [0.46 * wmm.min(hmm * 1.2), 0.40 * hmm.min(wmm)];
    let noise_seed = rng.next_u64();

    // The truth is cleaned as an expert's contours would be: where the RV crescent tapers
    // against the septum, pixel sampling leaves a few isolated RV pixels that nobody draws.
    let labels = poses
        .par_iter()
        .map(|h| {
            let mut v = label_volume(&heart, h, &grid, p.spacing());
            postprocess(&mut v).map(|()| v)
        })
        .collect::<Result<Vec<LabelVolume>, _>>()?;
    let images: Vec<Vec<f32>> = (0..p.slices * n)
        .into_par_iter()
        .map(|k| {
            let (slice, phase) = (k / n, k % n);
            let mut noise = Rng::new(noise_seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            render(
                &heart,
                &poses[phase],
                &grid,
                slice,
                body,
                &bias_maps[slice],
                p.noise * BLOOD_SIGNAL,
                &mut noise,
            )
        })
        .collect();
    Ok(Phantom {
        params: p.clone(),
        images,
        labels,
        ed_phase,
        es_phase,
        lv_volume_ml,
    })
}

/// Sampling grid of the series, in mm.
struct Grid {
    width: usize,
    height: usize,
    slices: usize,
    px: f64,
    slice_mm: f64,
}

impl Grid {
    /// Centre of pixel (i, j) in mm from the image centre, offset by `d` pixels.
    fn xy(&self, i: usize, j: usize, d: f64) -> (f64, f64) {
        (
            (i as f64 + 0.5 + d - 0.5 * self.width as f64) * self.px,
            (j as f64 + 0.5 + d - 0.5 * self.height as f64) * self.px,
        )
    }

    fn z(&self, slice: usize) -> f64 {
        (slice as f64 + 0.5) * self.slice_mm
    }
}

/// Labels of one phase, from the tissue at each pixel centre on the slice's centre plane.
fn label_volume(heart: &Heart, h: &HeartPhase, g: &Grid, spacing: [f32; 3]) -> LabelVolume {
    let mut vol = LabelVolume::new(g.width, g.height, g.slices, spacing);
    for (k, l) in vol.labels.iter_mut().enumerate() {
        let (i, j, s) = (
            k % g.width,
            (k / g.width) % g.height,
            k / (g.width * g.height),
        );
        let (x, y) = g.xy(i, j, 0.0);
        *l = heart.tissue(h, x, y, g.z(s)).map_or(0, Tissue::label);
    }
    vol
}

/// RV scale that gives `target_ml` of RV voxels at pose `h` (bisection; the crescent's
/// volume grows monotonically with the scale).
fn calibrate_rv(heart: &Heart, g: &Grid, h: HeartPhase, target_ml: f64) -> f64 {
    let voxel_ml = g.px * g.px * g.slice_mm / 1000.0;
    // Only the square around the heart's reach needs testing.
    let range = |centre: f64, radius: f64, n: usize| {
        let lo = ((centre - radius) / g.px + 0.5 * n as f64 - 0.5)
            .floor()
            .max(0.0) as usize;
        let hi = ((centre + radius) / g.px + 0.5 * n as f64 + 0.5)
            .ceil()
            .clamp(0.0, n as f64) as usize;
        lo..hi.max(lo)
    };
    let volume = |scale: f64| {
        let pose = h.with_rv_scale(heart, scale);
        let radius = heart.reach(&pose);
        let (xs, ys) = (
            range(heart.centre[0], radius, g.width),
            range(heart.centre[1], radius, g.height),
        );
        let mut count = 0usize;
        for s in 0..g.slices {
            for j in ys.clone() {
                for i in xs.clone() {
                    let (x, y) = g.xy(i, j, 0.0);
                    count += (heart.tissue(&pose, x, y, g.z(s)) == Some(Tissue::RvBlood)) as usize;
                }
            }
        }
        count as f64 * voxel_ml
    };
    let (mut lo, mut hi) = (0.1, 2.5);
    for _ in 0..14 {
        let mid = 0.5 * (lo + hi);
        if volume(mid) < target_ml {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Smooth receive sensitivity: a sum of Gaussian coil profiles, 1 at the reference point.
struct BiasField {
    coils: Vec<[f64; 3]>,
    depth: f64,
    reference: f64,
}

impl BiasField {
    const WIDTH_MM: f64 = 120.0;

    fn new(coils: Vec<[f64; 3]>, depth: f64, at: [f64; 3]) -> Self {
        let mut f = BiasField {
            coils,
            depth,
            reference: 1.0,
        };
        f.reference = f.raw(at).max(1e-12);
        f
    }

    fn raw(&self, p: [f64; 3]) -> f64 {
        self.coils
            .iter()
            .map(|c| {
                let d2 = (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2);
                (-d2 / (2.0 * Self::WIDTH_MM * Self::WIDTH_MM)).exp()
            })
            .sum()
    }

    fn at(&self, p: [f64; 3]) -> f64 {
        (1.0 - self.depth + self.depth * self.raw(p) / self.reference).max(0.05)
    }
}

/// Low-frequency intensity texture (a few random 3D plane waves, +-8 % in all), so tissue
/// is not perfectly flat as in a cartoon; real bSSFP images show such slow variation.
struct Texture {
    waves: Vec<([f64; 3], f64, f64)>,
}

impl Texture {
    fn random(rng: &mut Rng) -> Self {
        let waves = (0..6)
            .map(|_| {
                let wavelength = rng.range(12.0, 60.0);
                let (theta, tilt) = (rng.range(0.0, std::f64::consts::TAU), rng.range(-0.3, 0.3));
                let k = std::f64::consts::TAU / wavelength;
                let dir = [theta.cos() * k, theta.sin() * k, tilt * k];
                (
                    dir,
                    rng.range(0.0, std::f64::consts::TAU),
                    rng.range(0.005, 0.022),
                )
            })
            .collect();
        Texture { waves }
    }

    fn at(&self, p: [f64; 3]) -> f64 {
        1.0 + self
            .waves
            .iter()
            .map(|(k, phase, amp)| amp * (k[0] * p[0] + k[1] * p[1] + k[2] * p[2] + phase).sin())
            .sum::<f64>()
    }
}

/// One image: 2x2 supersampled tissue signal (soft partial-volume edges), times the bias
/// field, plus Rician noise (magnitude of a complex signal with Gaussian noise per channel).
#[allow(clippy::too_many_arguments)]
fn render(
    heart: &Heart,
    h: &HeartPhase,
    g: &Grid,
    slice: usize,
    body: [f64; 2],
    bias: &[f64],
    sigma: f64,
    rng: &mut Rng,
) -> Vec<f32> {
    let z = g.z(slice);
    let depth_frac = z / (g.slices as f64 * g.slice_mm);
    let mut out = Vec::with_capacity(g.width * g.height);
    for j in 0..g.height {
        for i in 0..g.width {
            let mut s = 0.0;
            for (dx, dy) in [(-0.25, -0.25), (0.25, -0.25), (-0.25, 0.25), (0.25, 0.25)] {
                let (x, _) = g.xy(i, j, dx);
                let (_, y) = g.xy(i, j, dy);
                let t = heart
                    .tissue(h, x, y, z)
                    .unwrap_or_else(|| surroundings(x, y, depth_frac, body));
                s += 0.25 * t.signal();
            }
            let m = s * BLOOD_SIGNAL * bias[j * g.width + i];
            let (re, im) = (m + sigma * rng.normal(), sigma * rng.normal());
            out.push((re * re + im * im).sqrt() as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests;
