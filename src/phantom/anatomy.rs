//! Geometry of the synthetic chest: which tissue lies at a point in mm, for one cardiac phase.
//!
//! Coordinates: x to the image right, y down the image, z along the stack from base to apex,
//! origin at the image centre and the top of the first slice. The layout follows ACDC's
//! stored arrays (first NIfTI axis as columns), which a model trained on ACDC has seen: lungs
//! above the heart, liver below, the RV to the left of and below the LV. The
//! LV is a truncated half-ellipsoid whose flat base lies on a slice boundary (so the cut is
//! sampled exactly and label volumes match the analytic ones); the myocardium is the shell
//! between it and a larger half-ellipsoid; the RV is a crescent: an ellipsoid anchored on the
//! septum minus the LV. Contraction shrinks the LV radially and longitudinally (the apex rises
//! towards the fixed base) and thickens the wall so the basal myocardial area is conserved.

use crate::analysis::volume::{BACKGROUND, LV, MYO, RV};

/// What a point is made of; decides both intensity and label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tissue {
    Air,
    Soft,
    Fat,
    Muscle,
    Lung,
    Liver,
    Bone,
    VesselBlood,
    AtrialBlood,
    LvBlood,
    Papillary,
    Myocardium,
    RvBlood,
    RvWall,
}

impl Tissue {
    /// bSSFP-like signal relative to blood: blood ~3x myocardium, fat bright, lungs dark.
    pub(super) fn signal(self) -> f64 {
        match self {
            Tissue::Air => 0.0,
            Tissue::Lung => 0.05,
            Tissue::Bone => 0.22,
            Tissue::Muscle | Tissue::RvWall => 0.30,
            Tissue::Myocardium | Tissue::Papillary => 0.33,
            Tissue::Liver => 0.28,
            Tissue::Soft => 0.42,
            Tissue::Fat => 0.85,
            Tissue::VesselBlood | Tissue::AtrialBlood => 0.92,
            Tissue::LvBlood | Tissue::RvBlood => 1.0,
        }
    }

    /// Ground-truth class in cineseg's order; papillary muscles count as LV blood pool, as in
    /// ACDC's reference contours.
    pub(super) fn label(self) -> u8 {
        match self {
            Tissue::LvBlood | Tissue::Papillary => LV,
            Tissue::Myocardium => MYO,
            Tissue::RvBlood => RV,
            _ => BACKGROUND,
        }
    }
}

/// Heart shape and pose that do not change over the cycle (all lengths in mm).
#[derive(Clone, Debug)]
pub(super) struct Heart {
    /// LV axis position in the image plane.
    pub centre: [f64; 2],
    /// In-plane rotation of the heart in radians.
    pub angle: f64,
    /// z of the basal plane (a slice boundary).
    pub base_z: f64,
    /// End-diastolic cavity semi-axes along the heart's x and y, and long axis.
    pub ed_axes: [f64; 3],
    /// End-diastolic wall thickness.
    pub ed_wall: f64,
    /// RV cross-section semi-axes at end-diastole (before the RV scale).
    pub rv_axes: [f64; 2],
    /// RV long axis as a fraction of the LV's.
    pub rv_length: f64,
    /// Longitudinal shortening at end-systole (fraction).
    pub long_shortening: f64,
}

/// The heart at one instant of the cycle.
#[derive(Clone, Debug)]
pub(super) struct HeartPhase {
    pub axes: [f64; 3],
    pub wall: f64,
    pub rv_scale: f64,
    /// Sine and cosine of the heart's rotation, hoisted out of the per-pixel code.
    sin: f64,
    cos: f64,
    /// Radius of the region the heart can occupy (see [`Heart::reach`]).
    reach: f64,
}

impl HeartPhase {
    /// The same pose with another RV scale (used by the RV calibration).
    pub(super) fn with_rv_scale(&self, heart: &Heart, rv_scale: f64) -> HeartPhase {
        let mut h = HeartPhase {
            rv_scale,
            ..self.clone()
        };
        h.reach = heart.reach(&h);
        h
    }
}

impl Heart {
    /// Pose at cycle weight `w` (0 at ED, 1 at ES) for an LV ejection fraction `ef` and an RV
    /// scale `rv_scale` (found by calibration in the generator).
    pub(super) fn at(&self, w: f64, ef: f64, rv_scale: f64) -> HeartPhase {
        let [a, b, c] = self.ed_axes;
        let s_long = 1.0 - self.long_shortening * w;
        let s_rad = ((1.0 - ef * w) / s_long).sqrt();
        let (ax, by) = (a * s_rad, b * s_rad);
        // Wall thickness t solves t (t + ax + by) = t0 (t0 + a + b): constant basal wall area.
        let m = self.ed_wall * (self.ed_wall + a + b);
        let sum = ax + by;
        let wall = 0.5 * (-sum + (sum * sum + 4.0 * m).sqrt());
        let (sin, cos) = self.angle.sin_cos();
        let mut h = HeartPhase {
            axes: [ax, by, c * s_long],
            wall,
            rv_scale,
            sin,
            cos,
            reach: 0.0,
        };
        h.reach = self.reach(&h);
        h
    }

    /// Analytic LV cavity volume in ml (half-ellipsoid).
    pub(super) fn lv_volume_ml(&self, h: &HeartPhase) -> f64 {
        2.0 / 3.0 * std::f64::consts::PI * h.axes[0] * h.axes[1] * h.axes[2] / 1000.0
    }

    /// Radius around the LV axis beyond which [`Heart::tissue`] is always `None`, so callers
    /// can skip the far field: the RV ellipse reaches e (0.55 + 2.35 scale) plus wall and fat,
    /// the atria about 2.1 a + 2.5.
    pub(super) fn reach(&self, h: &HeartPhase) -> f64 {
        let e = self.ed_axes[0].max(self.ed_axes[1]) + self.ed_wall;
        let rv = e * (0.55 + 2.35 * h.rv_scale) + 3.0 + 4.5;
        let lv = h.axes[0].max(h.axes[1]) + h.wall + 4.5;
        let atria = 2.1 * self.ed_axes[0] + 2.5;
        rv.max(lv).max(atria) + 1.0
    }

    /// Tissue of the heart at (x, y, z) in mm, or `None` where the heart is not.
    pub(super) fn tissue(&self, h: &HeartPhase, x: f64, y: f64, z: f64) -> Option<Tissue> {
        let (dx, dy) = (x - self.centre[0], y - self.centre[1]);
        if dx * dx + dy * dy > h.reach * h.reach {
            return None;
        }
        let (sn, cs) = (h.sin, h.cos);
        let (u, v) = (cs * dx + sn * dy, -sn * dx + cs * dy);
        let depth = z - self.base_z;
        if depth < 0.0 {
            return self.atria(u, v);
        }
        let [ax, by, c] = h.axes;
        let t = h.wall;
        // Cavity and epicardium cross-sections at this depth (factor of the basal radii).
        let q_endo = profile(depth / c);
        let q_epi = profile(depth / (c + 0.8 * t));
        let in_endo = q_endo > 0.0 && ellipse(u, v, ax * q_endo, by * q_endo) <= 1.0;
        if in_endo {
            return Some(
                self.papillary(h, u, v, depth, q_endo)
                    .unwrap_or(Tissue::LvBlood),
            );
        }
        let epi_ax = [(ax + t) * q_epi, (by + t) * q_epi];
        if q_epi > 0.0 && ellipse(u, v, epi_ax[0], epi_ax[1]) <= 1.0 {
            return Some(Tissue::Myocardium);
        }
        // RV: an ellipse wrapped around the LV's left side, its right end fixed inside the LV
        // so that what lies outside the LV is a crescent; contraction moves the free wall in.
        let q_rv = profile(depth / (self.rv_length * c));
        if q_rv > 0.0 {
            let (rx, ry) = (
                self.rv_axes[0] * h.rv_scale * q_rv,
                self.rv_axes[1] * h.rv_scale * q_rv,
            );
            let e = (self.ed_axes[0] + self.ed_wall) * q_rv;
            let (cu, cv) = (0.55 * e - rx, -0.12 * e);
            if ellipse(u - cu, v - cv, rx, ry) <= 1.0 {
                return Some(Tissue::RvBlood);
            }
            if ellipse(u - cu, v - cv, rx + 3.0, ry + 3.0) <= 1.0 {
                return Some(Tissue::RvWall);
            }
            // Epicardial fat, thicker along the anterior and inferior grooves.
            let fat = 2.0 + 2.5 * (2.0 * v.atan2(u)).cos().abs();
            if ellipse(u - cu, v - cv, rx + 3.0 + fat, ry + 3.0 + fat) <= 1.0
                || (q_epi > 0.0 && ellipse(u, v, epi_ax[0] + fat, epi_ax[1] + fat) <= 1.0)
            {
                return Some(Tissue::Fat);
            }
        } else if q_epi > 0.0 && ellipse(u, v, epi_ax[0] + 3.0, epi_ax[1] + 3.0) <= 1.0 {
            return Some(Tissue::Fat);
        }
        None
    }

    /// Two papillary muscles in the mid-ventricular third, dark spots inside the bright cavity.
    fn papillary(&self, h: &HeartPhase, u: f64, v: f64, depth: f64, q: f64) -> Option<Tissue> {
        let rel = depth / h.axes[2];
        if !(0.25..=0.75).contains(&rel) {
            return None;
        }
        let r = 3.5 * (1.0 + 0.3 * (1.0 - h.axes[0] / self.ed_axes[0]));
        for angle in [0.6_f64, 2.0] {
            let (pu, pv) = (
                0.62 * h.axes[0] * q * angle.cos(),
                0.62 * h.axes[1] * q * angle.sin(),
            );
            if (u - pu).powi(2) + (v - pv).powi(2) <= r * r {
                return Some(Tissue::Papillary);
            }
        }
        None
    }

    /// Above the basal plane: left and right atria and the aortic root, unlabelled.
    fn atria(&self, u: f64, v: f64) -> Option<Tissue> {
        let a = self.ed_axes[0];
        let blobs = [
            (0.1 * a, 0.2 * a, 0.8 * a, 0.7 * a),
            (-1.2 * a, 0.0, 0.9 * a, 0.8 * a),
            (-0.3 * a, -0.9 * a, 0.45 * a, 0.45 * a),
        ];
        for (cu, cv, ru, rv) in blobs {
            if ellipse(u - cu, v - cv, ru, rv) <= 1.0 {
                return Some(Tissue::AtrialBlood);
            }
            if ellipse(u - cu, v - cv, ru + 2.5, rv + 2.5) <= 1.0 {
                return Some(Tissue::Muscle);
            }
        }
        None
    }
}

/// Cross-section scale of a half-ellipsoid at relative depth `r` (1 at the base, 0 at the
/// tip); negative outside.
fn profile(r: f64) -> f64 {
    if (0.0..=1.0).contains(&r) {
        (1.0 - r * r).sqrt()
    } else {
        -1.0
    }
}

/// Normalised ellipse radius squared (<= 1 inside); degenerate ellipses contain nothing.
fn ellipse(u: f64, v: f64, a: f64, b: f64) -> f64 {
    if a <= 0.0 || b <= 0.0 {
        return f64::INFINITY;
    }
    (u / a).powi(2) + (v / b).powi(2)
}

/// The chest around the heart at (x, y, z) mm: body outline, subcutaneous fat, muscle, lungs
/// (above the heart), liver (below it, growing towards the apex), descending aorta and spine
/// (to the right). `depth_frac` is z over the stack
/// length, so the liver rises into the apical slices.
pub(super) fn surroundings(x: f64, y: f64, depth_frac: f64, body: [f64; 2]) -> Tissue {
    let (bx, by) = (body[0], body[1]);
    let r_body = ellipse(x, y - 10.0, bx, by);
    if r_body > 1.0 {
        return Tissue::Air;
    }
    if ellipse(x, y - 10.0, bx - 12.0, by - 12.0) > 1.0 {
        return Tissue::Fat;
    }
    if ellipse(x, y - 10.0, bx - 24.0, by - 22.0) > 1.0 {
        return Tissue::Muscle;
    }
    if (x - 85.0).powi(2) + (y - 40.0).powi(2) <= 17.0f64.powi(2) {
        return Tissue::Bone;
    }
    if (x - 58.0).powi(2) + (y - 32.0).powi(2) <= 11.0f64.powi(2) {
        return Tissue::VesselBlood;
    }
    let liver_r = 25.0 + 30.0 * ((depth_frac - 0.3) / 0.7).clamp(0.0, 1.0);
    if depth_frac > 0.3 && ellipse(x + 10.0, y - 80.0, liver_r * 1.8, liver_r) <= 1.0 {
        return Tissue::Liver;
    }
    // The lungs reach the heart (which is drawn over them), as in a real chest.
    let lung_scale = 1.0 - 0.25 * depth_frac;
    if ellipse(x - 10.0, y + 70.0, 95.0 * lung_scale, 45.0 * lung_scale) <= 1.0
        || ellipse(x - 80.0, y + 10.0, 32.0 * lung_scale, 55.0 * lung_scale) <= 1.0
    {
        return Tissue::Lung;
    }
    Tissue::Soft
}
