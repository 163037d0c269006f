//! Every file of the robustness corpus either decodes or fails with an error naming the file;
//! nothing panics. Known-good files must decode and the two broken-on-purpose files must fail.

mod dicom_support;

use std::path::{Path, PathBuf};

use cineseg::dicom::read_file;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_corpus_file_decodes_or_errors_cleanly() {
    let Some(dir) = dicom_support::data("dicom-corpus") else {
        return;
    };
    let mut files = Vec::new();
    walk(&dir, &mut files);
    files.sort();
    let (mut ok, mut failed) = (0, 0);
    for f in &files {
        let name = f.strip_prefix(&dir).unwrap().display().to_string();
        let result = std::panic::catch_unwind(|| read_file(f));
        let result = result.unwrap_or_else(|_| panic!("{name}: panicked"));
        match result {
            Ok(v) => {
                ok += 1;
                assert!(!v.is_empty());
                let px: usize = v.iter().map(|i| i.pixels.len()).sum();
                assert!(v
                    .iter()
                    .all(|i| i.pixels.len() == i.rows * i.cols * i.samples_per_pixel));
                assert!(v.iter().all(|i| i.pixels.iter().all(|p| p.is_finite())));
                println!(
                    "ok    {name}: {} frame(s) {}x{}, {} samples, {}",
                    v.len(),
                    v[0].rows,
                    v[0].cols,
                    px,
                    v[0].transfer_syntax
                );
            }
            Err(e) => {
                failed += 1;
                let msg = e.to_string();
                assert!(
                    msg.contains(f.file_name().unwrap().to_str().unwrap()),
                    "error must name the file: {msg}"
                );
                println!("error {name}: {msg}");
            }
        }
    }
    println!("{} files: {ok} decoded, {failed} clean errors", files.len());
    for broken in [
        "pydicom_data/MR_truncated.dcm",
        "pydicom_data/emri_small_jpeg_2k_lossless_too_short.dcm",
    ] {
        assert!(read_file(&dir.join(broken)).is_err(), "{broken} must fail");
    }
    let must_decode = [
        "pydicom_data/MR_small.dcm",
        "pydicom_data/MR_small_RLE.dcm",
        "pydicom_data/MR_small_bigendian.dcm",
        "pydicom_data/MR_small_implicit.dcm",
        "pydicom_data/MR_small_jp2klossless.dcm",
        "pydicom_data/emri_small.dcm",
        "pydicom_data/emri_small_jpeg_2k_lossless.dcm",
        "pydicom_data/MR2_J2KI.dcm",
        "pydicom_data/MR2_J2KR.dcm",
        "nibabel_nicom/slicethickness_empty_string.dcm",
        "dcm_qa_enh/Philips/IM_0027_fMAP.dcm",
    ];
    for f in must_decode {
        let v = read_file(&dir.join(f)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!v.is_empty(), "{f}");
    }
}

#[test]
fn lossless_codecs_agree_with_uncompressed_pixels() {
    let Some(dir) = dicom_support::data("dicom-corpus/pydicom_data") else {
        return;
    };
    let reference = read_file(&dir.join("emri_small.dcm")).unwrap();
    assert!(reference.len() > 1, "emri_small is multi-frame");
    let variants = [
        "emri_small_RLE.dcm",
        "emri_small_big_endian.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ];
    for v in variants {
        let other = read_file(&dir.join(v)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.len(), reference.len(), "{v}");
        for (a, b) in reference.iter().zip(&other) {
            assert_eq!(a.pixels, b.pixels, "{v} frame {}", a.frame);
        }
    }
}

#[test]
fn enhanced_mr_yields_one_instance_per_frame_with_its_own_geometry() {
    let Some(dir) = dicom_support::data("dicom-corpus/dcm_qa_enh/Philips") else {
        return;
    };
    let v = read_file(&dir.join("IM_0027_fMAP.dcm")).unwrap();
    assert!(v.len() > 1);
    assert!(v.iter().all(|i| i.geometry.position.is_some()
        && i.geometry.orientation.is_some()
        && i.geometry.pixel_spacing.is_some()));
    let positions: std::collections::HashSet<String> = v
        .iter()
        .map(|i| format!("{:?}", i.geometry.position))
        .collect();
    assert!(positions.len() > 1, "per-frame positions differ");
}

#[test]
fn header_claiming_four_gigapixels_fails_fast() {
    let Some(f) = dicom_support::sunnybrook_file("SCD0000301", 1) else {
        return;
    };
    let mut obj = dicom_support::open(&f);
    obj.put(dicom_core::DataElement::new(
        dicom_core::Tag(0x0028, 0x0010),
        dicom_core::VR::US,
        dicom_core::PrimitiveValue::from(65535u16),
    ));
    obj.put(dicom_core::DataElement::new(
        dicom_core::Tag(0x0028, 0x0011),
        dicom_core::VR::US,
        dicom_core::PrimitiveValue::from(65535u16),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.dcm");
    dicom_support::save(&obj, &path);
    let t = std::time::Instant::now();
    let err = read_file(&path).unwrap_err();
    assert!(t.elapsed().as_secs_f64() < 1.0);
    assert!(
        matches!(err, cineseg::dicom::DicomError::TooLarge { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("huge.dcm"));
}

/// 12-bit lossy JPEG (what MR scanners write when asked to compress) must give a clear
/// "unsupported" error naming the file, never garbage or a panic. dcmtk makes the fixture.
#[test]
fn twelve_bit_lossy_jpeg_is_a_clear_unsupported_error() {
    let Some(src) = dicom_support::sunnybrook_file("SCD0000301", 1) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("jpeg12.dcm");
    let status = std::process::Command::new("dcmcjpeg")
        .arg("+ee")
        .arg(&src)
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => {
            eprintln!("skipped: dcmcjpeg (dcmtk) not available to make a 12-bit JPEG fixture");
            return;
        }
    }
    let err = read_file(&out).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        matches!(err, cineseg::dicom::DicomError::Unsupported { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("jpeg12.dcm") && msg.contains("12-bit"),
        "{msg}"
    );
}
