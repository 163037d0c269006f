//! Geometry between a native slice and the model's square grid, and the samplers that move
//! pixels both ways.
//!
//! The grid has `size x size` pixels of `spacing_mm`; its centre sits on the centre of the
//! native image (the heart is near the centre of a short-axis acquisition), so one mapping does
//! resampling and centre crop/pad at once, without an intermediate image. Pixel centres are at
//! integer coordinates and pixel `i` covers `[i - 0.5, i + 0.5)`:
//!
//! ```text
//! x_native = (W - 1) / 2 + (u - (size - 1) / 2) * spacing_mm / spacing_x    (same for y, v)
//! ```

use super::ImageError;
use crate::nn::Preprocess;

/// Where the model's grid lies on a native slice; returned by `prepare_image` and needed to
/// bring the network's output back onto the scanner's pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub native_width: usize,
    pub native_height: usize,
    /// Native pixel size (x, y) in mm.
    pub native_spacing: [f32; 2],
    /// Side of the model grid in pixels.
    pub size: usize,
    /// Pixel size of the model grid in mm.
    pub spacing_mm: f32,
}

impl Placement {
    /// The placement of `p`'s grid on a `width x height` slice of the given spacing.
    pub fn new(
        width: usize,
        height: usize,
        spacing: [f32; 2],
        p: &Preprocess,
    ) -> Result<Self, ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::Geometry(format!(
                "empty image {width}x{height}"
            )));
        }
        if spacing.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(ImageError::Geometry(format!(
                "pixel spacing {spacing:?} mm"
            )));
        }
        if p.size == 0 || !p.spacing_mm.is_finite() || p.spacing_mm <= 0.0 {
            return Err(ImageError::Preprocess(format!(
                "size {} with spacing {} mm",
                p.size, p.spacing_mm
            )));
        }
        Ok(Placement {
            native_width: width,
            native_height: height,
            native_spacing: spacing,
            size: p.size,
            spacing_mm: p.spacing_mm,
        })
    }

    /// Native pixel coordinates of grid position (u, v).
    pub fn to_native(&self, u: f32, v: f32) -> (f32, f32) {
        let c = (self.size as f32 - 1.0) / 2.0;
        let x = (self.native_width as f32 - 1.0) / 2.0
            + (u - c) * self.spacing_mm / self.native_spacing[0];
        let y = (self.native_height as f32 - 1.0) / 2.0
            + (v - c) * self.spacing_mm / self.native_spacing[1];
        (x, y)
    }

    /// Grid coordinates of native pixel position (x, y); the inverse of [`Placement::to_native`].
    pub fn to_grid(&self, x: f32, y: f32) -> (f32, f32) {
        let c = (self.size as f32 - 1.0) / 2.0;
        let u = c
            + (x - (self.native_width as f32 - 1.0) / 2.0) * self.native_spacing[0]
                / self.spacing_mm;
        let v = c
            + (y - (self.native_height as f32 - 1.0) / 2.0) * self.native_spacing[1]
                / self.spacing_mm;
        (u, v)
    }

    /// Pixels of the native slice.
    pub fn native_len(&self) -> usize {
        self.native_width * self.native_height
    }

    /// Pixels of the model grid.
    pub fn grid_len(&self) -> usize {
        self.size * self.size
    }
}

/// Interpolation weights for one output coordinate along one axis: precomputed per row and
/// column because the mapping is separable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tap {
    pub i0: usize,
    pub i1: usize,
    /// Weight of `i1` (linear) ; `i0` gets `1 - f`.
    pub f: f32,
    /// Nearest source index.
    pub nearest: usize,
    /// Whether the position lies on the source image at all (else: padding).
    pub inside: bool,
}

/// Taps for `n_out` output positions whose source coordinates are `pos(i)` on an axis of
/// `n_in` pixels. Positions within half a pixel of the edge are clamped to the edge pixel.
pub(crate) fn taps(n_out: usize, n_in: usize, pos: impl Fn(f32) -> f32) -> Vec<Tap> {
    let last = n_in as f32 - 1.0;
    (0..n_out)
        .map(|i| {
            let x = pos(i as f32);
            let inside = x >= -0.5 && x < last + 0.5;
            let xc = x.clamp(0.0, last);
            let i0 = (xc.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            let nearest = ((x + 0.5).floor().clamp(0.0, last)) as usize;
            Tap {
                i0,
                i1,
                f: xc - i0 as f32,
                nearest,
                inside,
            }
        })
        .collect()
}

fn check_len(what: &str, got: usize, expected: usize) -> Result<(), ImageError> {
    if got != expected {
        return Err(ImageError::Length {
            what: what.into(),
            got,
            expected,
        });
    }
    Ok(())
}

/// Brings per-class scores from the model grid back to the native grid by bilinear
/// interpolation. `scores` holds `size * size * classes` values, class fastest; the result holds
/// `native_width * native_height * classes`, class fastest.
///
/// Scores should be probabilities (softmax output): native pixels outside the model grid get
/// background probability 1 and 0 for every other class, since the crop is chosen to contain
/// the heart.
pub fn restore_scores(
    scores: &[f32],
    classes: usize,
    pl: &Placement,
) -> Result<Vec<f32>, ImageError> {
    if classes == 0 {
        return Err(ImageError::Geometry("zero classes".into()));
    }
    check_len(
        "scores on the model grid",
        scores.len(),
        pl.grid_len() * classes,
    )?;
    let n = pl.size;
    let tx = taps(pl.native_width, n, |x| pl.to_grid(x, 0.0).0);
    let ty = taps(pl.native_height, n, |y| pl.to_grid(0.0, y).1);
    let mut out = vec![0.0f32; pl.native_len() * classes];
    for (y, ty) in ty.iter().enumerate() {
        for (x, tx) in tx.iter().enumerate() {
            let o = &mut out[(y * pl.native_width + x) * classes..][..classes];
            if !(tx.inside && ty.inside) {
                o[0] = 1.0;
                continue;
            }
            let at = |yy: usize, xx: usize| &scores[(yy * n + xx) * classes..][..classes];
            let (a, b, c, d) = (
                at(ty.i0, tx.i0),
                at(ty.i0, tx.i1),
                at(ty.i1, tx.i0),
                at(ty.i1, tx.i1),
            );
            let (fx, fy) = (tx.f, ty.f);
            for k in 0..classes {
                let top = a[k] + (b[k] - a[k]) * fx;
                let bottom = c[k] + (d[k] - c[k]) * fx;
                o[k] = top + (bottom - top) * fy;
            }
        }
    }
    Ok(out)
}

/// The most likely class of every native pixel: [`restore_scores`] then argmax (ties go to the
/// lower class). This is smoother than restoring hard labels when the native grid is finer.
pub fn argmax_restored(
    scores: &[f32],
    classes: usize,
    pl: &Placement,
) -> Result<Vec<u8>, ImageError> {
    if classes > 256 {
        return Err(ImageError::Geometry(format!(
            "{classes} classes do not fit in u8 labels"
        )));
    }
    let native = restore_scores(scores, classes, pl)?;
    Ok(native
        .chunks_exact(classes)
        .map(|s| {
            let mut best = 0;
            for (k, &v) in s.iter().enumerate().skip(1) {
                if v > s[best] {
                    best = k;
                }
            }
            best as u8
        })
        .collect())
}

/// Brings a label map (`size * size`) from the model grid back to the native grid by nearest
/// neighbour; native pixels outside the model grid are background (0).
pub fn restore_labels(labels: &[u8], pl: &Placement) -> Result<Vec<u8>, ImageError> {
    check_len("labels on the model grid", labels.len(), pl.grid_len())?;
    let n = pl.size;
    let tx = taps(pl.native_width, n, |x| pl.to_grid(x, 0.0).0);
    let ty = taps(pl.native_height, n, |y| pl.to_grid(0.0, y).1);
    let mut out = Vec::with_capacity(pl.native_len());
    for ty in &ty {
        for tx in &tx {
            out.push(if tx.inside && ty.inside {
                labels[ty.nearest * n + tx.nearest]
            } else {
                0
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(size: usize, spacing_mm: f32) -> Preprocess {
        Preprocess {
            spacing_mm,
            size,
            ..Preprocess::default()
        }
    }

    #[test]
    fn centre_maps_to_centre_and_inverse_holds() {
        for (w, h, sp, p) in [
            (256, 216, [1.37, 1.37], pre(160, 1.5)),
            (100, 90, [2.0, 1.0], pre(128, 1.25)),
        ] {
            let pl = Placement::new(w, h, sp, &p).unwrap();
            let c = (p.size as f32 - 1.0) / 2.0;
            let (x, y) = pl.to_native(c, c);
            assert!(
                (x - (w as f32 - 1.0) / 2.0).abs() < 1e-4
                    && (y - (h as f32 - 1.0) / 2.0).abs() < 1e-4
            );
            for (u, v) in [(0.0, 0.0), (17.5, 93.0), (c, 3.0)] {
                let (x, y) = pl.to_native(u, v);
                let (u2, v2) = pl.to_grid(x, y);
                assert!((u - u2).abs() < 1e-3 && (v - v2).abs() < 1e-3);
            }
            // One grid step is spacing_mm of physical distance.
            let (x0, _) = pl.to_native(0.0, 0.0);
            let (x1, _) = pl.to_native(1.0, 0.0);
            assert!(((x1 - x0) * sp[0] - p.spacing_mm).abs() < 1e-4);
        }
    }

    #[test]
    fn taps_flag_padding_and_clamp_edges() {
        let t = taps(5, 3, |i| i - 1.0); // source positions -1, 0, 1, 2, 3
        assert_eq!(
            t.iter().map(|t| t.inside).collect::<Vec<_>>(),
            vec![false, true, true, true, false]
        );
        assert_eq!((t[3].i0, t[3].i1, t[3].f), (2, 2, 0.0));
        let t = taps(1, 4, |_| 1.25);
        assert_eq!((t[0].i0, t[0].i1, t[0].nearest), (1, 2, 1));
        assert!((t[0].f - 0.25).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(Placement::new(0, 5, [1.0, 1.0], &pre(16, 1.0)).is_err());
        assert!(Placement::new(5, 5, [f32::NAN, 1.0], &pre(16, 1.0)).is_err());
        assert!(Placement::new(5, 5, [1.0, 1.0], &pre(0, 1.0)).is_err());
        let pl = Placement::new(5, 5, [1.0, 1.0], &pre(4, 1.0)).unwrap();
        assert!(restore_scores(&[0.0; 15], 1, &pl).is_err());
        assert!(restore_labels(&[0; 15], &pl).is_err());
    }

    #[test]
    fn outside_the_grid_is_background() {
        // A 1 mm grid of 4 pixels on a 10-pixel native row: native pixels far from the centre
        // lie outside it.
        let pl = Placement::new(10, 1, [1.0, 1.0], &pre(4, 1.0)).unwrap();
        let scores: Vec<f32> = (0..16).flat_map(|_| [0.0, 1.0]).collect();
        let r = restore_scores(&scores, 2, &pl).unwrap();
        assert_eq!(&r[..2], &[1.0, 0.0]);
        assert_eq!(&r[2 * 4..2 * 5], &[0.0, 1.0]);
        let l = restore_labels(&[2; 16], &pl).unwrap();
        assert_eq!(l, vec![0, 0, 0, 2, 2, 2, 2, 0, 0, 0]);
    }
}
