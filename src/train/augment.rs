//! Data augmentation for training, chosen to anticipate other scanners and field strengths:
//! geometry (rotation, scale, shift, flips) applied identically to image and mask, and
//! intensity changes applied to the image only (gamma, contrast, smooth bias field as from coil
//! sensitivity or B1 inhomogeneity, noise, blur as from a lower resolution).
//!
//! Every random draw comes from an [`Rng`] the caller seeds per (run seed, step, sample), so a
//! run is repeatable bit for bit no matter how samples are spread over threads.

use crate::nn::rng::Rng;
use serde::{Deserialize, Serialize};

/// Strength of each augmentation; `AugmentConfig::none()` disables all of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Maximum rotation in degrees (uniform in ±this).
    pub rotate_deg: f64,
    /// Scale factor range (log-uniform in [1/s, s]).
    pub scale: f64,
    /// Maximum shift as a fraction of the image side.
    pub shift: f64,
    /// Probability of each of the horizontal and vertical flips.
    pub flip_p: f64,
    /// Gamma range (log-uniform in [1/g, g]).
    pub gamma: f64,
    /// Maximum relative amplitude of the smooth multiplicative bias field.
    pub bias_field: f64,
    /// Maximum standard deviation of additive Gaussian noise (images are in 0..1).
    pub noise: f64,
    /// Probability of a blur that mimics a coarser acquisition resolution.
    pub blur_p: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            rotate_deg: 180.0,
            scale: 1.2,
            shift: 0.08,
            flip_p: 0.5,
            gamma: 1.5,
            bias_field: 0.35,
            noise: 0.04,
            blur_p: 0.2,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all (validation, tests).
    pub fn none() -> Self {
        AugmentConfig {
            rotate_deg: 0.0,
            scale: 1.0,
            shift: 0.0,
            flip_p: 0.0,
            gamma: 1.0,
            bias_field: 0.0,
            noise: 0.0,
            blur_p: 0.0,
        }
    }
}

/// Augments one square `size x size` image (values ~0..1) and its mask, writing into the
/// output slices.
pub fn augment(
    img: &[f32],
    mask: &[u8],
    size: usize,
    cfg: &AugmentConfig,
    rng: &mut Rng,
    out_img: &mut [f32],
    out_mask: &mut [u8],
) {
    let n = size as f64;
    let angle = rng.range(-cfg.rotate_deg, cfg.rotate_deg).to_radians();
    let scale = (rng.range(-1.0, 1.0) * cfg.scale.max(1.0).ln()).exp();
    let (sx, sy) = (
        rng.range(-cfg.shift, cfg.shift) * n,
        rng.range(-cfg.shift, cfg.shift) * n,
    );
    let fx = if rng.uniform() < cfg.flip_p {
        -1.0
    } else {
        1.0
    };
    let fy = if rng.uniform() < cfg.flip_p {
        -1.0
    } else {
        1.0
    };
    // Output pixel -> source pixel: inverse of (flip, rotate, scale, shift) about the centre.
    let (c, s) = (angle.cos() / scale, angle.sin() / scale);
    let centre = (n - 1.0) / 2.0;
    for y in 0..size {
        for x in 0..size {
            let (u, v) = ((x as f64 - centre - sx) * fx, (y as f64 - centre - sy) * fy);
            let (srcx, srcy) = (c * u + s * v + centre, -s * u + c * v + centre);
            let o = y * size + x;
            out_img[o] = bilinear(img, size, srcx, srcy);
            let (nx, ny) = (srcx.round(), srcy.round());
            out_mask[o] = if nx >= 0.0 && ny >= 0.0 && nx < n && ny < n {
                mask[ny as usize * size + nx as usize]
            } else {
                0
            };
        }
    }
    intensity(out_img, size, cfg, rng);
}

fn bilinear(img: &[f32], size: usize, x: f64, y: f64) -> f32 {
    if x < 0.0 || y < 0.0 || x > (size - 1) as f64 || y > (size - 1) as f64 {
        return 0.0;
    }
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(size - 1), (y0 + 1).min(size - 1));
    let (ax, ay) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
    let at = |xx: usize, yy: usize| img[yy * size + xx];
    (at(x0, y0) * (1.0 - ax) + at(x1, y0) * ax) * (1.0 - ay)
        + (at(x0, y1) * (1.0 - ax) + at(x1, y1) * ax) * ay
}

/// Intensity changes: optional blur, gamma, smooth bias field, noise; result clipped to 0..1.5.
fn intensity(img: &mut [f32], size: usize, cfg: &AugmentConfig, rng: &mut Rng) {
    if rng.uniform() < cfg.blur_p {
        box_blur(img, size);
    }
    let gamma = (rng.range(-1.0, 1.0) * cfg.gamma.max(1.0).ln()).exp() as f32;
    // Bias field: exp of a random smooth function (a plane plus one broad Gaussian bump).
    let amp = rng.range(0.0, cfg.bias_field);
    let (gx, gy) = (rng.range(-1.0, 1.0) * amp, rng.range(-1.0, 1.0) * amp);
    let (bx, by, bw, ba) = (
        rng.uniform(),
        rng.uniform(),
        rng.range(0.2, 0.6),
        rng.range(-1.0, 1.0) * amp,
    );
    let sigma = rng.range(0.0, cfg.noise) as f32;
    let n = size as f64;
    for y in 0..size {
        for x in 0..size {
            let (u, v) = (x as f64 / n, y as f64 / n);
            let d2 = ((u - bx).powi(2) + (v - by).powi(2)) / (bw * bw);
            let field = (gx * (u - 0.5) + gy * (v - 0.5) + ba * (-d2).exp()).exp() as f32;
            let p = &mut img[y * size + x];
            let g = p.max(0.0).powf(gamma) * field;
            let noisy = if sigma > 0.0 {
                g + sigma * rng.normal() as f32
            } else {
                g
            };
            *p = noisy.clamp(0.0, 1.5);
        }
    }
}

/// 3x3 box blur in place (edges replicate).
fn box_blur(img: &mut [f32], size: usize) {
    let src = img.to_vec();
    for y in 0..size {
        for x in 0..size {
            let mut s = 0.0;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let yy = (y as i64 + dy).clamp(0, size as i64 - 1) as usize;
                    let xx = (x as i64 + dx).clamp(0, size as i64 - 1) as usize;
                    s += src[yy * size + xx];
                }
            }
            img[y * size + x] = s / 9.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_augmentation_is_identity() {
        let size = 16;
        let img: Vec<f32> = (0..size * size).map(|i| (i % 7) as f32 / 7.0).collect();
        let mask: Vec<u8> = (0..size * size).map(|i| (i % 4) as u8).collect();
        let (mut oi, mut om) = (vec![0.0; size * size], vec![0; size * size]);
        augment(
            &img,
            &mask,
            size,
            &AugmentConfig::none(),
            &mut Rng::new(1),
            &mut oi,
            &mut om,
        );
        assert_eq!(om, mask);
        for (a, b) in oi.iter().zip(&img) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn geometry_moves_image_and_mask_together() {
        // A bright square labelled 1: after any augmentation, labelled pixels stay bright.
        let size = 32;
        let mut img = vec![0.0f32; size * size];
        let mut mask = vec![0u8; size * size];
        for y in 10..20 {
            for x in 8..18 {
                img[y * size + x] = 1.0;
                mask[y * size + x] = 1;
            }
        }
        let cfg = AugmentConfig {
            gamma: 1.0,
            bias_field: 0.0,
            noise: 0.0,
            blur_p: 0.0,
            ..AugmentConfig::default()
        };
        for seed in 0..20 {
            let (mut oi, mut om) = (vec![0.0; size * size], vec![0; size * size]);
            augment(
                &img,
                &mask,
                size,
                &cfg,
                &mut Rng::new(seed),
                &mut oi,
                &mut om,
            );
            let inside: Vec<f32> = oi
                .iter()
                .zip(&om)
                .filter(|(_, m)| **m == 1)
                .map(|(v, _)| *v)
                .collect();
            assert!(!inside.is_empty());
            let mean = inside.iter().sum::<f32>() / inside.len() as f32;
            assert!(
                mean > 0.8,
                "seed {seed}: labelled pixels mean intensity {mean}"
            );
        }
    }

    #[test]
    fn same_seed_same_result() {
        let size = 24;
        let img: Vec<f32> = (0..size * size)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let mask: Vec<u8> = (0..size * size).map(|i| ((i / 50) % 4) as u8).collect();
        let run = |seed| {
            let (mut oi, mut om) = (vec![0.0; size * size], vec![0; size * size]);
            augment(
                &img,
                &mask,
                size,
                &AugmentConfig::default(),
                &mut Rng::new(seed),
                &mut oi,
                &mut om,
            );
            (oi, om)
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5).0, run(6).0);
    }
}
