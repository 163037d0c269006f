//! Input preparation for the U-Net: what training and inference must do identically, so it is
//! implemented once and described by the model file's `preprocess` metadata.
//!
//! Steps, for one 2D slice:
//! 1. Resample in-plane to `spacing_mm` (bilinear for images, nearest neighbour for labels) and
//!    centre crop or pad to `size x size`, in one pass (see [`super::resample`]).
//! 2. Normalise intensities with the slice's own percentiles, computed on the *native* slice
//!    (all of it, before cropping; non-finite values ignored) with linear interpolation between
//!    order statistics (numpy's default): `low -> 0`, `high -> 1`, values outside clipped to
//!    `[0, 1]`. A slice whose two percentiles coincide (blank image) becomes all zeros.
//! 3. Padding (grid pixels that fall outside the native image) is 0 after normalisation, the
//!    same value as the darkest tissue, so padding never looks like anatomy.

use super::resample::{taps, Placement};
use super::{ImageError, Slice2D};
use crate::nn::config::Normalisation;
use crate::nn::Preprocess;

/// The `(low, high)` intensity percentiles (0..=100) of `data`, ignoring non-finite values;
/// `(0, 0)` when no value is finite. Exposed so quality checks can report the window used.
pub fn percentile_window(data: &[f32], low: f32, high: f32) -> (f32, f32) {
    let mut v: Vec<f32> = data.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let lo = percentile(&mut v, low);
    let hi = percentile(&mut v, high);
    (lo, hi)
}

/// Linear-interpolated percentile by selection (O(n)); `v` is reordered.
fn percentile(v: &mut [f32], q: f32) -> f32 {
    let n = v.len();
    let pos = (q.clamp(0.0, 100.0) as f64 / 100.0) * (n - 1) as f64;
    let k = (pos.floor() as usize).min(n - 1);
    let frac = (pos - k as f64) as f32;
    let (_, &mut a, rest) = v.select_nth_unstable_by(k, f32::total_cmp);
    if frac == 0.0 || rest.is_empty() {
        return a;
    }
    let b = rest.iter().copied().fold(f32::INFINITY, f32::min);
    a + (b - a) * frac
}

fn check_normalisation(n: &Normalisation) -> Result<(), ImageError> {
    if n.kind != "percentile" {
        return Err(ImageError::Preprocess(format!(
            "normalisation kind {:?} (only \"percentile\" is known)",
            n.kind
        )));
    }
    let ok = |q: f32| (0.0..=100.0).contains(&q);
    if !(ok(n.low_percentile) && ok(n.high_percentile) && n.low_percentile < n.high_percentile) {
        return Err(ImageError::Preprocess(format!(
            "percentiles {} and {} (need 0 <= low < high <= 100)",
            n.low_percentile, n.high_percentile
        )));
    }
    Ok(())
}

/// Prepares one slice for the network: a `size * size` row-major image on the model's grid
/// with intensities in `[0, 1]`, and the [`Placement`] needed to map results back. See the
/// module documentation for the exact steps.
pub fn prepare_image(s: &Slice2D, p: &Preprocess) -> Result<(Vec<f32>, Placement), ImageError> {
    check_normalisation(&p.normalisation)?;
    let pl = Placement::new(s.width, s.height, s.spacing, p)?;
    if s.data.len() != pl.native_len() {
        return Err(ImageError::Length {
            what: format!("a {}x{} slice", s.width, s.height),
            got: s.data.len(),
            expected: pl.native_len(),
        });
    }
    let (lo, hi) = percentile_window(
        &s.data,
        p.normalisation.low_percentile,
        p.normalisation.high_percentile,
    );
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
    let n = p.size;
    let tx = taps(n, s.width, |u| pl.to_native(u, 0.0).0);
    let ty = taps(n, s.height, |v| pl.to_native(0.0, v).1);
    let mut out = vec![0.0f32; n * n];
    for (row, ty) in out.chunks_exact_mut(n).zip(&ty) {
        if !ty.inside {
            continue;
        }
        let r0 = &s.data[ty.i0 * s.width..][..s.width];
        let r1 = &s.data[ty.i1 * s.width..][..s.width];
        for (o, tx) in row.iter_mut().zip(&tx) {
            if !tx.inside {
                continue;
            }
            let top = r0[tx.i0] + (r0[tx.i1] - r0[tx.i0]) * tx.f;
            let bottom = r1[tx.i0] + (r1[tx.i1] - r1[tx.i0]) * tx.f;
            let v = top + (bottom - top) * ty.f;
            let z = (v - lo) * scale;
            // NaN voxels (clamp keeps NaN) become 0 like padding.
            *o = if z.is_nan() { 0.0 } else { z.clamp(0.0, 1.0) };
        }
    }
    Ok((out, pl))
}

/// Puts a label map (`width * height`, row-major) on the same grid as [`prepare_image`] puts
/// its image, by nearest neighbour, so image and mask stay aligned pixel for pixel; pixels
/// outside the native image are background (0).
pub fn prepare_labels(
    labels: &[u8],
    width: usize,
    height: usize,
    spacing: [f32; 2],
    p: &Preprocess,
) -> Result<Vec<u8>, ImageError> {
    let pl = Placement::new(width, height, spacing, p)?;
    if labels.len() != pl.native_len() {
        return Err(ImageError::Length {
            what: format!("a {width}x{height} label map"),
            got: labels.len(),
            expected: pl.native_len(),
        });
    }
    let n = p.size;
    let tx = taps(n, width, |u| pl.to_native(u, 0.0).0);
    let ty = taps(n, height, |v| pl.to_native(0.0, v).1);
    let mut out = vec![0u8; n * n];
    for (row, ty) in out.chunks_exact_mut(n).zip(&ty) {
        if !ty.inside {
            continue;
        }
        let src = &labels[ty.nearest * width..][..width];
        for (o, tx) in row.iter_mut().zip(&tx) {
            if tx.inside {
                *o = src[tx.nearest];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::resample::{argmax_restored, restore_labels};
    use super::*;

    fn pre(size: usize, spacing_mm: f32) -> Preprocess {
        Preprocess {
            spacing_mm,
            size,
            ..Preprocess::default()
        }
    }

    /// Ellipse radius of a physical point (mm from the native origin) in a heart-like phantom:
    /// classes are bands of this radius, centred off-centre so that a wrong geometry (flip,
    /// shift, transposition) would break the round trips.
    fn radius(w: usize, h: usize, sp: [f32; 2], xmm: f32, ymm: f32) -> f32 {
        let dx = xmm - w as f32 * 0.55 * sp[0];
        let dy = ymm - h as f32 * 0.45 * sp[1];
        ((dx / 40.0).powi(2) + (dy / 32.0).powi(2)).sqrt()
    }

    const BANDS: [f32; 3] = [0.45, 0.7, 1.0];

    /// The phantom on the native grid: inner ellipse 1 (about 36 x 29 mm), ring 2 (8-10 mm
    /// thick, like myocardium), outer ring 3, background 0.
    fn mask(w: usize, h: usize, sp: [f32; 2]) -> Vec<u8> {
        let mut m = vec![0u8; w * h];
        for y in 0..h {
            for x in 0..w {
                let r = radius(w, h, sp, x as f32 * sp[0], y as f32 * sp[1]);
                m[y * w + x] = BANDS.iter().position(|&t| r < t).map_or(0, |k| k as u8 + 1);
            }
        }
        m
    }

    /// What a good network would output on the model grid for the phantom: soft class
    /// probabilities (logistic in the radius, about 0.5 mm wide), class fastest.
    fn soft_scores(pl: &Placement, sp: [f32; 2]) -> Vec<f32> {
        let sig = |t: f32, r: f32| 1.0 / (1.0 + (-(t - r) / 0.01).exp());
        let mut out = Vec::new();
        for v in 0..pl.size {
            for u in 0..pl.size {
                let (x, y) = pl.to_native(u as f32, v as f32);
                let r = radius(pl.native_width, pl.native_height, sp, x * sp[0], y * sp[1]);
                let s: Vec<f32> = BANDS.iter().map(|&t| sig(t, r)).collect();
                out.extend([1.0 - s[2], s[0], s[1] - s[0], s[2] - s[1]]);
            }
        }
        out
    }

    fn dice(a: &[u8], b: &[u8], class: u8) -> f64 {
        let (mut inter, mut na, mut nb) = (0usize, 0usize, 0usize);
        for (&x, &y) in a.iter().zip(b) {
            na += (x == class) as usize;
            nb += (y == class) as usize;
            inter += (x == class && y == class) as usize;
        }
        2.0 * inter as f64 / (na + nb) as f64
    }

    #[test]
    fn prepare_then_restore_gives_back_the_mask() {
        // Same grid as the native one: the round trip must be exact.
        let (w, h, sp) = (256, 216, [1.37, 1.37]);
        let m = mask(w, h, sp);
        let p = pre(400, 1.37);
        let pl = Placement::new(w, h, sp, &p).unwrap();
        assert_eq!(
            restore_labels(&prepare_labels(&m, w, h, sp, &p).unwrap(), &pl).unwrap(),
            m
        );

        // Anisotropic native pixels, a grid coarser in x and finer in y, crop and pad both.
        for (w, h, sp, p) in [
            (256, 216, [1.37, 1.37], pre(128, 1.5)),
            (120, 180, [1.8, 1.2], pre(144, 1.5)),
        ] {
            let m = mask(w, h, sp);
            let pl = Placement::new(w, h, sp, &p).unwrap();
            // Labels: nearest neighbour there and back.
            let by_nearest =
                restore_labels(&prepare_labels(&m, w, h, sp, &p).unwrap(), &pl).unwrap();
            // Network-like scores on the grid, restored bilinearly, then argmax.
            let by_scores = argmax_restored(&soft_scores(&pl, sp), 4, &pl).unwrap();
            for class in 1..4 {
                let d = dice(&m, &by_scores, class);
                assert!(d > 0.98, "{w}x{h} class {class} via scores: Dice {d}");
                // The rings (classes 2, 3) are only 6-7 pixels wide, and two nearest-neighbour
                // resamplings move each of their edges by up to half a pixel.
                let min = if class == 1 { 0.98 } else { 0.97 };
                let d = dice(&m, &by_nearest, class);
                assert!(d > min, "{w}x{h} class {class} via nearest: Dice {d}");
            }
            let fg = |l: &[u8]| l.iter().map(|&c| (c > 0) as u8).collect::<Vec<_>>();
            let d = dice(&fg(&m), &fg(&by_nearest), 1);
            assert!(d > 0.98, "{w}x{h} foreground via nearest: Dice {d}");
        }
    }

    #[test]
    fn image_and_labels_stay_aligned() {
        let (w, h, sp, p) = (200, 150, [1.3, 1.6], pre(96, 1.5));
        let m = mask(w, h, sp);
        let img = Slice2D {
            width: w,
            height: h,
            spacing: sp,
            data: m.iter().map(|&l| 100.0 + 50.0 * l as f32).collect(),
        };
        let (x, _) = prepare_image(&img, &p).unwrap();
        let l = prepare_labels(&m, w, h, sp, &p).unwrap();
        let agree = x
            .iter()
            .zip(&l)
            .filter(|(&v, &c)| (v * 3.0).round() as u8 == c)
            .count();
        assert!(
            agree as f64 > 0.97 * x.len() as f64,
            "{agree} of {}",
            x.len()
        );
    }

    #[test]
    fn centre_pixel_of_grid_is_centre_of_image() {
        // A single bright pixel at the image centre lands on the grid centre.
        let (w, h) = (101, 81);
        let mut data = vec![0.0f32; w * h];
        data[40 * w + 50] = 10.0;
        let s = Slice2D {
            width: w,
            height: h,
            spacing: [1.0, 1.0],
            data,
        };
        let p = Preprocess {
            normalisation: Normalisation {
                low_percentile: 0.0,
                high_percentile: 100.0,
                ..Default::default()
            },
            ..pre(33, 1.0)
        };
        let (x, pl) = prepare_image(&s, &p).unwrap();
        let argmax = x
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!((argmax % 33, argmax / 33), (16, 16));
        assert_eq!(x[16 * 33 + 16], 1.0);
        assert_eq!(pl.to_native(16.0, 16.0), (50.0, 40.0));
    }

    #[test]
    fn small_images_are_padded_with_zeros() {
        let (w, h) = (20, 10);
        let s = Slice2D {
            width: w,
            height: h,
            spacing: [1.0, 1.0],
            data: (0..w * h).map(|i| 5.0 + (i % 7) as f32).collect(),
        };
        let (x, _) = prepare_image(&s, &pre(32, 1.0)).unwrap();
        // The image covers columns 6..26 and rows 11..21 of the 32x32 grid.
        for v in 0..32 {
            for u in 0..32 {
                let inside = (6..26).contains(&u) && (11..21).contains(&v);
                if !inside {
                    assert_eq!(x[v * 32 + u], 0.0, "padding at ({u},{v})");
                }
            }
        }
        let inside_max = x.iter().cloned().fold(0.0, f32::max);
        assert!(inside_max > 0.9, "image content present");
        let l = prepare_labels(&vec![3; w * h], w, h, [1.0, 1.0], &pre(32, 1.0)).unwrap();
        assert_eq!(l.iter().filter(|&&c| c == 3).count(), w * h);
        assert_eq!(l[11 * 32 + 6], 3);
        assert_eq!(l[10 * 32 + 6], 0);
    }

    #[test]
    fn normalisation_uses_percentiles_and_clips() {
        let data: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        assert_eq!(percentile_window(&data, 1.0, 99.0), (1.0, 99.0));
        let (lo, hi) = percentile_window(&[0.0, 10.0, f32::NAN], 25.0, 50.0);
        assert_eq!((lo, hi), (2.5, 5.0));
        let s = Slice2D {
            width: 101,
            height: 1,
            spacing: [1.0, 1.0],
            data,
        };
        let (x, _) = prepare_image(&s, &pre(101, 1.0)).unwrap();
        // The single native row lands on the middle row of the grid.
        let row = &x[50 * 101..51 * 101];
        assert_eq!(
            (row[0], row[1], row[50], row[99], row[100]),
            (0.0, 0.0, 0.5, 1.0, 1.0)
        );
        assert!(x[..50 * 101].iter().all(|&v| v == 0.0));
        let blank = Slice2D {
            width: 4,
            height: 4,
            spacing: [1.0, 1.0],
            data: vec![7.0; 16],
        };
        assert!(prepare_image(&blank, &pre(8, 1.0))
            .unwrap()
            .0
            .iter()
            .all(|&v| v == 0.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let s = Slice2D {
            width: 4,
            height: 4,
            spacing: [1.0, 1.0],
            data: vec![0.0; 15],
        };
        assert!(matches!(
            prepare_image(&s, &pre(8, 1.0)),
            Err(ImageError::Length { .. })
        ));
        let s = Slice2D {
            data: vec![0.0; 16],
            ..s
        };
        let mut p = pre(8, 1.0);
        p.normalisation.kind = "zscore".into();
        assert!(matches!(
            prepare_image(&s, &p),
            Err(ImageError::Preprocess(_))
        ));
        p.normalisation = Normalisation {
            low_percentile: 99.0,
            high_percentile: 1.0,
            ..Default::default()
        };
        assert!(prepare_image(&s, &p).is_err());
        assert!(prepare_labels(&[0; 3], 2, 2, [1.0, 1.0], &pre(8, 1.0)).is_err());
    }
}
