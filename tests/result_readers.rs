//! What cineseg writes, read by the tools clinicians' systems use: dciodvfy validates every
//! DICOM object, highdicom reads the SR's measurements and the ED/ES SEGs' volumes, dcmqi (the
//! converter 3D Slicer uses) turns the ED SEG into a label map, headless Chromium renders
//! report.html, and the NIfTI mask of an oblique NIfTI input keeps its qform and sform.
//! `scripts/test.sh` installs the tools (a Python venv with highdicom, dcmqi and nibabel in
//! `CINESEG_PYTHON`); each test prints `skipped: <why>` when one is missing.

#[path = "dicom_support/mod.rs"]
mod dicom_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

/// The venv python with highdicom, dcmqi and nibabel.
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("CINESEG_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/cineseg-pyvenv/bin/python"))
        })?;
    let ok = Command::new(&p)
        .args(["-c", "import highdicom, nibabel"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(p)
    } else {
        println!(
            "skipped: no python with highdicom and nibabel ({}); run scripts/test.sh",
            p.display()
        );
        None
    }
}

/// A copy of a Sunnybrook series with a named adult male patient of known height and weight,
/// so BSA indexing and reference ranges are exercised.
fn patient_series(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let path = e.unwrap().path();
        let Ok(mut obj) = dicom_object::open_file(&path) else {
            continue;
        };
        for (tag, vr, v) in [
            (tags::PATIENT_NAME, VR::PN, "Testperson^Anna Maria"),
            (tags::PATIENT_SEX, VR::CS, "M"),
            (tags::PATIENT_AGE, VR::AS, "055Y"),
            (tags::PATIENT_SIZE, VR::DS, "1.80"),
            (tags::PATIENT_WEIGHT, VR::DS, "80"),
            (tags::STUDY_DATE, VR::DA, "20120301"),
        ] {
            obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
        }
        obj.write_to_file(dst.join(path.file_name().unwrap()))
            .unwrap();
    }
}

fn segment(input: &Path, out: &Path) -> PathBuf {
    let o = Command::new(env!("CARGO_BIN_EXE_cineseg"))
        .args(["segment"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .env("CINESEG_NO_CUDA", "1")
        .output()
        .expect("run cineseg segment");
    assert!(
        o.status.success(),
        "segment failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

/// dciodvfy errors of `path`, less those about the source's own UIDs (Sunnybrook's have
/// leading zeros, which every object referencing them inherits).
fn own_dciodvfy_errors(path: &Path) -> Option<Vec<String>> {
    let out = Command::new("dciodvfy").arg(path).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| l.starts_with("Error"))
            .filter(|l| {
                !l.contains("Leading zeroes") && !l.contains("contains invalid data values")
            })
            .map(String::from)
            .collect(),
    )
}

#[test]
fn sr_segs_and_captures_validate_and_read_back_in_highdicom_and_dcmqi() {
    let Some(src) = dicom_support::data("sunnybrook/dicoms/SCD0000301") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    patient_series(&src, &tmp.path().join("in"));
    let dir = segment(&tmp.path().join("in"), &tmp.path().join("out"));

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 2);
    let bsa = report["physiology"]["bsa_m2"]
        .as_f64()
        .expect("BSA from height and weight");
    assert!(
        (bsa - 2.0).abs() < 1e-9,
        "Mosteller 180 cm 80 kg = 2.0 m2, got {bsa}"
    );
    let ms = report["measurements"].as_array().unwrap();
    let edv = ms
        .iter()
        .find(|m| m["quantity"] == "lv_edv")
        .expect("LV EDV");
    let (v, i) = (
        edv["value"].as_f64().unwrap(),
        edv["indexed"].as_f64().unwrap(),
    );
    assert!((v / bsa - i).abs() < 1e-9, "EDV index = EDV / BSA");
    assert!(
        edv["range"]["lower"].is_number(),
        "adult male: LV EDV has a reference range"
    );
    for q in ["heart_rate", "cardiac_output", "rv_sv", "bsa"] {
        assert!(ms.iter().any(|m| m["quantity"] == q), "{q} reported");
    }

    // The ED SEG: a 3D SEG with SpatialLocationsPreserved, LV myocardium coded as such, local
    // time with its UTC offset, and the model's content id as AlgorithmVersion.
    let seg = dicom_object::open_file(dir.join("seg_ed.dcm")).unwrap();
    let str_of = |o: &dicom_object::InMemDicomObject, t| {
        o.element(t)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
    };
    let offset = str_of(&seg, tags::TIMEZONE_OFFSET_FROM_UTC).expect("TimezoneOffsetFromUTC");
    assert!(
        offset.len() == 5 && (offset.starts_with('+') || offset.starts_with('-')),
        "{offset}"
    );
    let frame = &seg
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    let deriv = &frame
        .element(tags::DERIVATION_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    let source = &deriv
        .element(tags::SOURCE_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    assert_eq!(
        str_of(source, tags::SPATIAL_LOCATIONS_PRESERVED).as_deref(),
        Some("YES")
    );
    let segments = seg
        .element(tags::SEGMENT_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    let kind = |item: &dicom_object::InMemDicomObject| {
        let code = &item
            .element(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        str_of(code, tags::CODE_VALUE).unwrap()
    };
    let kinds: Vec<String> = segments.iter().map(kind).collect();
    assert_eq!(
        kinds,
        ["87878005", "49848007", "53085002"],
        "LV, LV myocardium, RV"
    );
    let algo = &segments[0]
        .element(tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    let content_id = report["model"]["content_id"].as_str().unwrap();
    assert!(
        str_of(algo, tags::ALGORITHM_VERSION).is_some_and(|v| v.starts_with(content_id)),
        "AlgorithmVersion names the model content id {content_id}"
    );

    match Command::new("dciodvfy").arg("-h").output() {
        Err(_) => println!("skipped: dciodvfy not installed (dicom3tools)"),
        Ok(_) => {
            let mut files = vec![
                "sr.dcm",
                "seg.dcm",
                "seg_ed.dcm",
                "seg_es.dcm",
                "summary.dcm",
            ]
            .into_iter()
            .map(|f| dir.join(f))
            .collect::<Vec<_>>();
            let first_overlay = std::fs::read_dir(dir.join("overlays"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .min()
                .expect("an overlay");
            files.push(first_overlay);
            for f in files {
                let errors = own_dciodvfy_errors(&f).expect("dciodvfy");
                assert!(
                    errors.is_empty(),
                    "{}: dciodvfy errors {errors:?}",
                    f.display()
                );
            }
        }
    }

    let Some(py) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readers/check_results.py");
    let mut cmd = Command::new(&py);
    cmd.args(["-W", "ignore"]).arg(&script).arg(&dir);
    let dcmqi = py.with_file_name("segimage2itkimage");
    if dcmqi.exists() {
        cmd.arg("--dcmqi").arg(&dcmqi);
    } else {
        println!("skipped: dcmqi's segimage2itkimage not in the venv");
    }
    let o = cmd.output().expect("run the checker");
    let text = String::from_utf8_lossy(&o.stdout);
    println!("{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.status.success() && text.contains("all checks passed"),
        "reader checks failed"
    );
    let indexed = text
        .lines()
        .filter(|l| l.contains("ml/m2") || l.contains("g/m2"))
        .count();
    assert!(indexed >= 7, "indexed values in the SR ({indexed})");
}

#[test]
fn report_page_renders_in_headless_chromium() {
    let Some(src) = dicom_support::data("sunnybrook/dicoms/SCD0000301") else {
        return;
    };
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        println!("skipped: chromium not installed");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    patient_series(&src, &tmp.path().join("in"));
    let dir = segment(&tmp.path().join("in"), &tmp.path().join("out"));
    let url = format!("file://{}", dir.join("report.html").display());
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--dump-dom",
        ])
        .arg(&url)
        .output()
        .expect("chromium");
    let dom = String::from_utf8_lossy(&o.stdout);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "chromium failed: {log}");
    assert!(
        !log.contains("Uncaught") && !log.contains("CONSOLE"),
        "page errors: {log}"
    );
    for needle in [
        "Testperson, Anna Maria",
        "LV ejection fraction",
        "Indexed (BSA)",
        "<svg",
        "LV blood pool",
        "Time after R wave (ms)",
        "Per slice",
        "Heart rate",
        "Kawel-Boehm",
    ] {
        assert!(
            dom.contains(needle),
            "{needle} missing from the rendered page"
        );
    }
    let shot = tmp.path().join("report.png");
    let s = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1200,2600",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium screenshot");
    assert!(s.status.success() && std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000));
    if let Ok(keep) = std::env::var("CINESEG_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
}

/// A NIfTI header of an oblique acquisition: rotated qform and a matching sform.
fn oblique_header(dims: [usize; 4], spacing: [f32; 3]) -> nifti::NiftiHeader {
    // 20 degrees about x, then 30 about z: quaternion of that rotation.
    let (ax, az) = (20f32.to_radians() / 2.0, 30f32.to_radians() / 2.0);
    let (qw, qx, qy, qz) = (
        ax.cos() * az.cos(),
        ax.sin() * az.cos(),
        ax.sin() * az.sin(),
        ax.cos() * az.sin(),
    );
    let r = [
        [
            1.0 - 2.0 * (qy * qy + qz * qz),
            2.0 * (qx * qy - qz * qw),
            2.0 * (qx * qz + qy * qw),
        ],
        [
            2.0 * (qx * qy + qz * qw),
            1.0 - 2.0 * (qx * qx + qz * qz),
            2.0 * (qy * qz - qx * qw),
        ],
        [
            2.0 * (qx * qz - qy * qw),
            2.0 * (qy * qz + qx * qw),
            1.0 - 2.0 * (qx * qx + qy * qy),
        ],
    ];
    let off = [-120.5f32, 33.25, 270.0];
    let row = |i: usize| {
        [
            r[i][0] * spacing[0],
            r[i][1] * spacing[1],
            r[i][2] * spacing[2],
            off[i],
        ]
    };
    nifti::NiftiHeader {
        dim: [
            4,
            dims[0] as u16,
            dims[1] as u16,
            dims[2] as u16,
            dims[3] as u16,
            1,
            1,
            1,
        ],
        pixdim: [1.0, spacing[0], spacing[1], spacing[2], 0.03, 1.0, 1.0, 1.0],
        qform_code: 1,
        sform_code: 1,
        quatern_b: qx,
        quatern_c: qy,
        quatern_d: qz,
        quatern_x: off[0],
        quatern_y: off[1],
        quatern_z: off[2],
        srow_x: row(0),
        srow_y: row(1),
        srow_z: row(2),
        ..nifti::NiftiHeader::default()
    }
}

#[test]
fn nifti_mask_of_an_oblique_input_keeps_its_qform_and_sform() {
    use cineseg::io::nifti::{write_labels_at, LabelGeometry};
    use nifti::{NiftiObject, ReaderOptions};
    // A phantom cine as the image (u8 intensities are a valid NIfTI image too).
    let p = cineseg::phantom::PhantomParams {
        slices: 4,
        phases: 3,
        ..Default::default()
    };
    let ph = cineseg::phantom::generate(&p, 7).expect("phantom");
    let dims = [p.width, p.height, p.slices, p.phases];
    let max = ph.images.iter().flatten().fold(1e-6f32, |m, v| m.max(*v));
    let mut img = Vec::new();
    for t in 0..p.phases {
        for z in 0..p.slices {
            img.extend(
                ph.images[z * p.phases + t]
                    .iter()
                    .map(|v| (v / max * 255.0).clamp(0.0, 255.0) as u8),
            );
        }
    }
    let header = oblique_header(dims, [p.pixel_mm, p.pixel_mm, p.slice_mm]);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("oblique.nii.gz");
    write_labels_at(&input, dims, LabelGeometry::Like(&header), &img).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_cineseg"))
        .arg("segment")
        .arg(&input)
        .arg("--out")
        .arg(tmp.path())
        .env("CINESEG_NO_CUDA", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |p: &Path| ReaderOptions::new().read_file(p).unwrap().header().clone();
    let (a, b) = (read(&input), read(&tmp.path().join("oblique_seg.nii.gz")));
    assert_eq!((b.qform_code, b.sform_code), (a.qform_code, a.sform_code));
    assert_eq!(
        (
            b.quatern_b,
            b.quatern_c,
            b.quatern_d,
            b.quatern_x,
            b.quatern_y,
            b.quatern_z
        ),
        (
            a.quatern_b,
            a.quatern_c,
            a.quatern_d,
            a.quatern_x,
            a.quatern_y,
            a.quatern_z
        )
    );
    assert_eq!(
        (b.srow_x, b.srow_y, b.srow_z),
        (a.srow_x, a.srow_y, a.srow_z)
    );
    assert_eq!(&b.pixdim[1..4], &a.pixdim[1..4]);
    assert_eq!(&b.dim[1..5], &a.dim[1..5]);
}
