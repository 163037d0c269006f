//! A SEG written over a real Sunnybrook stack passes dicom3tools' `dciodvfy` without errors,
//! dcmtk's `dcmdump` parses it, and reading it back gives identical masks.

mod dicom_support;

use std::process::Command;

use cineseg::dicom::masks::{LabelMasks, LV, MYO, RV};
use cineseg::dicom::patient::StudyContext;
use cineseg::dicom::seg::{read_seg, write_seg, Algorithm, SegScope};
use cineseg::dicom::stack::{load_folder, AssembleOptions, CineStack};
use cineseg::dicom::writer::SeriesId;

/// Concentric disc (LV), ring (MYO) and a side blob (RV) whose size varies with slice and
/// phase; some images left empty so empty-frame omission is exercised.
fn synthetic_masks(stack: &CineStack) -> LabelMasks {
    let (rows, cols) = (stack.grid.rows, stack.grid.cols);
    let mut m = LabelMasks::empty(
        stack.n_slices(),
        stack.n_phases(),
        rows,
        cols,
        vec![LV, MYO, RV],
    );
    for s in 0..stack.n_slices() {
        for p in 0..stack.n_phases() {
            if (s + p) % 7 == 0 {
                continue; // nothing found here
            }
            let r_lv = 8.0 + s as f64 + (p as f64 * 0.3).sin() * 3.0;
            let img = m.image_mut(s, p).unwrap();
            for r in 0..rows {
                for c in 0..cols {
                    let d = ((r as f64 - 128.0).powi(2) + (c as f64 - 120.0).powi(2)).sqrt();
                    let d_rv =
                        ((r as f64 - 128.0).powi(2) + (c as f64 - 95.0 + s as f64).powi(2)).sqrt();
                    img[r * cols + c] = if d < r_lv {
                        LV
                    } else if d < r_lv + 5.0 {
                        MYO
                    } else if d_rv < 9.0 && p % 3 != 0 {
                        RV
                    } else {
                        0
                    };
                }
            }
        }
    }
    m
}

/// Strip leading zeros from UID components (Sunnybrook's UIDs break that rule).
fn repair_uid(uid: &str) -> String {
    uid.trim_end_matches('\0')
        .split('.')
        .map(|c| {
            let t = c.trim_start_matches('0');
            if t.is_empty() {
                "0"
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// dciodvfy's error lines.
fn dciodvfy_errors(path: &std::path::Path) -> Option<Vec<String>> {
    let out = Command::new("dciodvfy").arg(path).output().ok()?;
    let report =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    println!(
        "dciodvfy:\n{}",
        report
            .lines()
            .filter(|l| !l.contains("Leading zeroes"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Some(
        report
            .lines()
            .filter(|l| l.starts_with("Error"))
            .map(String::from)
            .collect(),
    )
}

/// On the Sunnybrook files as they are, the only errors allowed are the leading-zero UIDs the
/// SEG must copy verbatim (study) or reference verbatim (source images).
#[test]
fn seg_on_raw_sunnybrook_only_inherits_its_uid_errors() {
    let Some(dir) = dicom_support::data("sunnybrook/dicoms/SCD0000301") else {
        return;
    };
    let stack = load_folder(&dir, &AssembleOptions::default())
        .unwrap()
        .stacks
        .remove(0);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("seg.dcm");
    let algo = Algorithm {
        name: "cineseg-unet".into(),
        version: "test-1".into(),
    };
    write_seg(
        &stack,
        &synthetic_masks(&stack),
        &algo,
        SegScope::Cine,
        &ctx_of(&stack),
        &SeriesId::new(9901),
        &path,
    )
    .unwrap();
    let Some(errors) = dciodvfy_errors(&path) else {
        eprintln!("skipped: dciodvfy (dicom3tools) not installed");
        return;
    };
    let other: Vec<&String> = errors
        .iter()
        .filter(|l| !l.contains("Leading zeroes") && !l.contains("contains invalid data values"))
        .collect();
    assert!(other.is_empty(), "unexpected dciodvfy errors: {other:?}");
}

#[test]
fn seg_passes_dciodvfy_and_round_trips() {
    let Some(raw) = dicom_support::data("sunnybrook/dicoms/SCD0000301") else {
        return;
    };
    // A copy with standard-conformant UIDs, so every error dciodvfy could report is ours.
    let fixed = tempfile::tempdir().unwrap();
    dicom_support::copy_series(&raw, fixed.path(), |_, obj| {
        use dicom_dictionary_std::tags;
        for tag in [
            tags::SOP_INSTANCE_UID,
            tags::SERIES_INSTANCE_UID,
            tags::STUDY_INSTANCE_UID,
            tags::FRAME_OF_REFERENCE_UID,
        ] {
            let v = obj.element(tag).unwrap().to_str().unwrap().to_string();
            dicom_support::set_str(obj, tag, dicom_core::VR::UI, &repair_uid(&v));
        }
        let sop = obj
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        obj.meta_mut().media_storage_sop_instance_uid = sop;
        true
    });
    let dir = fixed.path().to_path_buf();
    let stack = load_folder(&dir, &AssembleOptions::default())
        .unwrap()
        .stacks
        .remove(0);
    let masks = synthetic_masks(&stack);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("seg.dcm");
    let algo = Algorithm {
        name: "cineseg-unet".into(),
        version: "test-1".into(),
    };
    let written = write_seg(
        &stack,
        &masks,
        &algo,
        SegScope::Cine,
        &ctx_of(&stack),
        &SeriesId::new(9901),
        &path,
    )
    .unwrap();
    let expected_frames: usize = [LV, MYO, RV]
        .iter()
        .map(|&c| {
            (0..stack.n_slices())
                .flat_map(|s| (0..stack.n_phases()).map(move |p| (s, p)))
                .filter(|&(s, p)| masks.image(s, p).unwrap().contains(&c))
                .count()
        })
        .sum();
    assert_eq!(written.frames, expected_frames, "empty frames omitted");
    println!(
        "wrote {} frames, {} bytes",
        written.frames,
        std::fs::metadata(&path).unwrap().len()
    );

    let back = read_seg(&path, &stack).unwrap();
    assert_eq!(back.labelled, vec![LV, MYO, RV]);
    assert!(back.labels == masks.labels, "masks differ after round trip");

    match dciodvfy_errors(&path) {
        Some(errors) => assert!(errors.is_empty(), "dciodvfy errors:\n{}", errors.join("\n")),
        None => eprintln!("skipped dciodvfy check: dciodvfy (dicom3tools) not installed"),
    }
    match Command::new("dcmdump").arg("-q").arg(&path).output() {
        Ok(out) => assert!(
            out.status.success(),
            "dcmdump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("skipped dcmdump check: dcmtk not installed"),
    }
}

#[test]
fn overlay_secondary_capture_is_valid_and_decodes_as_rgb() {
    let Some(dir) = dicom_support::data("sunnybrook/dicoms/SCD0000301") else {
        return;
    };
    let stack = load_folder(&dir, &AssembleOptions::default())
        .unwrap()
        .stacks
        .remove(0);
    let masks = synthetic_masks(&stack);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("overlay.dcm");
    let series = cineseg::dicom::writer::SeriesId::new(9902);
    let (w, h) = (stack.grid.cols, stack.grid.rows);
    let frame = stack.frame(5, 3).expect("frame");
    let mask = masks.image(5, 3).unwrap();
    let plain = cineseg::report::overlay::overlay(
        &frame.pixels,
        mask,
        w,
        h,
        cineseg::report::overlay::OverlayStyle::Fill { alpha: 0.45 },
    )
    .unwrap();
    let img = cineseg::report::annotate::captioned_overlay(&plain, "Slice 6 of 10, ED").unwrap();
    let ctx = ctx_of(&stack);
    let sc = cineseg::dicom::sc::ScImage {
        image: &img,
        sources: frame.source.iter().collect(),
        instance_number: 1,
        description: "Slice 6 of 10, ED".into(),
    };
    cineseg::dicom::sc::write_sc(&ctx, &sc, &series, "cineseg results", &path).unwrap();
    let back = cineseg::dicom::read_file(&path).unwrap();
    assert_eq!(back.len(), 1);
    let k = img.width / w;
    assert_eq!(
        (back[0].rows, back[0].cols, back[0].samples_per_pixel),
        (img.height, img.width, 3)
    );
    let lv = mask.iter().position(|&m| m == LV).expect("an LV pixel");
    let (x, y) = (lv % w * k, lv / w * k);
    let i = y * img.width + x;
    let px = &back[0].pixels[3 * i..3 * i + 3];
    assert!(
        px[0] > px[1] && px[0] > px[2],
        "LV pixel is red-tinted: {px:?}"
    );
    // Filed under the source's patient and study, referencing the source image.
    let obj = dicom_object::open_file(&path).unwrap();
    let src_obj = dicom_object::open_file(&frame.source.as_ref().unwrap().path).unwrap();
    let text = |o: &dicom_object::DefaultDicomObject, t| {
        o.element(t)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
    };
    use dicom_dictionary_std::tags;
    for t in [
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::STUDY_INSTANCE_UID,
    ] {
        assert_eq!(
            text(&obj, t),
            text(&src_obj, t),
            "{t:?} copied from the source"
        );
    }
    assert!(text(&obj, tags::PATIENT_NAME).is_some_and(|n| !n.is_empty()));
    let refs = obj
        .element(tags::SOURCE_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    assert_eq!(
        refs[0]
            .element(tags::REFERENCED_SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0'),
        frame.source.as_ref().unwrap().sop_instance_uid
    );
    if let Some(errors) = dciodvfy_errors(&path) {
        let own: Vec<&String> = errors
            .iter()
            .filter(|l| {
                !l.contains("Leading zeroes") && !l.contains("contains invalid data values")
            })
            .collect();
        assert!(own.is_empty(), "dciodvfy errors: {own:?}");
    }
}

fn ctx_of(stack: &CineStack) -> StudyContext {
    StudyContext::of_stack(stack).expect("study context")
}
