//! The Sunnybrook contour files become LV/MYO label masks aligned to their stacks.

mod dicom_support;

use cineseg::dicom::contours::sunnybrook_masks;
use cineseg::dicom::masks::{LV, MYO};
use cineseg::dicom::stack::{load_folder, AssembleOptions};

#[test]
fn sunnybrook_contours_become_lv_myo_masks() {
    for (patient, contours) in [
        ("SCD0000101", "SC-HF-I-1"),
        ("SCD0000201", "SC-HF-I-2"),
        ("SCD0000301", "SC-HF-I-4"),
    ] {
        let Some(dir) = dicom_support::data(&format!("sunnybrook/dicoms/{patient}")) else {
            return;
        };
        let Some(cdir) = dicom_support::data(&format!("sunnybrook/contourfiles/{contours}")) else {
            return;
        };
        let stack = load_folder(&dir, &AssembleOptions::default())
            .unwrap()
            .stacks
            .remove(0);
        let masks = sunnybrook_masks(&stack, &cdir).unwrap();
        assert_eq!(
            masks.labelled,
            vec![LV, MYO],
            "labelled classes say LV and MYO only"
        );
        let n_i = std::fs::read_dir(cdir.join("i-contours")).unwrap().count();
        let n_o = std::fs::read_dir(cdir.join("o-contours")).unwrap().count();
        let with_lv = masks.annotated.iter().filter(|a| a.contains(&LV)).count();
        let with_myo = masks.annotated.iter().filter(|a| a.contains(&MYO)).count();
        assert_eq!((with_lv, with_myo), (n_i, n_o), "{patient}");
        let px_area = stack.grid.pixel_spacing[0] * stack.grid.pixel_spacing[1];
        for s in 0..stack.n_slices() {
            for p in 0..stack.n_phases() {
                let a = &masks.annotated[s * stack.n_phases() + p];
                let img = masks.image(s, p).unwrap();
                let lv = img.iter().filter(|&&v| v == LV).count() as f64 * px_area;
                let myo = img.iter().filter(|&&v| v == MYO).count() as f64 * px_area;
                if a.contains(&LV) {
                    assert!(
                        (50.0..8000.0).contains(&lv),
                        "{patient} ({s},{p}): LV area {lv} mm2"
                    );
                } else {
                    assert_eq!(lv, 0.0);
                }
                if a.contains(&MYO) {
                    assert!(
                        myo > 0.3 * lv.min(2000.0),
                        "{patient} ({s},{p}): MYO area {myo} mm2 vs LV {lv}"
                    );
                } else {
                    assert_eq!(myo, 0.0);
                }
            }
        }
        println!("{patient}: {n_i} endocardial, {n_o} epicardial contours");
    }
}
