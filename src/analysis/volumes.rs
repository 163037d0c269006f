//! Ventricular volumes and function from segmented phases: the numbers a cardiologist reads.
//!
//! Volumes are voxel count x voxel volume (the slice spacing standing in for the thickness,
//! the convention of ACDC and most clinical software, "Simpson's method" on a slice stack).
//! End-diastole is the phase of largest LV volume and end-systole the smallest: the first
//! frame is not necessarily ED (Sunnybrook series end at ED, prospective triggering may
//! start anywhere), so the phases are found, never assumed. RV values are read at the same
//! ED and ES phases, as ACDC and most reporting do, so LV and RV stroke volumes compare.

use super::error::AnalysisError;
use super::volume::{LabelVolume, LV, MYO, RV};
use serde::{Deserialize, Serialize};

/// Density of myocardium in g/ml, used to turn MYO volume into LV mass.
pub const MYOCARDIAL_DENSITY_G_PER_ML: f64 = 1.05;

/// Volume of `class` in ml.
pub fn class_volume_ml(vol: &LabelVolume, class: u8) -> f64 {
    vol.count(class) as f64 * vol.voxel_volume_ml()
}

/// Volumes of one phase, in ml.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseVolumes {
    /// LV blood pool.
    pub lv_ml: f64,
    /// LV myocardium.
    pub myo_ml: f64,
    /// RV blood pool.
    pub rv_ml: f64,
}

impl PhaseVolumes {
    /// Myocardial mass (g): the one place MYO volume becomes mass.
    pub fn myo_mass_g(&self) -> f64 {
        self.myo_ml * MYOCARDIAL_DENSITY_G_PER_ML
    }

    /// Measures one phase.
    pub fn of(vol: &LabelVolume) -> Self {
        PhaseVolumes {
            lv_ml: class_volume_ml(vol, LV),
            myo_ml: class_volume_ml(vol, MYO),
            rv_ml: class_volume_ml(vol, RV),
        }
    }
}

/// Clinical summary of a cine study (all volumes in ml, mass in g, fractions in percent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardiacSummary {
    /// Number of phases measured.
    pub phases: usize,
    /// LV blood-pool volume per phase (the volume curve).
    pub lv_curve_ml: Vec<f64>,
    /// RV blood-pool volume per phase.
    pub rv_curve_ml: Vec<f64>,
    /// Myocardial volume per phase.
    pub myo_curve_ml: Vec<f64>,
    /// Index of the end-diastolic phase (largest LV volume).
    pub ed_phase: usize,
    /// Index of the end-systolic phase (smallest LV volume).
    pub es_phase: usize,
    /// LV end-diastolic volume.
    pub lv_edv_ml: f64,
    /// LV end-systolic volume.
    pub lv_esv_ml: f64,
    /// LV stroke volume (EDV - ESV).
    pub lv_sv_ml: f64,
    /// LV ejection fraction, 100 (EDV-ESV)/EDV; `None` when EDV is 0.
    pub lv_ef_percent: Option<f64>,
    /// LV mass at end-diastole (MYO volume x 1.05 g/ml).
    pub lv_mass_g: f64,
    /// RV end-diastolic volume (at the LV's ED phase).
    pub rv_edv_ml: f64,
    /// RV end-systolic volume (at the LV's ES phase).
    pub rv_esv_ml: f64,
    /// RV stroke volume.
    pub rv_sv_ml: f64,
    /// RV ejection fraction in percent; `None` when RVEDV is 0.
    pub rv_ef_percent: Option<f64>,
}

/// Measures every phase of a cine study and derives ED, ES and function.
pub fn summarize(phases: &[LabelVolume]) -> Result<CardiacSummary, AnalysisError> {
    let first = phases
        .first()
        .ok_or_else(|| AnalysisError::Empty("no phases to measure".into()))?;
    first.check_spacing()?;
    for p in &phases[1..] {
        first.check_same_grid(p)?;
    }
    let v: Vec<PhaseVolumes> = phases.iter().map(PhaseVolumes::of).collect();
    summarize_volumes(&v)
}

/// Same as [`summarize`] from volumes already measured, e.g. when phases were streamed and
/// dropped, or only the ED and ES frames of a study are labelled.
pub fn summarize_volumes(v: &[PhaseVolumes]) -> Result<CardiacSummary, AnalysisError> {
    if v.is_empty() {
        return Err(AnalysisError::Empty("no phase volumes".into()));
    }
    let lv: Vec<f64> = v.iter().map(|p| p.lv_ml).collect();
    let ed = arg_extreme(&lv, |a, b| a > b);
    let es = arg_extreme(&lv, |a, b| a < b);
    Ok(summary_at(v, ed, es))
}

/// Summary with ED and ES given (e.g. from the DICOM trigger times or ACDC's Info.cfg), for
/// comparing against references that fixed the phases themselves.
pub fn summarize_at(
    v: &[PhaseVolumes],
    ed_phase: usize,
    es_phase: usize,
) -> Result<CardiacSummary, AnalysisError> {
    if ed_phase >= v.len() || es_phase >= v.len() {
        return Err(AnalysisError::Shape(format!(
            "ED {ed_phase} / ES {es_phase} outside {} phases",
            v.len()
        )));
    }
    Ok(summary_at(v, ed_phase, es_phase))
}

/// Ejection fraction in percent, `100 (EDV - ESV) / EDV`: the one place the formula lives
/// (the report, the SR, the daemon and `cineseg eval` all use it). `None` for an empty
/// end-diastolic volume, where it is undefined.
pub fn ejection_fraction(edv_ml: f64, esv_ml: f64) -> Option<f64> {
    (edv_ml > 0.0).then(|| 100.0 * (edv_ml - esv_ml) / edv_ml)
}

fn summary_at(v: &[PhaseVolumes], ed: usize, es: usize) -> CardiacSummary {
    let (ped, pes) = (v[ed], v[es]);
    let ef = ejection_fraction;
    CardiacSummary {
        phases: v.len(),
        lv_curve_ml: v.iter().map(|p| p.lv_ml).collect(),
        rv_curve_ml: v.iter().map(|p| p.rv_ml).collect(),
        myo_curve_ml: v.iter().map(|p| p.myo_ml).collect(),
        ed_phase: ed,
        es_phase: es,
        lv_edv_ml: ped.lv_ml,
        lv_esv_ml: pes.lv_ml,
        lv_sv_ml: ped.lv_ml - pes.lv_ml,
        lv_ef_percent: ef(ped.lv_ml, pes.lv_ml),
        lv_mass_g: ped.myo_mass_g(),
        rv_edv_ml: ped.rv_ml,
        rv_esv_ml: pes.rv_ml,
        rv_sv_ml: ped.rv_ml - pes.rv_ml,
        rv_ef_percent: ef(ped.rv_ml, pes.rv_ml),
    }
}

/// Index of the first value that beats all others under `better` (first wins ties, so the
/// choice is deterministic).
fn arg_extreme(v: &[f64], better: impl Fn(f64, f64) -> bool) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if better(x, v[best]) {
            best = i;
        }
    }
    best
}

/// Agreement of a measurement with a reference over many studies (Bland-Altman style), the
/// figures `cineseg eval` reports for EDV, ESV, EF and mass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Mean |pred - truth|.
    pub mean_abs_error: f64,
    /// Mean (pred - truth): positive means the method over-estimates.
    pub bias: f64,
    /// Pearson correlation; `None` with fewer than 2 pairs or a constant series.
    pub pearson_r: Option<f64>,
    /// Number of pairs used.
    pub n: usize,
}

/// Agreement over the pairs `(pred[i], truth[i])`. Pairs where either value is not finite
/// (a study where EF was undefined) are skipped, and extra values in the longer slice are
/// ignored, so `n` says how many pairs were actually compared. With none, errors are NaN.
pub fn agreement(pred: &[f64], truth: &[f64]) -> Agreement {
    let pairs: Vec<(f64, f64)> = pred
        .iter()
        .zip(truth.iter())
        .map(|(&p, &t)| (p, t))
        .filter(|(p, t)| p.is_finite() && t.is_finite())
        .collect();
    let n = pairs.len();
    if n == 0 {
        return Agreement {
            mean_abs_error: f64::NAN,
            bias: f64::NAN,
            pearson_r: None,
            n,
        };
    }
    let nf = n as f64;
    let mean_abs_error = pairs.iter().map(|(p, t)| (p - t).abs()).sum::<f64>() / nf;
    let bias = pairs.iter().map(|(p, t)| p - t).sum::<f64>() / nf;
    let (mp, mt) = (
        pairs.iter().map(|x| x.0).sum::<f64>() / nf,
        pairs.iter().map(|x| x.1).sum::<f64>() / nf,
    );
    let (mut spp, mut stt, mut spt) = (0.0, 0.0, 0.0);
    for (p, t) in &pairs {
        spp += (p - mp) * (p - mp);
        stt += (t - mt) * (t - mt);
        spt += (p - mp) * (t - mt);
    }
    let pearson_r = (n >= 2 && spp > 0.0 && stt > 0.0).then(|| spt / (spp * stt).sqrt());
    Agreement {
        mean_abs_error,
        bias,
        pearson_r,
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(lv: usize, myo: usize, rv: usize) -> LabelVolume {
        let mut v = LabelVolume::new(20, 20, 2, [1.5, 1.5, 10.0]);
        let mut i = 0;
        for (class, n) in [(LV, lv), (MYO, myo), (RV, rv)] {
            for _ in 0..n {
                v.labels[i] = class;
                i += 1;
            }
        }
        v
    }

    #[test]
    fn ed_es_found_not_assumed() {
        // ED is the last phase, ES the third: frame 0 is neither.
        let phases: Vec<_> = [
            (200, 100, 220),
            (150, 105, 170),
            (80, 110, 100),
            (120, 104, 150),
            (210, 100, 230),
        ]
        .iter()
        .map(|&(a, b, c)| phase(a, b, c))
        .collect();
        let s = summarize(&phases).unwrap();
        let vox = 1.5 * 1.5 * 10.0 / 1000.0;
        assert_eq!((s.ed_phase, s.es_phase), (4, 2));
        assert!((s.lv_edv_ml - 210.0 * vox).abs() < 1e-9);
        assert!((s.lv_esv_ml - 80.0 * vox).abs() < 1e-9);
        assert!((s.lv_sv_ml - 130.0 * vox).abs() < 1e-9);
        assert!((s.lv_ef_percent.unwrap() - 100.0 * 130.0 / 210.0).abs() < 1e-9);
        assert!((s.lv_mass_g - 100.0 * vox * 1.05).abs() < 1e-9);
        assert!((s.rv_edv_ml - 230.0 * vox).abs() < 1e-9);
        assert!((s.rv_ef_percent.unwrap() - 100.0 * 130.0 / 230.0).abs() < 1e-9);
        assert_eq!(s.lv_curve_ml.len(), 5);
        let json = serde_json::to_string(&s).unwrap();
        let back: CardiacSummary = serde_json::from_str(&json).unwrap();
        // serde_json's default float parsing may differ in the last bit, so compare loosely.
        assert_eq!((back.ed_phase, back.es_phase, back.phases), (4, 2, 5));
        assert!((back.lv_ef_percent.unwrap() - s.lv_ef_percent.unwrap()).abs() < 1e-9);
        assert!(back
            .rv_curve_ml
            .iter()
            .zip(&s.rv_curve_ml)
            .all(|(a, b)| (a - b).abs() < 1e-9));
    }

    #[test]
    fn summarize_rejects_empty_and_mismatched() {
        assert!(matches!(summarize(&[]), Err(AnalysisError::Empty(_))));
        let other = LabelVolume::new(20, 20, 3, [1.5, 1.5, 10.0]);
        assert!(matches!(
            summarize(&[phase(1, 1, 1), other]),
            Err(AnalysisError::Shape(_))
        ));
        let s = summarize(&[phase(0, 0, 0)]).unwrap();
        assert_eq!(s.lv_ef_percent, None);
        assert!(summarize_at(&[PhaseVolumes::of(&phase(1, 0, 0))], 0, 1).is_err());
    }

    #[test]
    fn agreement_statistics() {
        let truth = [100.0, 150.0, 200.0, 250.0];
        let pred = [110.0, 160.0, 210.0, 260.0];
        let a = agreement(&pred, &truth);
        assert_eq!(a.n, 4);
        assert!((a.bias - 10.0).abs() < 1e-12 && (a.mean_abs_error - 10.0).abs() < 1e-12);
        assert!((a.pearson_r.unwrap() - 1.0).abs() < 1e-12);
        let b = agreement(&[1.0, 3.0, f64::NAN, 2.0], &[2.0, 2.0, 5.0, 2.0]);
        assert_eq!(b.n, 3);
        assert!((b.bias - 0.0).abs() < 1e-12 && (b.mean_abs_error - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(b.pearson_r, None, "truth is constant");
        let c = agreement(&[3.0, 2.0, 1.0], &[1.0, 2.0, 3.0]);
        assert!((c.pearson_r.unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(agreement(&[], &[]).n, 0);
    }
}
