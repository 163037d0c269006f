//! The nine transfer syntaxes of dcm_qa_ts (the same Siemens mosaic stored raw, RLE, JPEG
//! lossless, JPEG-LS and JPEG 2000) decode to exactly the voxels dcm2niix wrote to Ref/*.nii.
//! The DICOM is a 6x6 mosaic of 64x64 tiles; the reference is the de-mosaicked 64x64x35 volume
//! with dcm2niix's row flip (NIfTI y runs bottom-up).

mod dicom_support;

use cineseg::dicom::read_file;
use nifti::{IntoNdArray, NiftiObject, ReaderOptions};

const TILE: usize = 64;

#[test]
fn nine_encodings_match_reference_pixel_for_pixel() {
    let Some(dir) = dicom_support::data("dicom-corpus/dcm_qa_ts") else {
        return;
    };
    for i in 1..=9 {
        let dcm = dir.join(format!("In/{i}.dcm"));
        let inst = read_file(&dcm).unwrap_or_else(|e| panic!("{i}.dcm: {e}"));
        assert_eq!(inst.len(), 1);
        let img = &inst[0];
        assert_eq!((img.rows, img.cols), (384, 384));
        let vol = ReaderOptions::new()
            .read_file(dir.join(format!("Ref/{i}.nii")))
            .unwrap()
            .into_volume()
            .into_ndarray::<f32>()
            .unwrap();
        let shape = vol.shape().to_vec();
        assert_eq!(&shape[..3], &[TILE, TILE, 35], "{i}.nii shape");
        let per_row = img.cols / TILE;
        let mut mismatches = 0usize;
        for z in 0..35 {
            let (tr, tc) = (z / per_row, z % per_row);
            for y in 0..TILE {
                for x in 0..TILE {
                    let row = tr * TILE + (TILE - 1 - y);
                    let col = tc * TILE + x;
                    let got = img.pixels[row * img.cols + col];
                    let want = vol[[x, y, z]];
                    if got != want {
                        mismatches += 1;
                    }
                }
            }
        }
        println!("{i}.dcm ({}) mismatches: {mismatches}", img.transfer_syntax);
        assert_eq!(
            mismatches, 0,
            "{i}.dcm ({}) differs from Ref/{i}.nii",
            img.transfer_syntax
        );
    }
}
