//! `cineseg import --sunnybrook` on the real Sunnybrook series: one frame per contoured image,
//! LV drawn everywhere, MYO only where the epicardium was drawn (end-diastole), RV never; the
//! masks on the model grid hold the contoured areas. Skips when `../shared/data` is absent.

mod dicom_support;

use cineseg::image::Phase;
use cineseg::nn::config::Normalisation;
use cineseg::nn::Preprocess;
use cineseg::store::import_dicom::import_sunnybrook;
use cineseg::store::FrameStore;

#[test]
fn sunnybrook_contoured_images_become_partially_labelled_frames() {
    let Some(root) = dicom_support::data("sunnybrook") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let p = Preprocess {
        spacing_mm: 1.5,
        size: 160,
        normalisation: Normalisation::default(),
    };
    let summary = import_sunnybrook(&root, &d.path().join("sb"), &p, &|_, _| {}).unwrap();
    let mut contours = 0;
    for c in ["SC-HF-I-1", "SC-HF-I-2", "SC-HF-I-4"] {
        contours += std::fs::read_dir(root.join("contourfiles").join(c).join("i-contours"))
            .unwrap()
            .count();
    }
    assert_eq!(summary.patients, 3);
    assert_eq!(
        summary.frames, contours,
        "one frame per endocardial contour"
    );
    let store = FrameStore::open(&d.path().join("sb")).unwrap();
    assert_eq!(store.len(), contours);
    let px_ml = 1.5 * 1.5;
    for i in 0..store.len() {
        let m = store.meta(i);
        let mask = store.mask(i);
        let count = |c: u8| mask.iter().filter(|&&v| v == c).count();
        assert_eq!(m.labelled[..2], [true, true], "{m:?}");
        assert!(!m.labelled[3], "RV is never drawn on Sunnybrook: {m:?}");
        assert_eq!(
            m.labelled[2],
            m.phase == Phase::Ed,
            "MYO drawn exactly at ED: {m:?}"
        );
        // An LV cavity cross-section of these hearts is 1-60 cm^2.
        let lv_cm2 = count(1) as f64 * px_ml / 100.0;
        assert!(
            (1.0..60.0).contains(&lv_cm2),
            "{}: LV area {lv_cm2} cm^2",
            m.source
        );
        assert_eq!(count(3), 0);
        assert_eq!(count(2) > 0, m.labelled[2], "{}", m.source);
        assert!(m.source.ends_with(".dcm"), "{}", m.source);
    }
}

#[test]
fn missing_link_table_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = Preprocess {
        spacing_mm: 1.5,
        size: 32,
        normalisation: Normalisation::default(),
    };
    let err = import_sunnybrook(d.path(), &d.path().join("out"), &p, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("link.csv"), "{err}");
}
