//! The analysis code on real expert contours (ACDC), against the volumes the data README
//! states: patient001 (DCM) LVEDV 296 ml, LVESV 226 ml, EF 24 %; patient041 (MINF) 104 / 66 ml,
//! EF 36 %. Skips when the data folder is absent.

use cineseg::analysis::metrics::{dice, evaluate, hausdorff95};
use cineseg::analysis::postprocess::postprocess;
use cineseg::analysis::volume::{LabelVolume, LV, MYO, RV};
use cineseg::analysis::volumes::{summarize_at, PhaseVolumes};
use cineseg::report::overlay::{montage, overlay_slice, OverlayStyle};
use std::path::PathBuf;

fn data_root() -> Option<PathBuf> {
    let root = std::env::var_os("CINESEG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    root.join("acdc/training").is_dir().then_some(root)
}

/// Reads a NIfTI volume as (width, height, slices, spacing, values x-fastest).
fn read_nifti(path: &std::path::Path) -> (usize, usize, usize, [f32; 3], Vec<f32>) {
    use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
    let obj = ReaderOptions::new()
        .read_file(path)
        .expect("readable NIfTI");
    let h = obj.header().clone();
    let arr = obj
        .into_volume()
        .into_ndarray::<f32>()
        .expect("numeric volume");
    let shape = arr.shape().to_vec();
    let (w, hh, d) = (shape[0], shape[1], shape[2]);
    let mut out = Vec::with_capacity(w * hh * d);
    for k in 0..d {
        for j in 0..hh {
            for i in 0..w {
                out.push(arr[[i, j, k]]);
            }
        }
    }
    (w, hh, d, [h.pixdim[1], h.pixdim[2], h.pixdim[3]], out)
}

/// ACDC labels are 1 RV, 2 MYO, 3 LV; cineseg's are 1 LV, 2 MYO, 3 RV.
fn read_acdc_labels(path: &std::path::Path) -> LabelVolume {
    let (w, h, d, spacing, v) = read_nifti(path);
    let labels = v
        .iter()
        .map(|&x| match x.round() as i32 {
            1 => RV,
            2 => MYO,
            3 => LV,
            _ => 0,
        })
        .collect();
    LabelVolume::from_labels(w, h, d, spacing, labels).expect("consistent NIfTI")
}

fn frames(root: &std::path::Path, patient: &str, ed: u32, es: u32) -> (LabelVolume, LabelVolume) {
    let dir = root.join("acdc/training").join(patient);
    let f = |n: u32| read_acdc_labels(&dir.join(format!("{patient}_frame{n:02}_gt.nii.gz")));
    (f(ed), f(es))
}

#[test]
fn acdc_volumes_match_published_values() {
    let Some(root) = data_root() else {
        println!("skipped: ACDC data not found under ../shared/data or $CINESEG_DATA");
        return;
    };
    for (patient, ed, es, edv, esv, ef) in [
        ("patient001", 1, 12, 296.0, 226.0, 24.0),
        ("patient041", 1, 11, 104.0, 66.0, 36.0),
    ] {
        let (ved, ves) = frames(&root, patient, ed, es);
        let v = [PhaseVolumes::of(&ved), PhaseVolumes::of(&ves)];
        let s = summarize_at(&v, 0, 1).unwrap();
        println!(
            "{patient}: LVEDV {:.1} LVESV {:.1} EF {:.1} mass {:.1} RVEDV {:.1} RVEF {:.1?}",
            s.lv_edv_ml,
            s.lv_esv_ml,
            s.lv_ef_percent.unwrap(),
            s.lv_mass_g,
            s.rv_edv_ml,
            s.rv_ef_percent
        );
        assert!(
            (s.lv_edv_ml - edv).abs() < 2.0,
            "{patient} LVEDV {}",
            s.lv_edv_ml
        );
        assert!(
            (s.lv_esv_ml - esv).abs() < 2.0,
            "{patient} LVESV {}",
            s.lv_esv_ml
        );
        assert!(
            (s.lv_ef_percent.unwrap() - ef).abs() < 1.0,
            "{patient} EF {:?}",
            s.lv_ef_percent
        );
    }
}

#[test]
fn acdc_metrics_and_postprocess_on_expert_contours() {
    let Some(root) = data_root() else {
        println!("skipped: ACDC data not found under ../shared/data or $CINESEG_DATA");
        return;
    };
    let (ed, es) = frames(&root, "patient001", 1, 12);
    // Identity: perfect scores.
    for m in evaluate(&ed, &ed).unwrap() {
        assert_eq!(m.dice, 1.0);
        assert_eq!(m.hd95_mm, Some(0.0));
    }
    // ED vs ES of a poorly contracting heart: high but imperfect overlap, boundaries a few mm
    // apart (LV contracts ~10 mm in radius at most, so HD95 stays below ~3 slices).
    let t = std::time::Instant::now();
    let lv_hd = hausdorff95(&ed, &es, LV).unwrap().unwrap();
    println!(
        "patient001 ED-vs-ES HD95 LV {lv_hd:.2} mm in {:?}",
        t.elapsed()
    );
    let lv_dice = dice(&ed, &es, LV).unwrap();
    println!("patient001 ED-vs-ES Dice LV {lv_dice:.3}");
    assert!((0.7..0.99).contains(&lv_dice), "Dice {lv_dice}");
    assert!(lv_hd > 0.0 && lv_hd < 30.0, "HD95 {lv_hd}");
    // Expert contours are anatomically clean: post-processing changes almost nothing.
    let mut cleaned = ed.clone();
    postprocess(&mut cleaned).unwrap();
    let changed = cleaned
        .labels
        .iter()
        .zip(&ed.labels)
        .filter(|(a, b)| a != b)
        .count();
    let fg = ed.labels.iter().filter(|&&l| l != 0).count();
    println!("postprocess changed {changed} of {fg} foreground voxels");
    assert!(changed * 100 < fg, "changed {changed} of {fg}");

    // Overlay montage of the ED slices, decoded back to check the size.
    let (w, h, d, _, img) =
        read_nifti(&root.join("acdc/training/patient001/patient001_frame01.nii.gz"));
    assert_eq!((w, h, d), (ed.width, ed.height, ed.slices));
    let tiles: Vec<_> = (0..d)
        .map(|z| overlay_slice(&img, &ed, z, OverlayStyle::default()).unwrap())
        .collect();
    let m = montage(&tiles, 5, 2).unwrap();
    let bytes = m.encode_png().unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.width as usize, 5 * w + 8);
    assert_eq!(
        info.height as usize,
        d.div_ceil(5) * h + (d.div_ceil(5) - 1) * 2
    );
}
