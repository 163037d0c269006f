//! Frame store: round trip through the memory maps, atomic replacement, and clear errors for
//! damaged stores.

use cineseg::image::Phase;
use cineseg::nn::Preprocess;
use cineseg::store::{FrameMeta, FrameStore, StoreError};
use std::path::Path;

fn pre(size: usize) -> Preprocess {
    Preprocess {
        size,
        ..Preprocess::default()
    }
}

fn meta(i: usize) -> FrameMeta {
    FrameMeta {
        patient_id: format!("patient{:03}", i / 3),
        group: "NOR".into(),
        slice: i % 3,
        phase_index: i,
        phase: if i.is_multiple_of(2) {
            Phase::Ed
        } else {
            Phase::Es
        },
        labelled: vec![true, true, i.is_multiple_of(2), false],
        source: format!("/data/p{i}.nii.gz"),
        native_spacing: [1.25, 1.5 + i as f32],
    }
}

fn frame(i: usize, size: usize) -> (Vec<f32>, Vec<u8>) {
    let img = (0..size * size)
        .map(|k| (k as f32 * 0.37 + i as f32).sin())
        .collect();
    let mask = (0..size * size).map(|k| ((k + i) % 4) as u8).collect();
    (img, mask)
}

fn write_store(dir: &Path, n: usize, size: usize) {
    let mut w = FrameStore::create(dir, &pre(size), 4).unwrap();
    for i in 0..n {
        let (img, mask) = frame(i, size);
        w.push(&img, &mask, meta(i)).unwrap();
    }
    assert_eq!(w.finish().unwrap(), n);
}

#[test]
fn round_trip_through_memory_maps() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("frames");
    write_store(&store_dir, 7, 16);
    let s = FrameStore::open(&store_dir).unwrap();
    assert_eq!((s.len(), s.classes(), s.frame_len()), (7, 4, 256));
    assert_eq!(s.preprocess(), &pre(16));
    for i in 0..7 {
        let (img, mask) = frame(i, 16);
        assert_eq!(s.image(i), &img[..]);
        assert_eq!(s.mask(i), &mask[..]);
        assert_eq!(s.meta(i), &meta(i));
    }
    let names: Vec<String> = std::fs::read_dir(&store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "no temporary files left: {names:?}");
    assert_eq!(
        std::fs::metadata(store_dir.join("images.f32"))
            .unwrap()
            .len(),
        7 * 256 * 4
    );
}

#[test]
fn empty_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    FrameStore::create(dir.path(), &pre(8), 4)
        .unwrap()
        .finish()
        .unwrap();
    let s = FrameStore::open(dir.path()).unwrap();
    assert!(s.is_empty() && s.frames().is_empty());
}

#[test]
fn push_rejects_frames_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = FrameStore::create(dir.path(), &pre(4), 4).unwrap();
    let ok = (vec![0.5f32; 16], vec![1u8; 16]);
    assert!(matches!(
        w.push(&ok.0[..15], &ok.1, meta(0)),
        Err(StoreError::Frame { .. })
    ));
    assert!(w.push(&ok.0, &ok.1[..15], meta(0)).is_err());
    assert!(w.push(&ok.0, &[4u8; 16], meta(0)).is_err(), "class 4 of 4");
    let mut nan = ok.0.clone();
    nan[3] = f32::NAN;
    assert!(w.push(&nan, &ok.1, meta(0)).is_err());
    let mut m = meta(0);
    m.labelled.pop();
    assert!(w.push(&ok.0, &ok.1, m).is_err());
    w.push(&ok.0, &ok.1, meta(0)).unwrap();
    assert_eq!(w.len(), 1);
}

#[test]
fn an_unfinished_writer_leaves_the_old_store_intact() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), 3, 8);
    {
        let mut w = FrameStore::create(dir.path(), &pre(8), 4).unwrap();
        let (img, mask) = frame(9, 8);
        w.push(&img, &mask, meta(9)).unwrap();
        // dropped without finish()
    }
    let s = FrameStore::open(dir.path()).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "temporary files removed"
    );
    // A finished rewrite replaces it.
    write_store(dir.path(), 5, 8);
    assert_eq!(FrameStore::open(dir.path()).unwrap().len(), 5);
}

fn open_err(dir: &Path) -> String {
    let e = FrameStore::open(dir).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    e.to_string()
}

#[test]
fn damaged_stores_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_store(d, 4, 8);

    // Truncated images.
    let images = std::fs::read(d.join("images.f32")).unwrap();
    std::fs::write(d.join("images.f32"), &images[..images.len() - 4]).unwrap();
    let e = open_err(d);
    assert!(e.contains("images.f32") && e.contains("truncated"), "{e}");
    std::fs::write(d.join("images.f32"), &images).unwrap();

    // Masks longer than the index says.
    let masks = std::fs::read(d.join("masks.u8")).unwrap();
    let mut longer = masks.clone();
    longer.extend_from_slice(&[0; 64]);
    std::fs::write(d.join("masks.u8"), &longer).unwrap();
    assert!(open_err(d).contains("masks.u8"));

    // A mask value outside the classes.
    let mut bad = masks.clone();
    bad[10] = 9;
    std::fs::write(d.join("masks.u8"), &bad).unwrap();
    assert!(open_err(d).contains("mask value 9"));
    std::fs::write(d.join("masks.u8"), &masks).unwrap();
    FrameStore::open(d).unwrap();

    // An index that is not JSON, or describes another format.
    let index = std::fs::read_to_string(d.join("index.json")).unwrap();
    std::fs::write(d.join("index.json"), &index[..index.len() / 2]).unwrap();
    assert!(open_err(d).contains("index.json"));
    std::fs::write(
        d.join("index.json"),
        index.replace("cineseg-frames", "something-else"),
    )
    .unwrap();
    assert!(open_err(d).contains("format"));

    // No index at all (an interrupted import).
    std::fs::remove_file(d.join("index.json")).unwrap();
    assert!(open_err(d).contains("missing"));

    // A data file missing.
    std::fs::write(d.join("index.json"), &index).unwrap();
    std::fs::remove_file(d.join("masks.u8")).unwrap();
    let e = FrameStore::open(d).unwrap_err();
    assert!(e.to_string().contains("masks.u8"), "{e}");
}
