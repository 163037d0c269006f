//! The simulated 7T domain on an ACDC-layout folder: the same seed gives the same store bit
//! for bit, another seed another one, images change and masks stay exactly the experts'.

use cineseg::io::write_labels;
use cineseg::nn::Preprocess;
use cineseg::store::import::{import_acdc, import_acdc_with};
use cineseg::store::FrameStore;
use cineseg::train::domain7t::Sim7T;
use std::path::Path;

/// Two patients, ED and ES, 3 slices of 40x36: a bright disc (LV) in a darker ring (MYO).
fn acdc(root: &Path) {
    let (w, h, nz) = (40usize, 36usize, 3usize);
    for (n, id) in ["patient001", "patient002"].iter().enumerate() {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("Info.cfg"),
            "ED: 1\nES: 2\nGroup: NOR\nNbFrame: 2\nHeight: 180\nWeight: 80\n",
        )
        .unwrap();
        for f in [1usize, 2] {
            let r_lv = 6.0 + 2.0 * (2 - f) as f32 + n as f32;
            let (mut img, mut lab) = (Vec::new(), Vec::new());
            for z in 0..nz {
                for y in 0..h {
                    for x in 0..w {
                        let r = ((x as f32 - 20.0).powi(2) + (y as f32 - 18.0).powi(2)).sqrt();
                        let (v, l) = if r < r_lv {
                            (200u8, 3u8)
                        } else if r < r_lv + 3.0 {
                            (70, 2)
                        } else {
                            (30 + (z as u8) * 3, 0)
                        };
                        img.push(v);
                        lab.push(l);
                    }
                }
            }
            let dims = [w, h, nz, 1];
            write_labels(
                &dir.join(format!("{id}_frame{f:02}.nii.gz")),
                dims,
                [1.6, 1.6, 10.0, 0.0],
                &img,
            )
            .unwrap();
            write_labels(
                &dir.join(format!("{id}_frame{f:02}_gt.nii.gz")),
                dims,
                [1.6, 1.6, 10.0, 0.0],
                &lab,
            )
            .unwrap();
        }
    }
}

fn import(root: &Path, out: &Path, sim: Option<Sim7T>) -> FrameStore {
    let p = Preprocess {
        size: 32,
        ..Preprocess::default()
    };
    match sim {
        None => import_acdc(root, out, &p, &|_, _| {}).unwrap(),
        Some(s) => {
            let t = move |pt: &str, z: usize, f: usize, sl: &mut cineseg::image::Slice2D| {
                s.apply(pt, z, f, sl)
            };
            import_acdc_with(root, out, &p, Some(&t), &|_, _| {}).unwrap()
        }
    };
    FrameStore::open(out).unwrap()
}

#[test]
fn seven_tesla_store_changes_images_only_and_repeats() {
    let d = tempfile::tempdir().unwrap();
    acdc(d.path());
    let plain = import(d.path(), &d.path().join("plain"), None);
    let a = import(d.path(), &d.path().join("a"), Some(Sim7T::with_seed(1)));
    let b = import(d.path(), &d.path().join("b"), Some(Sim7T::with_seed(1)));
    let c = import(d.path(), &d.path().join("c"), Some(Sim7T::with_seed(2)));
    assert_eq!(plain.len(), 12);
    for i in 0..plain.len() {
        assert_eq!(
            a.mask(i),
            plain.mask(i),
            "frame {i}: labels must stay the experts'"
        );
        assert_eq!(c.mask(i), plain.mask(i));
        assert_eq!(a.meta(i), plain.meta(i));
        assert_eq!(a.image(i), b.image(i), "frame {i}: same seed, same image");
        assert_ne!(
            a.image(i),
            plain.image(i),
            "frame {i}: the domain changed nothing"
        );
        assert_ne!(
            a.image(i),
            c.image(i),
            "frame {i}: another seed, another image"
        );
    }
    for name in ["images.f32", "masks.u8"] {
        assert_eq!(
            std::fs::read(d.path().join("a").join(name)).unwrap(),
            std::fs::read(d.path().join("b").join(name)).unwrap()
        );
    }
}
