use super::*;
use crate::analysis::postprocess::postprocess;
use crate::analysis::quality;
use crate::analysis::volume::{LV, MYO, RV};
use crate::analysis::volumes::summarize;
use std::sync::OnceLock;

/// The default phantom, generated once for all tests (it takes a few seconds).
fn default_phantom() -> &'static Phantom {
    static P: OnceLock<Phantom> = OnceLock::new();
    P.get_or_init(|| generate(&PhantomParams::default(), 7).expect("default parameters are valid"))
}

fn small() -> PhantomParams {
    PhantomParams {
        width: 64,
        height: 64,
        pixel_mm: 4.0,
        slices: 4,
        slice_mm: 25.0,
        phases: 6,
        ..Default::default()
    }
}

#[test]
fn deterministic_by_seed() {
    let a = generate(&small(), 3).unwrap();
    let b = generate(&small(), 3).unwrap();
    let c = generate(&small(), 4).unwrap();
    assert_eq!(a.images, b.images);
    assert_eq!(a.labels, b.labels);
    assert_ne!(a.images, c.images);
}

#[test]
fn shapes_and_accessors() {
    let p = default_phantom();
    let q = &p.params;
    assert_eq!(p.images.len(), q.slices * q.phases);
    assert_eq!(p.labels.len(), q.phases);
    assert!(p.images.iter().all(|im| im.len() == q.width * q.height));
    assert_eq!(p.labels[0].spacing, [1.5, 1.5, 10.0]);
    assert!(p.image(q.slices, 0).is_none() && p.image(0, q.phases).is_none());
    let stack = p.phase_stack(2).unwrap();
    assert_eq!(
        &stack[q.width * q.height..2 * q.width * q.height],
        p.image(1, 2).unwrap()
    );
}

#[test]
fn measured_function_matches_parameters() {
    let p = default_phantom();
    let s = summarize(&p.labels).unwrap();
    let q = &p.params;
    assert_ne!(p.ed_phase, 0, "the cycle starts at a random offset");
    assert_eq!(s.ed_phase, p.ed_phase, "curve {:?}", s.lv_curve_ml);
    assert_eq!(s.es_phase, p.es_phase, "curve {:?}", s.lv_curve_ml);
    let ef = s.lv_ef_percent.unwrap();
    assert!(
        (ef - 100.0 * q.lv_ef).abs() < 2.0,
        "LVEF {ef} vs {}",
        100.0 * q.lv_ef
    );
    assert!(
        (s.lv_edv_ml / q.lv_edv_ml - 1.0).abs() < 0.05,
        "LVEDV {}",
        s.lv_edv_ml
    );
    let analytic_ef = 100.0 * (1.0 - p.lv_volume_ml[p.es_phase] / p.lv_volume_ml[p.ed_phase]);
    assert!((analytic_ef - 100.0 * q.lv_ef).abs() < 1e-6);
    assert!(
        (s.rv_edv_ml / q.rv_edv_ml - 1.0).abs() < 0.05,
        "RVEDV {}",
        s.rv_edv_ml
    );
    let rvef = s.rv_ef_percent.unwrap();
    assert!((rvef - 100.0 * q.rv_ef).abs() < 3.0, "RVEF {rvef}");
    assert!(
        (90.0..200.0).contains(&s.lv_mass_g),
        "LV mass {}",
        s.lv_mass_g
    );
    // Myocardium is nearly incompressible: mass at ES within 15 % of ED.
    let mass_es = s.myo_curve_ml[s.es_phase] * 1.05;
    assert!(
        (mass_es / s.lv_mass_g - 1.0).abs() < 0.15,
        "mass ED {} ES {mass_es}",
        s.lv_mass_g
    );
    let flags = quality::check(&p.labels, &s);
    assert!(
        flags.is_empty(),
        "a healthy phantom raises no quality flags: {flags:?}"
    );
}

/// The truth is post-processed at generation, so a second pass must find nothing to do
/// (the volume checks above would catch a pass that threw away real structure).
#[test]
fn labels_are_already_clean() {
    let p = default_phantom();
    let mut v = p.labels[p.es_phase].clone();
    postprocess(&mut v).unwrap();
    assert_eq!(v, p.labels[p.es_phase], "one component per class, no holes");
}

#[test]
fn bssfp_like_contrast() {
    let p = default_phantom();
    let q = &p.params;
    let slice = q.slices / 2;
    let (img, lab) = (
        p.image(slice, p.ed_phase).unwrap(),
        p.labels[p.ed_phase].slice(slice).unwrap(),
    );
    let mean = |class: u8| {
        let v: Vec<f64> = img
            .iter()
            .zip(lab)
            .filter(|(_, &l)| l == class)
            .map(|(&x, _)| x as f64)
            .collect();
        assert!(
            v.len() > 50,
            "class {class} has {} pixels on the mid slice",
            v.len()
        );
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (lv, myo, rv) = (mean(LV), mean(MYO), mean(RV));
    let ratio = lv / myo;
    assert!((2.0..3.8).contains(&ratio), "blood/myocardium {ratio}");
    assert!((rv / lv - 1.0).abs() < 0.35, "RV {rv} vs LV {lv}");
    // Corners are air: only noise there, far darker than myocardium.
    let corner = img[0] as f64 + img[q.width - 1] as f64;
    assert!(corner / 2.0 < 0.5 * myo, "corner {corner}");
    // Rician noise: intensities are non-negative and not constant within the blood pool.
    assert!(img.iter().all(|&x| x >= 0.0 && x.is_finite()));
}

#[test]
fn rejects_bad_parameters() {
    let bad = [
        PhantomParams {
            phases: 1,
            ..Default::default()
        },
        PhantomParams {
            lv_ef: 1.2,
            ..Default::default()
        },
        PhantomParams {
            pixel_mm: 0.0,
            ..Default::default()
        },
        PhantomParams {
            noise: f64::NAN,
            ..Default::default()
        },
    ];
    for p in bad {
        assert!(
            matches!(generate(&p, 1), Err(PhantomError::InvalidParams(_))),
            "{p:?}"
        );
    }
}

#[test]
fn dilated_failing_heart_matches_too() {
    // A DCM-like heart on 8 mm slices with few phases: the calibration must hold beyond the
    // defaults.
    let q = PhantomParams {
        lv_edv_ml: 250.0,
        lv_ef: 0.3,
        rv_edv_ml: 200.0,
        rv_ef: 0.4,
        slice_mm: 8.0,
        slices: 12,
        phases: 8,
        ..Default::default()
    };
    let p = generate(&q, 11).unwrap();
    let s = summarize(&p.labels).unwrap();
    assert_eq!(
        (s.ed_phase, s.es_phase),
        (p.ed_phase, p.es_phase),
        "curve {:?}",
        s.lv_curve_ml
    );
    assert!(
        (s.lv_ef_percent.unwrap() - 30.0).abs() < 2.0,
        "LVEF {:?}",
        s.lv_ef_percent
    );
    assert!(
        (s.lv_edv_ml / 250.0 - 1.0).abs() < 0.05,
        "LVEDV {}",
        s.lv_edv_ml
    );
    assert!(
        (s.rv_ef_percent.unwrap() - 40.0).abs() < 3.0,
        "RVEF {:?}",
        s.rv_ef_percent
    );
}
