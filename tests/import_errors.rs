//! `cineseg import` on broken datasets: a mask whose shape differs from its image, and a
//! truncated image, fail with errors naming the file; no half-written store is left behind.

use cineseg::io::write_labels;
use cineseg::nn::Preprocess;
use cineseg::store::import::import_acdc;
use std::path::Path;

fn patient(root: &Path, image_dims: [usize; 4], label_dims: [usize; 4]) {
    let dir = root.join("patient001");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Info.cfg"),
        "ED: 1\nES: 2\nGroup: NOR\nNbFrame: 2\nHeight: 180\nWeight: 80\n",
    )
    .unwrap();
    for f in [1, 2] {
        let n: usize = image_dims.iter().product();
        write_labels(
            &dir.join(format!("patient001_frame{f:02}.nii.gz")),
            image_dims,
            [1.5, 1.5, 10.0, 0.0],
            &vec![50u8; n],
        )
        .unwrap();
        let m: usize = label_dims.iter().product();
        write_labels(
            &dir.join(format!("patient001_frame{f:02}_gt.nii.gz")),
            label_dims,
            [1.5, 1.5, 10.0, 0.0],
            &vec![0u8; m],
        )
        .unwrap();
    }
}

#[test]
fn mask_of_another_shape_is_named() {
    let d = tempfile::tempdir().unwrap();
    patient(d.path(), [20, 24, 3, 1], [20, 22, 3, 1]);
    let out = d.path().join("store");
    let e = import_acdc(d.path(), &out, &Preprocess::default(), &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("patient001_frame01_gt.nii.gz") && e.contains("[20, 22, 3, 1]"),
        "{e}"
    );
    assert!(
        !out.join("index.json").exists(),
        "a failed import must not leave a usable-looking store"
    );
}

#[test]
fn truncated_image_is_named() {
    let d = tempfile::tempdir().unwrap();
    patient(d.path(), [20, 24, 3, 1], [20, 24, 3, 1]);
    let img = d.path().join("patient001/patient001_frame02.nii.gz");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&img, &bytes[..bytes.len() / 2]).unwrap();
    let e = import_acdc(
        d.path(),
        &d.path().join("store"),
        &Preprocess::default(),
        &|_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("patient001_frame02.nii.gz"), "{e}");
}
