//! Shared helpers for the DICOM integration tests: where the real data lives, and how to make
//! broken copies of real series by editing their tags in a temporary folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::{open_file, DefaultDicomObject};

/// `$CINESEG_DATA` or `../shared/data` beside the checkout, if present.
pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CINESEG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    dir.is_dir().then_some(dir)
}

/// A sub-folder of the data dir, or `None` after printing why the test is skipped.
pub fn data(sub: &str) -> Option<PathBuf> {
    match data_dir().map(|d| d.join(sub)).filter(|p| p.exists()) {
        Some(p) => Some(p),
        None => {
            eprintln!("skipped: real data folder {sub} not found (set CINESEG_DATA or provide ../shared/data)");
            None
        }
    }
}

/// Sunnybrook file `N.dcm` of a patient folder.
pub fn sunnybrook_file(patient: &str, n: usize) -> Option<PathBuf> {
    data(&format!("sunnybrook/dicoms/{patient}")).map(|d| d.join(format!("{n}.dcm")))
}

/// Open a real file for editing.
pub fn open(path: &Path) -> DefaultDicomObject {
    open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replace a string-valued attribute.
pub fn set_str(obj: &mut DefaultDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// Replace a multi-valued DS attribute.
pub fn set_ds(obj: &mut DefaultDicomObject, tag: Tag, values: &[f64]) {
    let s: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
    set_str(obj, tag, VR::DS, &s.join("\\"));
}

/// Read a multi-valued numeric attribute.
pub fn get_f64s(obj: &DefaultDicomObject, tag: Tag) -> Vec<f64> {
    obj.element(tag)
        .map(|e| e.to_multi_float64().unwrap_or_default())
        .unwrap_or_default()
}

/// Write an edited object.
pub fn save(obj: &DefaultDicomObject, path: &Path) {
    obj.write_to_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Copy all files of a folder into `dst`, each passed through `edit` (return false to drop it).
pub fn copy_series(
    src: &Path,
    dst: &Path,
    mut edit: impl FnMut(usize, &mut DefaultDicomObject) -> bool,
) {
    std::fs::create_dir_all(dst).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let n: usize = f
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut obj = open(&f);
        if edit(n, &mut obj) {
            let name = f.file_name().unwrap();
            save(&obj, &dst.join(name));
        }
    }
}
