//! Plane geometry in patient coordinates (mm): slice normals, projections and bilinear
//! resampling of one image plane onto another. Kept apart from stack assembly so the maths can
//! be tested on its own and reused when writing results back onto the source grid.

use serde::Serialize;

/// A 3-vector in patient coordinates.
pub type Vec3 = [f64; 3];

/// Dot product.
pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cross product.
pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Unit vector, or `None` for a (near) zero vector.
pub fn normalize(a: Vec3) -> Option<Vec3> {
    let n = dot(a, a).sqrt();
    (n > 1e-9).then(|| [a[0] / n, a[1] / n, a[2] / n])
}

/// Row direction (along increasing column index) and column direction of an orientation.
pub fn axes(orientation: &[f64; 6]) -> (Vec3, Vec3) {
    (
        [orientation[0], orientation[1], orientation[2]],
        [orientation[3], orientation[4], orientation[5]],
    )
}

/// Slice normal (row x column direction), `None` when the orientation is degenerate.
pub fn slice_normal(orientation: &[f64; 6]) -> Option<Vec3> {
    let (r, c) = axes(orientation);
    normalize(cross(r, c))
}

/// Angle between two directions in degrees, ignoring sign (a flipped normal is parallel).
pub fn angle_deg(a: Vec3, b: Vec3) -> f64 {
    let (Some(a), Some(b)) = (normalize(a), normalize(b)) else {
        return 90.0;
    };
    dot(a, b).abs().clamp(0.0, 1.0).acos().to_degrees()
}

/// Signed angle in degrees from direction `a` to direction `b` about `axis`.
pub fn signed_angle_deg(a: Vec3, b: Vec3, axis: Vec3) -> f64 {
    let s = dot(cross(a, b), axis);
    let c = dot(a, b);
    s.atan2(c).to_degrees()
}

/// An image plane: a pixel grid placed in patient space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaneGrid {
    /// Rows (height).
    pub rows: usize,
    /// Columns (width).
    pub cols: usize,
    /// Centre of the first pixel (ImagePositionPatient).
    pub position: Vec3,
    /// ImageOrientationPatient.
    pub orientation: [f64; 6],
    /// PixelSpacing [between rows, between columns].
    pub pixel_spacing: [f64; 2],
}

impl PlaneGrid {
    /// Patient coordinates of pixel centre (row, col).
    pub fn world(&self, row: f64, col: f64) -> Vec3 {
        let (rd, cd) = axes(&self.orientation);
        let (dr, dc) = (self.pixel_spacing[0], self.pixel_spacing[1]);
        let mut p = self.position;
        for (k, v) in p.iter_mut().enumerate() {
            *v += rd[k] * dc * col + cd[k] * dr * row;
        }
        p
    }

    /// Fractional (row, col) of the projection of point `p` onto this plane.
    pub fn pixel_of(&self, p: Vec3) -> (f64, f64) {
        let (rd, cd) = axes(&self.orientation);
        let d = [
            p[0] - self.position[0],
            p[1] - self.position[1],
            p[2] - self.position[2],
        ];
        (
            dot(d, cd) / self.pixel_spacing[0],
            dot(d, rd) / self.pixel_spacing[1],
        )
    }

    /// True when both grids have the same size, spacing and in-plane axes (to within 1e-3).
    pub fn same_raster(&self, other: &PlaneGrid) -> bool {
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3);
        self.rows == other.rows
            && self.cols == other.cols
            && close(&self.pixel_spacing, &other.pixel_spacing)
            && close(&self.orientation, &other.orientation)
    }
}

/// Tolerance (in pixels) for positions just outside the source image.
const EDGE: f64 = 1e-3;

/// Resample `src_pixels` (on grid `src`) onto grid `dst` by projecting each destination pixel
/// centre onto the source plane and interpolating bilinearly; points outside the source get 0.
pub fn resample(src_pixels: &[f32], src: &PlaneGrid, dst: &PlaneGrid) -> Vec<f32> {
    let mut out = vec![0.0f32; dst.rows * dst.cols];
    let at = |r: usize, c: usize| src_pixels.get(r * src.cols + c).copied().unwrap_or(0.0);
    for r in 0..dst.rows {
        for c in 0..dst.cols {
            let (sr, sc) = src.pixel_of(dst.world(r as f64, c as f64));
            // Points a rounding error outside the edge belong to the edge pixel.
            let (max_r, max_c) = ((src.rows - 1) as f64, (src.cols - 1) as f64);
            if sr < -EDGE || sc < -EDGE || sr > max_r + EDGE || sc > max_c + EDGE {
                continue;
            }
            let (sr, sc) = (sr.clamp(0.0, max_r), sc.clamp(0.0, max_c));
            let (r0, c0) = (sr.floor() as usize, sc.floor() as usize);
            let (r1, c1) = ((r0 + 1).min(src.rows - 1), (c0 + 1).min(src.cols - 1));
            let (fr, fc) = ((sr - r0 as f64) as f32, (sc - c0 as f64) as f32);
            let top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc;
            let bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc;
            if let Some(o) = out.get_mut(r * dst.cols + c) {
                *o = top * (1.0 - fr) + bottom * fr;
            }
        }
    }
    out
}

/// Percentage of the pixel centres of `dst` that fall outside the image `src` when projected onto
/// it, by the same edge rule [`resample`] uses: the share of the resampled image that would be
/// zero padding rather than data. 0 when `src` covers `dst`.
pub fn outside_percent(src: &PlaneGrid, dst: &PlaneGrid) -> f64 {
    let total = dst.rows * dst.cols;
    if total == 0 {
        return 0.0;
    }
    if src.rows == 0 || src.cols == 0 {
        return 100.0;
    }
    let (max_r, max_c) = ((src.rows - 1) as f64, (src.cols - 1) as f64);
    let mut outside = 0usize;
    for r in 0..dst.rows {
        for c in 0..dst.cols {
            let (sr, sc) = src.pixel_of(dst.world(r as f64, c as f64));
            if sr < -EDGE || sc < -EDGE || sr > max_r + EDGE || sc > max_c + EDGE {
                outside += 1;
            }
        }
    }
    100.0 * outside as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(orientation: [f64; 6], position: Vec3) -> PlaneGrid {
        PlaneGrid {
            rows: 8,
            cols: 8,
            position,
            orientation,
            pixel_spacing: [1.0, 1.0],
        }
    }

    #[test]
    fn resample_onto_itself_is_identity() {
        let g = grid([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0; 3]);
        let px: Vec<f32> = (0..64).map(|i| i as f32).collect();
        assert_eq!(resample(&px, &g, &g), px);
    }

    #[test]
    fn resample_undoes_a_90_degree_in_plane_rotation() {
        let dst = grid([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0; 3]);
        // Source rows run along +y and columns along -x, starting at the far corner so that
        // both grids cover the same square.
        let src = grid([0.0, 1.0, 0.0, -1.0, 0.0, 0.0], [7.0, 0.0, 0.0]);
        let px: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let out = resample(&px, &src, &dst);
        for r in 0..8 {
            for c in 0..8 {
                let (sr, sc) = src.pixel_of(dst.world(r as f64, c as f64));
                let expect = px[sr.round() as usize * 8 + sc.round() as usize];
                assert_eq!(out[r * 8 + c], expect, "pixel ({r},{c})");
            }
        }
        assert_eq!(
            slice_normal(&src.orientation).map(|n| angle_deg(n, [0.0, 0.0, 1.0])),
            Some(0.0)
        );
    }

    #[test]
    fn outside_percent_measures_padding() {
        let a = grid([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0; 3]);
        assert_eq!(outside_percent(&a, &a), 0.0);
        // A 4x8 source covers the top half of the 8x8 grid only.
        let half = PlaneGrid {
            rows: 4,
            ..a.clone()
        };
        assert_eq!(outside_percent(&half, &a), 50.0);
        // A coarser source with a larger field of view covers the finer grid.
        let coarse = PlaneGrid {
            pixel_spacing: [1.2, 1.2],
            ..a.clone()
        };
        assert_eq!(outside_percent(&coarse, &a), 0.0);
        assert!(outside_percent(&a, &coarse) > 0.0);
    }
}
