//! Hostile and broken input files (issue 10, items 10, 14, 16, 17): a file nesting 100 000
//! sequences, a deflated data set that lies about a length, a SeriesDescription carrying a
//! terminal escape, model files whose metadata claims absurd sizes, and files the CLI must
//! reject with exit status 3 and a message that says what is wrong. Every file is crafted here.

mod daemon_support;
mod hostile_support;

use cineseg::dicom::instance::parse;
use cineseg::dicom::DicomError;
use cineseg::nn::config::Normalisation;
use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, Preprocess, UNetConfig, UNetParams};
use hostile_support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cineseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cineseg"))
        .args(args)
        .env("CINESEG_NO_CUDA", "1")
        .output()
        .expect("run cineseg")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---- item 10: nesting depth -------------------------------------------------------------

#[test]
fn hundred_thousand_nested_sequences_are_refused_not_a_stack_overflow() {
    let bytes = nested_file(100_000);
    let err = parse(&bytes, Path::new("deep.dcm")).expect_err("must be refused");
    assert!(matches!(err, DicomError::Parse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("deep.dcm") && msg.contains("nest more than 64 levels"),
        "{msg}"
    );
}

#[test]
fn nesting_at_the_limit_parses_on_a_small_stack_and_one_more_is_refused() {
    // 64 levels: parsed and dropped on a 1 MiB thread stack (the daemon's workers have 2 MiB).
    let ok = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let obj = parse(&nested_file(64), Path::new("ok.dcm")).map(|_| ());
            obj.map_err(|e| e.to_string())
        })
        .expect("spawn")
        .join()
        .expect("no stack overflow");
    assert_eq!(ok, Ok(()));
    let err = parse(&nested_file(65), Path::new("x.dcm")).expect_err("65 levels");
    assert!(err.to_string().contains("level 65"), "{err}");
}

#[test]
fn deflated_data_set_is_bounded_like_a_plain_one() {
    // Deep nesting hidden inside a deflated stream.
    let mut file = header(DEFLATED);
    file.extend(deflate(&nested_dataset(100_000)));
    let err = parse(&file, Path::new("deflated-deep.dcm")).expect_err("deep");
    assert!(err.to_string().contains("nest more than 64"), "{err}");
    // A length inside the deflated stream claiming far more than is there.
    let mut raw = el((0x0008, 0x0060), b"CS", b"MR");
    raw.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
    raw.extend_from_slice(&0x2000_0000u32.to_le_bytes());
    raw.extend_from_slice(&[1, 2, 3, 4]);
    let mut file = header(DEFLATED);
    file.extend(deflate(&raw));
    let err = parse(&file, Path::new("deflated-lie.dcm")).expect_err("lie");
    assert!(
        err.to_string().contains("(7FE0,0010)") && err.to_string().contains("536870912"),
        "{err}"
    );
    // An honest deflated data set still parses.
    let mut file = header(DEFLATED);
    file.extend(deflate(&nested_dataset(3)));
    parse(&file, Path::new("deflated-ok.dcm")).expect("honest deflated file");
}

#[test]
fn cli_inspect_of_a_deeply_nested_file_exits_3_with_a_message() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("deep.dcm");
    std::fs::write(&f, nested_file(100_000)).unwrap();
    let out = cineseg(&["inspect", f.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "status {:?}, stderr {err}",
        out.status
    );
    assert!(err.contains("nest more than 64 levels"), "{err}");
    assert_eq!(err.matches("deep.dcm").count(), 1, "path once: {err}");
}

#[test]
fn cli_inspect_of_a_folder_with_a_deeply_nested_file_reports_the_rest() {
    let d = tempfile::tempdir().unwrap();
    daemon_support::synthetic_series(d.path(), "1.2.826.0.1.3680043.10.1", 2, 3);
    std::fs::write(d.path().join("zz-deep.dcm"), nested_file(100_000)).unwrap();
    let out = cineseg(&["inspect", d.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("1 cine stack(s)"), "{stdout}");
    assert!(stdout.contains("slices x phases  2 x 3"), "{stdout}");
    assert!(
        stdout.contains("zz-deep.dcm") && stdout.contains("nest more than 64"),
        "{stdout}"
    );
}

// ---- item 14 (display): control characters from DICOM values -----------------------------

#[test]
fn inspect_escapes_a_terminal_title_sequence_in_series_description() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let d = tempfile::tempdir().unwrap();
    let files = daemon_support::synthetic_series(d.path(), "1.2.826.0.1.3680043.10.2", 1, 2);
    for f in &files {
        let mut obj = dicom_object::open_file(f).unwrap();
        obj.put(DataElement::new(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from("Cine\x1b]0;pwned\x07SAX\u{9b}"),
        ));
        obj.write_to_file(f).unwrap();
    }
    let out = cineseg(&["inspect", d.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "raw control character in {stdout:?}"
    );
    assert!(stdout.contains(r"Cine\x1b]0;pwned\x07SAX\x9b"), "{stdout}");
}

// ---- item 17: exit status 3 and what is wrong ----------------------------------------------

#[test]
fn cli_bad_dicom_exits_3_naming_the_file_once() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("cut.dcm");
    let mut bytes = header(EXPLICIT_LE);
    bytes.extend(el((0x0008, 0x0060), b"CS", b"MR"));
    bytes.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 0, 1, 0, 0, 9, 9]);
    std::fs::write(&f, bytes).unwrap();
    let out = cineseg(&["inspect", f.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("claims 256 bytes"), "{err}");
    assert_eq!(err.matches("cut.dcm").count(), 1, "path once: {err}");
    // A missing path is a usage error (2), not bad data.
    let out = cineseg(&["inspect", d.path().join("absent").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn cli_inspect_of_one_file_says_which_geometry_is_missing() {
    use dicom_dictionary_std::tags;
    let d = tempfile::tempdir().unwrap();
    let files = daemon_support::synthetic_series(d.path(), "1.2.826.0.1.3680043.10.3", 1, 1);
    let mut obj = dicom_object::open_file(&files[0]).unwrap();
    obj.remove_element(tags::IMAGE_POSITION_PATIENT);
    obj.write_to_file(&files[0]).unwrap();
    let out = cineseg(&["inspect", files[0].to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("ImagePositionPatient missing in 1 frame(s)"),
        "{err}"
    );
    assert_eq!(err.matches("1.dcm").count(), 1, "path once: {err}");
}

#[test]
fn cli_help_documents_the_exit_statuses() {
    let out = cineseg(&["--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("2 usage error") && help.contains("3 bad input data"),
        "{help}"
    );
}

// ---- item 16: model files that claim absurd sizes -----------------------------------------

/// A safetensors file with no tensors and the given metadata.
fn bare_safetensors(meta: &[(&str, &str)]) -> Vec<u8> {
    let m: serde_json::Map<String, serde_json::Value> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let mut header = serde_json::json!({ "__metadata__": m })
        .to_string()
        .into_bytes();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out
}

fn tiny_model_with(dir: &Path, pre: Preprocess) -> PathBuf {
    let p = dir.join("m.safetensors");
    let m = Model::new(
        UNetParams::init(&UNetConfig::new(4, 2), 1).unwrap(),
        Some(pre),
    );
    std::fs::write(&p, m.to_bytes(StoreAs::F32).unwrap()).unwrap();
    p
}

#[test]
fn a_200_byte_model_claiming_a_huge_base_is_refused_before_allocating() {
    let cfg = r#"{"in_channels":1,"classes":4,"base":1099511627776,"depth":4}"#;
    let bytes = bare_safetensors(&[("format", "cineseg-unet"), ("config", cfg)]);
    assert!(bytes.len() <= 200, "{} bytes", bytes.len());
    let err = Model::from_bytes(&bytes, Path::new("huge.safetensors")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("huge.safetensors") && msg.contains("base 1099511627776"),
        "{msg}"
    );
    // Within the bounds, but far more parameters than 200 bytes can hold.
    let cfg = r#"{"in_channels":1,"classes":4,"base":1024,"depth":8}"#;
    let bytes = bare_safetensors(&[("format", "cineseg-unet"), ("config", cfg)]);
    let msg = Model::from_bytes(&bytes, Path::new("wide.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("wide.safetensors") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn cli_segment_with_a_huge_base_model_exits_4_with_a_message() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("huge.safetensors");
    let cfg = r#"{"in_channels":1,"classes":4,"base":1099511627776,"depth":4}"#;
    std::fs::write(
        &model,
        bare_safetensors(&[("format", "cineseg-unet"), ("config", cfg)]),
    )
    .unwrap();
    let series = d.path().join("series");
    daemon_support::synthetic_series(&series, "1.2.826.0.1.3680043.10.4", 1, 2);
    let out = cineseg(&[
        "segment",
        series.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        d.path().join("out").to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "status {:?}: {err}", out.status);
    assert!(
        err.contains("huge.safetensors") && err.contains("base"),
        "{err}"
    );
}

#[test]
fn preprocess_numbers_in_a_model_file_are_bounded_by_name() {
    let d = tempfile::tempdir().unwrap();
    let base = Preprocess {
        spacing_mm: 1.5,
        size: 32,
        normalisation: Normalisation::default(),
    };
    let cases = [
        (
            Preprocess {
                size: 1 << 31,
                ..base.clone()
            },
            "preprocess.size 2147483648",
        ),
        (
            Preprocess {
                spacing_mm: 1e-6,
                ..base.clone()
            },
            "preprocess.spacing_mm",
        ),
        (
            Preprocess {
                normalisation: Normalisation {
                    low_percentile: 99.0,
                    high_percentile: 1.0,
                    ..Normalisation::default()
                },
                ..base.clone()
            },
            "percentiles",
        ),
    ];
    for (pre, field) in cases {
        let p = tiny_model_with(d.path(), pre);
        let msg = Model::load(&p).unwrap_err().to_string();
        assert!(
            msg.contains("m.safetensors") && msg.contains(field),
            "{field}: {msg}"
        );
    }
    Model::load(&tiny_model_with(d.path(), base)).expect("sane preprocess loads");
}

// ---- item 11: allocations bounded by the bytes received (fuzz findings) ----------------

/// A file meta group whose declared group length runs past its last real element, into
/// zeros: the meta reader consumes more than the elements of group 0002, so the data set
/// starts later than a walk of the whole file assumes, and there a zero-filled header claims
/// 4 GB. Shaped after a 498-byte input libFuzzer found (2026-12-03) that made the reader
/// reserve 4 GB; UIDs here are made up. Must be refused by the length check, not allocated.
#[test]
fn a_meta_group_running_into_zeros_does_not_reserve_gigabytes() {
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    let el = |f: &mut Vec<u8>, tag: (u16, u16), vr: &[u8; 2], value: &[u8]| {
        f.extend_from_slice(&tag.0.to_le_bytes());
        f.extend_from_slice(&tag.1.to_le_bytes());
        f.extend_from_slice(vr);
        if vr == b"OB" {
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            f.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        f.extend_from_slice(value);
    };
    el(&mut f, (0x0002, 0x0000), b"UL", &232u32.to_le_bytes());
    el(&mut f, (0x0002, 0x0001), b"OB", &[0, 1]);
    el(
        &mut f,
        (0x0002, 0x0002),
        b"UI",
        b"1.2.840.10008.5.1.4.1.1.7\0",
    );
    let sop = format!("{:<64}", "1.2.826.0.1.3680043.10.99.1").replace(' ', "0");
    el(&mut f, (0x0002, 0x0003), b"UI", sop.as_bytes());
    el(&mut f, (0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2\0");
    // ImplementationClassUID claiming 48 bytes of which 6 are text: the rest are zeros
    let mut impl_uid = b"1.2.82".to_vec();
    impl_uid.resize(48, 0);
    el(&mut f, (0x0002, 0x0012), b"UI", &impl_uid);
    f.resize(0x184, 0);
    f.extend_from_slice(&[0x02, 0xF6]);
    f.resize(0x1D3, 0);
    f.push(0xF7);
    f.resize(0x1F2, 0);
    let t = std::time::Instant::now();
    let r = parse(&f, Path::new("meta-into-zeros.dcm"));
    let elapsed = t.elapsed();
    let Err(DicomError::Parse { reason, .. }) = r else {
        panic!("expected a parse error, got {r:?}");
    };
    assert!(
        reason.contains("claims"),
        "refused by the length check: {reason}"
    );
    assert!(
        elapsed < std::time::Duration::from_secs(1),
        "refused at once, not after reserving memory ({elapsed:?})"
    );
}
