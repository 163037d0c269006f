//! The three Sunnybrook series assemble into the stacks the data set describes: slices ordered
//! along the normal at the true spacing (10, 10, 8 mm; not SliceLocation's 6.72), phases ordered
//! by trigger time.

mod dicom_support;

use cineseg::dicom::stack::{load_folder, AssembleOptions};

#[test]
fn sunnybrook_series_assemble_to_expected_stacks() {
    let expected = [
        ("SCD0000101", 12, 10.0, 1.367188),
        ("SCD0000201", 13, 10.0, 1.367188),
        ("SCD0000301", 10, 8.0, 1.289062),
    ];
    for (patient, n_slices, spacing, pixel) in expected {
        let Some(dir) = dicom_support::data(&format!("sunnybrook/dicoms/{patient}")) else {
            return;
        };
        let scan = load_folder(&dir, &AssembleOptions::default()).unwrap();
        assert!(
            scan.skipped.is_empty(),
            "{patient}: skipped {:?}",
            scan.skipped
        );
        assert_eq!(scan.stacks.len(), 1, "{patient}: one stack");
        let s = &scan.stacks[0];
        println!(
            "{patient}: {}x{} spacing {} mm, corrections {:?}",
            s.n_slices(),
            s.n_phases(),
            s.slice_spacing,
            s.corrections
        );
        assert_eq!((s.n_slices(), s.n_phases()), (n_slices, 20), "{patient}");
        assert!(
            (s.slice_spacing - spacing).abs() < 0.05,
            "{patient}: spacing {}",
            s.slice_spacing
        );
        assert!(
            (s.grid.pixel_spacing[0] - pixel).abs() < 0.01,
            "{patient}: pixel {:?}",
            s.grid.pixel_spacing
        );
        assert!(s.is_complete(), "{patient}: complete");
        assert!(
            s.corrections.is_empty(),
            "{patient}: no correction needed: {}",
            s.corrections_log()
        );
        // Slices strictly ascending along the normal, each one spacing from the previous.
        for w in s.slices.windows(2) {
            let gap = w[1].offset_mm - w[0].offset_mm;
            assert!((gap - spacing).abs() < 0.1, "{patient}: gap {gap}");
        }
        for (i, slice) in s.slices.iter().enumerate() {
            let times: Vec<f64> = slice
                .frames
                .iter()
                .map(|f| f.as_ref().unwrap().trigger_time.unwrap())
                .collect();
            assert!(
                times.windows(2).all(|w| w[1] > w[0]),
                "{patient} slice {i}: trigger times not increasing: {times:?}"
            );
            // Within a slice the scanner numbered phases in time order: N.dcm must ascend too.
            let numbers: Vec<u32> = slice
                .frames
                .iter()
                .map(|f| {
                    f.as_ref()
                        .unwrap()
                        .source
                        .as_ref()
                        .unwrap()
                        .path
                        .file_stem()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect();
            assert!(
                numbers.windows(2).all(|w| w[1] > w[0]),
                "{patient} slice {i}: files {numbers:?}"
            );
            assert_eq!(slice.frames[0].as_ref().unwrap().pixels.len(), 256 * 256);
        }
        // Phase times are shared by all slices.
        assert!(s
            .phase_times
            .windows(2)
            .all(|w| w[1].unwrap() > w[0].unwrap()));
    }
}
