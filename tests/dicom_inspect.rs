//! `inspect` summarises a real folder in words and in JSON.

mod dicom_support;

use cineseg::dicom::inspect;

#[test]
fn inspect_summarises_a_sunnybrook_folder() {
    let Some(dir) = dicom_support::data("sunnybrook/dicoms/SCD0000201") else {
        return;
    };
    let report = inspect(&dir).unwrap();
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.frames_read, 260);
    assert_eq!(report.stacks.len(), 1);
    let s = &report.stacks[0];
    assert_eq!((s.slices, s.phases), (13, 20));
    assert!(s.plane.starts_with("oblique"), "{}", s.plane);
    assert!(
        text.contains("13 x 20") && text.contains("slice spacing 10.00 mm"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(json["stacks"][0]["slices"], 13);
    assert_eq!(
        json["stacks"][0]["corrections"].as_array().map(|a| a.len()),
        Some(0)
    );
}

#[test]
fn inspect_reports_unusable_files_in_a_mixed_folder() {
    let Some(dir) = dicom_support::data("dicom-corpus/pydicom_data") else {
        return;
    };
    let report = inspect(&dir).unwrap();
    assert!(report
        .skipped
        .iter()
        .any(|s| s.path.ends_with("MR_truncated.dcm")));
    assert!(!report.stacks.is_empty());
    println!("{report}");
}
