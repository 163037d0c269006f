//! ACDC on the real data in `../shared/data/acdc/training` (or `$CINESEG_DATA/acdc/training`):
//! layout, NIfTI voxel types, clinical volumes from the labels, and a small import.
//! Each test prints "skipped: ..." and passes when the data is absent.

use cineseg::image::Phase;
use cineseg::io::acdc::{self, acdc_to_cineseg};
use cineseg::io::read_volume;
use cineseg::nn::Preprocess;
use cineseg::store::{import_acdc, FrameStore};
use std::path::{Path, PathBuf};

fn acdc_root() -> Option<PathBuf> {
    let base = std::env::var_os("CINESEG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let root = base.join("acdc/training");
    if root.is_dir() {
        Some(root)
    } else {
        println!("skipped: {} not found (set CINESEG_DATA)", root.display());
        None
    }
}

#[test]
fn scan_finds_100_patients_with_ed_es() {
    let Some(root) = acdc_root() else { return };
    let pts = acdc::scan(&root).unwrap();
    assert_eq!(pts.len(), 100);
    let p1 = &pts[0];
    assert_eq!(p1.id, "patient001");
    assert_eq!(
        (p1.info.ed, p1.info.es, p1.info.group.as_str()),
        (1, 12, "DCM")
    );
    assert_eq!(
        p1.frames
            .iter()
            .map(|f| (f.frame, f.phase))
            .collect::<Vec<_>>(),
        vec![(1, Phase::Ed), (12, Phase::Es)]
    );
    for p in &pts {
        for phase in [Phase::Ed, Phase::Es] {
            let f = p.frames.iter().find(|f| f.phase == phase);
            assert!(
                f.is_some_and(|f| f.labels.is_some()),
                "{} has labelled {phase:?}",
                p.id
            );
        }
    }
    let groups: std::collections::BTreeSet<_> = pts.iter().map(|p| p.info.group.as_str()).collect();
    assert_eq!(groups.len(), 5, "{groups:?}");
    assert!(pts
        .iter()
        .find(|p| p.id == "patient090")
        .is_some_and(|p| p.cine_4d.is_some()));
}

/// LV volume in ml from a label file: voxel count of ACDC class 3 (LV) times voxel volume.
fn lv_ml(path: &Path) -> f64 {
    let v = read_volume(path).unwrap();
    let lv = v
        .data
        .iter()
        .filter(|&&x| acdc_to_cineseg(x as u8) == Ok(1))
        .count();
    lv as f64 * v.voxel_ml()
}

#[test]
fn lv_volumes_match_the_published_values() {
    let Some(root) = acdc_root() else { return };
    let pts = acdc::scan(&root).unwrap();
    for (id, edv, esv) in [("patient001", 296.0, 226.0), ("patient041", 104.0, 66.0)] {
        let p = pts.iter().find(|p| p.id == id).unwrap();
        let at = |phase| {
            lv_ml(
                p.frames
                    .iter()
                    .find(|f| f.phase == phase)
                    .unwrap()
                    .labels
                    .as_ref()
                    .unwrap(),
            )
        };
        let (ed, es) = (at(Phase::Ed), at(Phase::Es));
        println!("{id}: LVEDV {ed:.1} ml, LVESV {es:.1} ml");
        assert!((ed / edv - 1.0).abs() < 0.02, "{id} LVEDV {ed} vs {edv}");
        assert!((es / esv - 1.0).abs() < 0.02, "{id} LVESV {es} vs {esv}");
    }
}

#[test]
fn images_read_with_sane_geometry() {
    let Some(root) = acdc_root() else { return };
    let pts = acdc::scan(&root).unwrap();
    // Every fifth patient, to cover float32, int16 and uint8 files without reading all 200.
    for p in pts.iter().step_by(5) {
        for f in &p.frames {
            let v = read_volume(&f.image).unwrap();
            assert_eq!(v.dims[3], 1, "{}", f.image.display());
            assert!(
                (6..=21).contains(&v.dims[2]),
                "{} slices {:?}",
                f.image.display(),
                v.dims
            );
            assert!(
                v.spacing[0] > 0.5 && v.spacing[0] < 2.5 && v.spacing[2] >= 4.0,
                "{:?}",
                v.spacing
            );
            let max = v.data.iter().cloned().fold(f32::MIN, f32::max);
            assert!(max > 0.0 && v.data.iter().all(|x| x.is_finite()));
        }
    }
}

#[test]
fn import_three_patients() {
    let Some(root) = acdc_root() else { return };
    // A folder with links to three patients stands in for the full dataset.
    let src = tempfile::tempdir().unwrap();
    for id in ["patient001", "patient041", "patient090"] {
        std::os::unix::fs::symlink(root.join(id), src.path().join(id)).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let store_dir = out.path().join("acdc");
    let p = Preprocess {
        size: 128,
        ..Preprocess::default()
    };
    let calls = std::cell::RefCell::new(Vec::new());
    let t = std::time::Instant::now();
    let summary = import_acdc(src.path(), &store_dir, &p, &|d, n| {
        calls.borrow_mut().push((d, n))
    })
    .unwrap();
    println!("{summary:?} in {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(calls.into_inner(), vec![(1, 3), (2, 3), (3, 3)]);
    assert_eq!((summary.patients, summary.volumes), (3, 6));

    let s = FrameStore::open(&store_dir).unwrap();
    assert_eq!(s.len(), summary.frames);
    assert_eq!(s.preprocess(), &p);
    // Slice counts: frames per volume equal the volume's slices.
    let ed1 = read_volume(&root.join("patient001/patient001_frame01.nii.gz")).unwrap();
    let n_ed1 = s
        .frames()
        .iter()
        .filter(|m| m.patient_id == "patient001" && m.phase == Phase::Ed)
        .count();
    assert_eq!(n_ed1, ed1.dims[2]);

    // Labels mapped to cineseg order: LV (1) inside MYO (2); LV volume preserved within 3 %
    // through resampling to 1.5 mm.
    let grid_ml = (p.spacing_mm as f64).powi(2) * ed1.spacing[2] as f64 / 1000.0;
    let lv_px: usize = (0..s.len())
        .filter(|&i| s.meta(i).patient_id == "patient001" && s.meta(i).phase == Phase::Ed)
        .map(|i| s.mask(i).iter().filter(|&&c| c == 1).count())
        .sum();
    let lv = lv_px as f64 * grid_ml;
    assert!((lv / 296.0 - 1.0).abs() < 0.03, "LVEDV on the grid {lv} ml");
    for i in 0..s.len() {
        let m = s.meta(i);
        assert!(m.labelled.iter().all(|&b| b));
        assert!(m.phase == Phase::Ed || m.phase == Phase::Es);
        let img = s.image(i);
        assert!(
            img.iter().all(|&v| (0.0..=1.0).contains(&v)),
            "normalised to [0, 1]"
        );
        assert!(s.mask(i).iter().all(|&c| c < 4));
    }
    let e = s
        .frames()
        .iter()
        .find(|m| m.patient_id == "patient041" && m.phase == Phase::Es)
        .unwrap();
    assert_eq!(e.phase_index, 10, "ACDC frame 11 is phase index 10");
}

#[test]
fn voxels_match_an_independent_decoder() {
    let Some(root) = acdc_root() else { return };
    // Reference values from a separate reader (Python: gzip + struct over the raw voxels):
    // dims, the voxel at x=100, y=90, z=5, and the sum of all voxels.
    for (file, dims, voxel, sum) in [
        (
            "patient001/patient001_frame01.nii.gz",
            [216, 256, 10, 1],
            37.0,
            43_101_591.0,
        ), // int16
        (
            "patient009/patient009_frame01.nii.gz",
            [208, 256, 10, 1],
            6.0,
            25_772_677.0,
        ), // float32
    ] {
        let v = read_volume(&root.join(file)).unwrap();
        assert_eq!(v.dims, dims, "{file}");
        assert_eq!(v.data[100 + dims[0] * (90 + dims[1] * 5)], voxel, "{file}");
        let s: f64 = v.data.iter().map(|&x| x as f64).sum();
        assert_eq!(s, sum, "{file}");
    }
}

/// The full import with the default preprocessing, for timing (`cargo test --release --test
/// acdc_data -- --ignored`); writes about 250 MB to a temporary folder.
#[test]
#[ignore]
fn import_all_patients() {
    let Some(root) = acdc_root() else { return };
    let out = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let summary = import_acdc(&root, out.path(), &Preprocess::default(), &|_, _| {}).unwrap();
    println!("{summary:?} in {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!((summary.patients, summary.volumes), (100, 200));
    let s = FrameStore::open(out.path()).unwrap();
    assert_eq!(s.len(), summary.frames);
}
