//! Each correction of the stack assembler, exercised on broken copies of a real Sunnybrook
//! series (SCD0000301, 10 slices x 20 phases, 8 mm) made by editing tags in a temp folder.

mod dicom_support;

use std::collections::HashMap;
use std::path::Path;

use cineseg::dicom::stack::{load_folder, AssembleOptions, CineStack, Correction};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_support::{copy_series, get_f64s, set_ds, set_str};

const PATIENT: &str = "sunnybrook/dicoms/SCD0000301";

fn source() -> Option<std::path::PathBuf> {
    dicom_support::data(PATIENT)
}

fn load(dir: &Path, fill: bool) -> Vec<CineStack> {
    let opts = AssembleOptions {
        fill_missing: fill,
        ..AssembleOptions::default()
    };
    load_folder(dir, &opts).unwrap().stacks
}

/// File number -> (slice, phase) in the clean stack.
fn layout(clean: &CineStack) -> HashMap<usize, (usize, usize)> {
    let mut m = HashMap::new();
    for (s, slice) in clean.slices.iter().enumerate() {
        for (p, f) in slice.frames.iter().enumerate() {
            let path = &f.as_ref().unwrap().source.as_ref().unwrap().path;
            m.insert(
                path.file_stem().unwrap().to_str().unwrap().parse().unwrap(),
                (s, p),
            );
        }
    }
    m
}

fn clean_and_layout(src: &Path) -> (CineStack, HashMap<usize, (usize, usize)>) {
    let clean = load(src, false).remove(0);
    let l = layout(&clean);
    (clean, l)
}

fn new_uid(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag, suffix: &str) -> String {
    let old = obj
        .element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    format!("{old}.{suffix}")
}

#[test]
fn duplicate_positions_keep_one_acquisition() {
    let Some(src) = source() else { return };
    let (_, l) = clean_and_layout(&src);
    let tmp = tempfile::tempdir().unwrap();
    copy_series(&src, tmp.path(), |_, _| true);
    // Re-acquisition of slice 2, 0.5 mm away, with new UIDs and later instance numbers.
    let dup = tmp.path().join("dup");
    copy_series(&src, &dup, |n, obj| {
        if l[&n].0 != 2 {
            return false;
        }
        let uid = new_uid(obj, tags::SOP_INSTANCE_UID, "7");
        set_str(obj, tags::SOP_INSTANCE_UID, VR::UI, &uid);
        set_str(obj, tags::INSTANCE_NUMBER, VR::IS, &(n + 1000).to_string());
        let p = get_f64s(obj, tags::IMAGE_POSITION_PATIENT);
        let o = get_f64s(obj, tags::IMAGE_ORIENTATION_PATIENT);
        let nrm = [
            o[1] * o[5] - o[2] * o[4],
            o[2] * o[3] - o[0] * o[5],
            o[0] * o[4] - o[1] * o[3],
        ];
        set_ds(
            obj,
            tags::IMAGE_POSITION_PATIENT,
            &[
                p[0] + 0.5 * nrm[0],
                p[1] + 0.5 * nrm[1],
                p[2] + 0.5 * nrm[2],
            ],
        );
        true
    });
    // Exact duplicates of slice 5 (same position and trigger time, new SOP UIDs).
    let exact = tmp.path().join("exact");
    copy_series(&src, &exact, |n, obj| {
        if l[&n].0 != 5 {
            return false;
        }
        let uid = new_uid(obj, tags::SOP_INSTANCE_UID, "8");
        set_str(obj, tags::SOP_INSTANCE_UID, VR::UI, &uid);
        true
    });
    let stacks = load(tmp.path(), false);
    assert_eq!(stacks.len(), 1);
    let s = &stacks[0];
    println!("{}", s.corrections_log());
    assert_eq!((s.n_slices(), s.n_phases()), (10, 20));
    assert!(s.is_complete());
    let dups: Vec<usize> = s
        .corrections
        .iter()
        .filter_map(|c| match c {
            Correction::DuplicateSlice {
                dropped_instances, ..
            } => Some(dropped_instances.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        dups,
        vec![20, 20],
        "one line per duplicated position, 20 frames each"
    );
    assert!((s.slice_spacing - 8.0).abs() < 0.05);
    // The later acquisition (instance numbers + 1000) won at slice 2.
    let kept = s.frame(2, 0).unwrap().source.as_ref().unwrap();
    assert!(
        kept.sop_instance_uid.ends_with(".7"),
        "{}",
        kept.sop_instance_uid
    );
}

/// Rotate slice `k` in plane by 90 degrees: new pixels, orientation and position describing
/// the same anatomy. Assembly must resample it back onto the majority grid.
#[test]
fn in_plane_rotated_slice_is_resampled_onto_majority_grid() {
    let Some(src) = source() else { return };
    let (clean, l) = clean_and_layout(&src);
    let k = 4;
    let tmp = tempfile::tempdir().unwrap();
    copy_series(&src, tmp.path(), |n, obj| {
        if l[&n].0 != k {
            return true;
        }
        let p = get_f64s(obj, tags::IMAGE_POSITION_PATIENT);
        let o = get_f64s(obj, tags::IMAGE_ORIENTATION_PATIENT);
        let s = get_f64s(obj, tags::PIXEL_SPACING)[0];
        let size = 256usize;
        let (x, y) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        // New rows run along old columns (y), new columns along -x; origin at old (0, N-1).
        set_ds(
            obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            &[y[0], y[1], y[2], -x[0], -x[1], -x[2]],
        );
        let e = (size - 1) as f64 * s;
        set_ds(
            obj,
            tags::IMAGE_POSITION_PATIENT,
            &[p[0] + x[0] * e, p[1] + x[1] * e, p[2] + x[2] * e],
        );
        let bytes = obj
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec();
        let mut out = vec![0u8; bytes.len()];
        for r in 0..size {
            for c in 0..size {
                let (ar, ac) = (c, size - 1 - r);
                let (src_i, dst_i) = (2 * (ar * size + ac), 2 * (r * size + c));
                out[dst_i..dst_i + 2].copy_from_slice(&bytes[src_i..src_i + 2]);
            }
        }
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(out),
        ));
        true
    });
    let s = load(tmp.path(), false).remove(0);
    println!("{}", s.corrections_log());
    assert_eq!((s.n_slices(), s.n_phases()), (10, 20));
    assert!(s.corrections.iter().any(|c| matches!(c, Correction::Resampled { slice, reason, .. } if *slice == k && reason.contains("rotated"))));
    for p in [0, 9, 19] {
        let (a, b) = (
            &clean.frame(k, p).unwrap().pixels,
            &s.frame(k, p).unwrap().pixels,
        );
        let max_diff = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        // The edited DS values carry 6 decimals, i.e. sub-micrometre shifts: exact up to
        // interpolation of that shift (intensities run to ~1000).
        assert!(
            max_diff < 0.5,
            "phase {p}: resampled slice differs by up to {max_diff}"
        );
        let mean = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y).abs())
            .sum::<f32>()
            / a.len() as f32;
        assert!(mean < 0.01, "phase {p}: mean difference {mean}");
    }
    for i in 0..3 {
        assert!((s.slices[k].position[i] - clean.slices[k].position[i]).abs() < 1e-3);
    }
}

#[test]
fn non_parallel_slice_is_dropped_and_gap_reported() {
    let Some(src) = source() else { return };
    let (_, l) = clean_and_layout(&src);
    let tmp = tempfile::tempdir().unwrap();
    copy_series(&src, tmp.path(), |n, obj| {
        if l[&n].0 == 6 {
            let o = get_f64s(obj, tags::IMAGE_ORIENTATION_PATIENT);
            let (x, y) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
            let nrm = [
                x[1] * y[2] - x[2] * y[1],
                x[2] * y[0] - x[0] * y[2],
                x[0] * y[1] - x[1] * y[0],
            ];
            let (c, s) = (20f64.to_radians().cos(), 20f64.to_radians().sin());
            let y2: Vec<f64> = (0..3).map(|i| c * y[i] + s * nrm[i]).collect();
            set_ds(
                obj,
                tags::IMAGE_ORIENTATION_PATIENT,
                &[x[0], x[1], x[2], y2[0], y2[1], y2[2]],
            );
        }
        true
    });
    let s = load(tmp.path(), false).remove(0);
    println!("{}", s.corrections_log());
    assert_eq!((s.n_slices(), s.n_phases()), (9, 20));
    let dropped = s.corrections.iter().find_map(|c| match c {
        Correction::NonParallelSlice {
            angle_deg,
            dropped_instances,
            ..
        } => Some((*angle_deg, dropped_instances.len())),
        _ => None,
    });
    let (angle, count) = dropped.expect("NonParallelSlice logged");
    assert!((angle - 20.0).abs() < 0.1, "angle {angle}");
    assert_eq!(count, 20);
    assert!(s.corrections.iter().any(|c| matches!(
        c,
        Correction::MissingSlice {
            after_slice: 5,
            count: 1,
            filled: false,
            ..
        }
    )));
    assert!((s.slice_spacing - 8.0).abs() < 0.05);
}

#[test]
fn missing_frame_is_reported_and_filled_only_on_request() {
    let Some(src) = source() else { return };
    let (clean, l) = clean_and_layout(&src);
    let tmp = tempfile::tempdir().unwrap();
    copy_series(&src, tmp.path(), |n, _| l[&n] != (3, 7));
    let s = load(tmp.path(), false).remove(0);
    println!("{}", s.corrections_log());
    assert_eq!((s.n_slices(), s.n_phases()), (10, 20));
    assert!(s.frame(3, 7).is_none());
    assert!(!s.is_complete());
    assert_eq!(
        s.corrections,
        vec![Correction::MissingFrame {
            series_uid: clean.ids.series_uid.clone().unwrap(),
            slice: 3,
            phase: 7,
            filled: false
        }]
    );
    // Neighbouring phases stayed in their slots.
    for p in [6, 8] {
        assert_eq!(
            s.frame(3, p).unwrap().pixels,
            clean.frame(3, p).unwrap().pixels
        );
    }
    let filled = load(tmp.path(), true).remove(0);
    assert!(filled.is_complete());
    assert!(filled.frame(3, 7).unwrap().source.is_none());
    assert!(filled.corrections.iter().any(|c| matches!(
        c,
        Correction::MissingFrame {
            slice: 3,
            phase: 7,
            filled: true,
            ..
        }
    )));
}

#[test]
fn missing_slice_is_reported_and_interpolated_only_on_request() {
    let Some(src) = source() else { return };
    let (clean, l) = clean_and_layout(&src);
    let tmp = tempfile::tempdir().unwrap();
    copy_series(&src, tmp.path(), |n, _| l[&n].0 != 4);
    let s = load(tmp.path(), false).remove(0);
    assert_eq!((s.n_slices(), s.n_phases()), (9, 20));
    assert!(
        (s.slice_spacing - 8.0).abs() < 0.05,
        "modal gap ignores the hole"
    );
    assert!(s.corrections.iter().any(|c| matches!(
        c,
        Correction::MissingSlice {
            after_slice: 3,
            count: 1,
            filled: false,
            ..
        }
    )));
    let f = load(tmp.path(), true).remove(0);
    assert_eq!(f.n_slices(), 10);
    assert!((f.slices[4].offset_mm - clean.slices[4].offset_mm).abs() < 0.01);
    let interp = &f.frame(4, 0).unwrap().pixels;
    let (a, b) = (
        &clean.frame(3, 0).unwrap().pixels,
        &clean.frame(5, 0).unwrap().pixels,
    );
    assert!((interp[1000] - 0.5 * (a[1000] + b[1000])).abs() < 1e-3);
}

#[test]
fn two_mixed_series_become_two_stacks() {
    let Some(src) = source() else { return };
    let Some(other) = dicom_support::data("sunnybrook/dicoms/SCD0000101") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    copy_series(&src, &tmp.path().join("a"), |_, _| true);
    copy_series(&other, &tmp.path().join("b"), |_, _| true);
    let stacks = load(tmp.path(), false);
    let shapes: Vec<(usize, usize)> = stacks
        .iter()
        .map(|s| (s.n_slices(), s.n_phases()))
        .collect();
    assert_eq!(shapes, vec![(12, 20), (10, 20)]);
    assert_ne!(stacks[0].ids.series_uid, stacks[1].ids.series_uid);
    assert!(stacks.iter().all(|s| s.corrections.is_empty()));
}

#[test]
fn repeated_series_keeps_latest_complete() {
    let Some(src) = source() else { return };
    let (clean, l) = clean_and_layout(&src);
    let original_uid = clean.ids.series_uid.clone().unwrap();
    for repeat_complete in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        copy_series(&src, &tmp.path().join("first"), |_, _| true);
        copy_series(&src, &tmp.path().join("repeat"), |n, obj| {
            let series = new_uid(obj, tags::SERIES_INSTANCE_UID, "9");
            let sop = new_uid(obj, tags::SOP_INSTANCE_UID, "9");
            set_str(obj, tags::SERIES_INSTANCE_UID, VR::UI, &series);
            set_str(obj, tags::SOP_INSTANCE_UID, VR::UI, &sop);
            set_str(obj, tags::SERIES_TIME, VR::TM, "235959");
            set_str(obj, tags::SERIES_NUMBER, VR::IS, "301");
            repeat_complete || l[&n] != (0, 0)
        });
        let stacks = load(tmp.path(), false);
        assert_eq!(stacks.len(), 1, "repeat dropped");
        let s = &stacks[0];
        println!("{}", s.corrections_log());
        let kept = s.ids.series_uid.clone().unwrap();
        if repeat_complete {
            assert_eq!(kept, format!("{original_uid}.9"), "latest complete kept");
        } else {
            assert_eq!(kept, original_uid, "incomplete repeat loses");
        }
        assert!(s.corrections.iter().any(|c| matches!(c, Correction::RepeatedSeries { kept_series_uid, .. } if *kept_series_uid == kept)));
    }
}

#[test]
fn spacing_comes_from_positions_not_header() {
    let Some(src) = source() else { return };
    let tmp = tempfile::tempdir().unwrap();
    copy_series(&src, tmp.path(), |_, obj| {
        set_ds(obj, tags::SPACING_BETWEEN_SLICES, &[6.72]);
        true
    });
    let s = load(tmp.path(), false).remove(0);
    assert!((s.slice_spacing - 8.0).abs() < 0.05);
    let logged = s.corrections.iter().find_map(|c| match c {
        Correction::SpacingFromPositions {
            spacing_mm,
            header_mm,
            ..
        } => Some((*spacing_mm, *header_mm)),
        _ => None,
    });
    let (spacing, header) = logged.expect("spacing correction logged");
    assert!((spacing - 8.0).abs() < 0.05 && header == Some(6.72));
    let line = s.corrections_log();
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(v["correction"], "spacing_from_positions");
}

#[test]
fn monochrome1_is_inverted_so_bright_stays_bright() {
    let Some(src) = dicom_support::sunnybrook_file("SCD0000101", 1) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut obj = dicom_support::open(&src);
    dicom_support::set_str(
        &mut obj,
        dicom_dictionary_std::tags::PHOTOMETRIC_INTERPRETATION,
        dicom_core::VR::CS,
        "MONOCHROME1",
    );
    let edited = dir.path().join("m1.dcm");
    dicom_support::save(&obj, &edited);
    let m2 = cineseg::dicom::read_file(&src).unwrap().remove(0);
    let m1 = cineseg::dicom::read_file(&edited).unwrap().remove(0);
    assert_eq!(m1.photometric, "MONOCHROME1");
    let (lo, hi) = m2
        .pixels
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi > lo);
    for (a, b) in m2.pixels.iter().zip(&m1.pixels) {
        assert_eq!(
            *b,
            lo + hi - *a,
            "MONOCHROME1 pixel is the mirror of the MONOCHROME2 one"
        );
    }
}
