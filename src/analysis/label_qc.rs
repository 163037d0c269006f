//! Quality control of expert or site contours before anything is trained on them. Contours
//! drawn at a site can be wrong in ways that poison a fine-tune: an epicardium displaced
//! against the image or not enclosing the endocardium, labels swapped between structures, a
//! contour on the wrong phase or slice. Each labelled 2D frame is checked for
//! - **topology**: the LV blood pool must be enclosed by myocardium (the share of its border
//!   that touches background or RV instead is measured), and the RV must not sit inside the
//!   myocardial ring (the share of RV border pixels touching the LV blood pool);
//! - **agreement with the current model**: the mean Dice between the contours and the model's
//!   prediction over the drawn classes; a contour shifted against its image, drawn on another
//!   phase or slice, or with swapped labels disagrees far more than honest contours do.
//!
//! The thresholds ([`QcThresholds::default`]) were chosen on ACDC's expert labels with the
//! shipped model (see `docs/label-qc.md`); a frame beyond any of them is flagged for review,
//! never trained on.

use serde::Serialize;

use super::volume::{BACKGROUND, LV, MYO, RV};

/// Limits beyond which a labelled frame is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QcThresholds {
    /// Largest share of the LV blood pool's border that may touch background or RV.
    pub max_lv_open: f64,
    /// Largest share of the RV's border that may touch the LV blood pool.
    pub max_rv_on_lv: f64,
    /// Smallest mean Dice between the contours and the model over the drawn classes present.
    pub min_model_dice: f64,
    /// Border pixels below which the topology shares are not judged (tiny apical contours).
    pub min_border: usize,
    /// Pixels a class must cover in the contours and in the prediction for its Dice to count:
    /// on small basal and apical contours the model's own misses dominate any Dice.
    pub min_area: usize,
}

impl Default for QcThresholds {
    /// Chosen on ACDC's expert labels, all 100 training patients, 1902 frames, shipped model
    /// (tests/label_qc.rs `calibrate_thresholds_on_all_of_acdc`, 2026-12-03): the LV open share
    /// reaches at most 0.205 (99.5th percentile 0.008), the RV-on-LV share at most 0.009, and the
    /// model Dice falls below 0.5 on 0.3 % of frames (0.5th percentile 0.517, median 0.912).
    /// The limits sit just beyond those, so 6 expert frames of 1902 are flagged for review.
    fn default() -> Self {
        QcThresholds {
            max_lv_open: 0.3,
            max_rv_on_lv: 0.05,
            min_model_dice: 0.5,
            min_border: 12,
            min_area: 150,
        }
    }
}

/// Why a frame was flagged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LabelProblem {
    /// The LV blood pool is not enclosed by myocardium.
    LvNotEnclosed { open_share: f64 },
    /// The RV touches the LV blood pool (e.g. LV and RV swapped, or RV drawn inside the ring).
    RvOnLv { share: f64 },
    /// The contours disagree with the current model.
    ModelDisagrees { mean_dice: f64 },
}

impl LabelProblem {
    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            LabelProblem::LvNotEnclosed { open_share } => format!(
                "LV blood pool not enclosed by myocardium ({:.0} % of its border open)",
                100.0 * open_share
            ),
            LabelProblem::RvOnLv { share } => format!(
                "RV touches the LV blood pool ({:.0} % of its border)",
                100.0 * share
            ),
            LabelProblem::ModelDisagrees { mean_dice } => {
                format!("contours disagree with the current model (mean Dice {mean_dice:.2})")
            }
        }
    }
}

/// The measured quantities of one frame, flagged or not (for choosing thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QcMeasures {
    /// Share of LV border pixels with a background or RV 4-neighbour (None: too small).
    pub lv_open: Option<f64>,
    /// Share of RV border pixels with an LV 4-neighbour (None: too small).
    pub rv_on_lv: Option<f64>,
    /// Mean Dice with the model over drawn classes large enough to judge (None: no model, or
    /// no class covers `min_area` pixels).
    pub model_dice: Option<f64>,
}

/// Share of the border pixels of `class` (pixels with a 4-neighbour of another class) that
/// have a 4-neighbour in `touching`; `None` with fewer than `min_border` border pixels.
/// Pixels outside the image count as background.
fn border_share(
    mask: &[u8],
    w: usize,
    h: usize,
    class: u8,
    touching: &[u8],
    min_border: usize,
) -> Option<f64> {
    let at = |x: isize, y: isize| -> u8 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            BACKGROUND
        } else {
            mask[y as usize * w + x as usize]
        }
    };
    let (mut border, mut hits) = (0usize, 0usize);
    for y in 0..h as isize {
        for x in 0..w as isize {
            if at(x, y) != class {
                continue;
            }
            let n = [at(x - 1, y), at(x + 1, y), at(x, y - 1), at(x, y + 1)];
            if n.iter().all(|v| *v == class) {
                continue;
            }
            border += 1;
            if n.iter().any(|v| touching.contains(v)) {
                hits += 1;
            }
        }
    }
    (border >= min_border).then(|| hits as f64 / border as f64)
}

/// Mean Dice over the drawn foreground classes that cover at least `min_area` pixels both in
/// the contours and in the prediction. Where the model sees nothing (its own misses on basal
/// and apical slices, 3.6 % of ACDC's expert frames) the contours are not doubted; where both
/// see a structure and they barely overlap, the contours are shifted, swapped or misplaced.
pub fn model_dice(
    mask: &[u8],
    predicted: &[u8],
    labelled: &[bool],
    min_area: usize,
) -> Option<f64> {
    let mut dices = Vec::new();
    for class in [LV, MYO, RV] {
        if !labelled.get(class as usize).copied().unwrap_or(false) {
            continue;
        }
        let (mut inter, mut drawn, mut seen) = (0usize, 0usize, 0usize);
        for (a, b) in mask.iter().zip(predicted) {
            let (a, b) = (*a == class, *b == class);
            inter += (a && b) as usize;
            drawn += a as usize;
            seen += b as usize;
        }
        let sum = drawn + seen;
        if drawn >= min_area && seen >= min_area {
            dices.push(2.0 * inter as f64 / sum as f64);
        }
    }
    (!dices.is_empty()).then(|| dices.iter().sum::<f64>() / dices.len() as f64)
}

/// Measures one `w x h` labelled frame; `predicted` is the model's labels for its image.
pub fn measure(
    mask: &[u8],
    w: usize,
    h: usize,
    labelled: &[bool],
    predicted: Option<&[u8]>,
    t: &QcThresholds,
) -> QcMeasures {
    let drawn = |c: u8| labelled.get(c as usize).copied().unwrap_or(false);
    QcMeasures {
        lv_open: (drawn(LV) && drawn(MYO))
            .then(|| border_share(mask, w, h, LV, &[BACKGROUND, RV], t.min_border))
            .flatten(),
        rv_on_lv: (drawn(LV) && drawn(RV))
            .then(|| border_share(mask, w, h, RV, &[LV], t.min_border))
            .flatten(),
        model_dice: predicted.and_then(|p| model_dice(mask, p, labelled, t.min_area)),
    }
}

/// The problems of a measured frame under `t` (empty: fit to train on).
pub fn judge(m: &QcMeasures, t: &QcThresholds) -> Vec<LabelProblem> {
    let mut out = Vec::new();
    if let Some(open_share) = m.lv_open.filter(|v| *v > t.max_lv_open) {
        out.push(LabelProblem::LvNotEnclosed { open_share });
    }
    if let Some(share) = m.rv_on_lv.filter(|v| *v > t.max_rv_on_lv) {
        out.push(LabelProblem::RvOnLv { share });
    }
    if let Some(mean_dice) = m.model_dice.filter(|v| *v < t.min_model_dice) {
        out.push(LabelProblem::ModelDisagrees { mean_dice });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 40x40 short-axis slice: LV disc, myocardial ring, RV crescent to the left.
    fn heart() -> Vec<u8> {
        let (w, h) = (40usize, 40usize);
        let mut m = vec![BACKGROUND; w * h];
        for y in 0..h {
            for x in 0..w {
                let r = ((x as f64 - 24.0).powi(2) + (y as f64 - 20.0).powi(2)).sqrt();
                let rv = ((x as f64 - 10.0).powi(2) + (y as f64 - 20.0).powi(2)).sqrt();
                m[y * w + x] = if r < 6.0 {
                    LV
                } else if r < 10.0 {
                    MYO
                } else if rv < 7.0 {
                    RV
                } else {
                    BACKGROUND
                };
            }
        }
        m
    }

    const ALL: [bool; 4] = [true; 4];

    /// The defaults, with an area floor for this small synthetic heart.
    fn small() -> QcThresholds {
        QcThresholds {
            min_area: 20,
            ..QcThresholds::default()
        }
    }

    #[test]
    fn an_honest_slice_passes_and_agrees_with_itself() {
        let m = heart();
        let t = small();
        let q = measure(&m, 40, 40, &ALL, Some(&m), &t);
        assert_eq!(q.lv_open, Some(0.0));
        assert_eq!(q.rv_on_lv, Some(0.0));
        assert_eq!(q.model_dice, Some(1.0));
        assert!(judge(&q, &t).is_empty());
    }

    #[test]
    fn swapped_lv_and_rv_and_a_missing_ring_are_flagged() {
        let t = small();
        let swapped: Vec<u8> = heart()
            .iter()
            .map(|v| match *v {
                LV => RV,
                RV => LV,
                o => o,
            })
            .collect();
        let p = judge(&measure(&swapped, 40, 40, &ALL, None, &t), &t);
        assert!(
            p.iter()
                .any(|p| matches!(p, LabelProblem::LvNotEnclosed { .. })),
            "{p:?}"
        );
        // Myocardium erased on the right half: the blood pool lies open there.
        let mut open = heart();
        for y in 0..40 {
            for x in 24..40 {
                if open[y * 40 + x] == MYO {
                    open[y * 40 + x] = BACKGROUND;
                }
            }
        }
        let q = measure(&open, 40, 40, &ALL, None, &t);
        assert!(q.lv_open.is_some_and(|v| v > 0.3), "{q:?}");
    }

    #[test]
    fn a_shifted_contour_disagrees_with_the_model() {
        let m = heart();
        let mut shifted = vec![BACKGROUND; m.len()];
        for y in 0..40 {
            for x in 0..40 - 12 {
                shifted[y * 40 + x + 12] = m[y * 40 + x];
            }
        }
        let t = small();
        let q = measure(&shifted, 40, 40, &ALL, Some(&m), &t);
        assert!(q.model_dice.is_some_and(|d| d < 0.5), "{q:?}");
        assert!(judge(&q, &t)
            .iter()
            .any(|p| matches!(p, LabelProblem::ModelDisagrees { .. })));
    }

    #[test]
    fn undrawn_classes_are_not_judged() {
        let m: Vec<u8> = heart()
            .iter()
            .map(|v| if *v == RV { 0 } else { *v })
            .collect();
        let drawn = [true, true, true, false];
        let t = small();
        let q = measure(&m, 40, 40, &drawn, None, &t);
        assert_eq!(q.rv_on_lv, None);
        assert!(q.lv_open.is_some());
    }
}
