//! Series that cannot be one cine stack are refused with a typed defect naming the series, and
//! incomplete ones are assembled with the gap recorded and flagged (issue 10, item 7). Every
//! series is synthetic (tests/stack_support), and every outcome is checked to be the same
//! whatever order the files are read in.

mod stack_support;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

use cineseg::analysis::quality::{check_stack, FlagKind, Severity};
use cineseg::dicom::stack::{load_folder, AssembleOptions, CineStack, Correction, StackDefect};
use cineseg::dicom::DicomError;
use stack_support::{cine, slice_of, write, Img};

/// What assembling a folder gave, in a form two folders can be compared by.
#[derive(Debug, PartialEq)]
enum Outcome {
    Refused(StackDefect),
    Stack {
        shape: (usize, usize),
        pixel_spacing: [f64; 2],
        corrections: Vec<Correction>,
        flags: Vec<FlagKind>,
        pixels: u64,
    },
}

fn load(dir: &Path) -> Result<Vec<CineStack>, DicomError> {
    load_folder(dir, &AssembleOptions::default()).map(|s| s.stacks)
}

fn pixel_hash(s: &CineStack) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for slice in &s.slices {
        for f in slice.frames.iter().flatten() {
            for v in &f.pixels {
                v.to_bits().hash(&mut h);
            }
        }
    }
    h.finish()
}

fn outcome(dir: &Path) -> Outcome {
    match load(dir) {
        Ok(stacks) => {
            assert_eq!(stacks.len(), 1, "one series, one stack");
            let s = &stacks[0];
            Outcome::Stack {
                shape: (s.n_slices(), s.n_phases()),
                pixel_spacing: s.grid.pixel_spacing,
                corrections: s.corrections.clone(),
                flags: check_stack(s).iter().map(|f| f.kind).collect(),
                pixels: pixel_hash(s),
            }
        }
        Err(DicomError::NotACineStack {
            series_uid, defect, ..
        }) => {
            assert_eq!(series_uid, "1.2.3.7", "the refusal names the series");
            Outcome::Refused(defect)
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The outcome of `imgs` read in file order and in five shuffled orders; all must agree.
fn same_whatever_the_order(imgs: &[Img]) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("0"), imgs, 0);
    let first = outcome(&tmp.path().join("0"));
    for seed in 1..=5u64 {
        let dir = tmp.path().join(seed.to_string());
        write(&dir, imgs, seed);
        assert_eq!(
            outcome(&dir),
            first,
            "file order (seed {seed}) changed the outcome"
        );
    }
    first
}

fn refused(imgs: &[Img]) -> StackDefect {
    match same_whatever_the_order(imgs) {
        Outcome::Refused(d) => d,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const UID: &str = "1.2.3.7";

#[test]
fn every_image_at_one_position_is_refused() {
    // 11 slices x 12 phases whose positions all say z = 0.
    let flat = |imgs: &mut Vec<Img>| imgs.iter_mut().for_each(|i| i.position[2] = 0.0);
    let mut imgs = cine(UID, 11, 12);
    flat(&mut imgs);
    assert_eq!(
        refused(&imgs),
        StackDefect::SinglePosition {
            images: 132,
            distinct_times: 12,
            max_repeat: 11
        }
    );
    // Distinct trigger times: 132 "phases", but the header says the cycle has 12.
    let mut imgs = cine(UID, 11, 12);
    for (k, i) in imgs.iter_mut().enumerate() {
        i.trigger = Some(k as f64 * 5.0);
    }
    flat(&mut imgs);
    assert!(matches!(
        refused(&imgs),
        StackDefect::TooManyPhases {
            phases: 132,
            limit: 12,
            why: "CardiacNumberOfImages",
            ..
        }
    ));
    // No trigger times and no phase count at all.
    let mut imgs = cine(UID, 11, 12);
    for i in imgs.iter_mut() {
        (i.trigger, i.cni) = (None, None);
    }
    flat(&mut imgs);
    let d = refused(&imgs);
    assert!(
        matches!(
            d,
            StackDefect::TooManyPhases {
                phases: 132,
                limit: 60,
                ..
            }
        ),
        "{d:?}"
    );
    assert!(d.to_string().contains("132 phases, more than 60"), "{d}");
}

#[test]
fn matrix_sizes_mixed_within_slices_are_refused() {
    let mut imgs = cine(UID, 8, 20);
    let mut changed = 0;
    for (k, i) in imgs.iter_mut().enumerate() {
        if k % 5 == 2 || k == 3 {
            (i.rows, i.cols) = (32, 32);
            changed += 1;
        }
    }
    assert_eq!(changed, 33);
    match refused(&imgs) {
        StackDefect::MixedRasterInSlice { slice, detail, .. } => {
            assert_eq!(slice, 0);
            assert!(
                detail.contains("32x32") && detail.contains("40x40"),
                "{detail}"
            );
        }
        d => panic!("wrong defect {d:?}"),
    }
}

#[test]
fn slice_smaller_than_the_grid_is_refused_not_zero_padded() {
    let mut imgs = cine(UID, 8, 20);
    for i in imgs.iter_mut().filter(|i| slice_of(i) == 3) {
        (i.rows, i.cols) = (32, 32); // 48 mm of the stack's 60 mm field of view
    }
    match refused(&imgs) {
        StackDefect::RasterMismatch {
            slice,
            padded_percent,
            ..
        } => {
            assert_eq!(slice, 3);
            assert!((padded_percent - 36.0).abs() < 0.01, "{padded_percent}");
        }
        d => panic!("wrong defect {d:?}"),
    }
}

#[test]
fn slice_on_a_larger_raster_is_resampled_recorded_and_flagged() {
    let clean = load_written(&cine(UID, 8, 20));
    let mut imgs = cine(UID, 8, 20);
    for i in imgs.iter_mut().filter(|i| slice_of(i) == 3) {
        (i.rows, i.cols) = (48, 48);
        i.position = [-36.0, -36.0, i.position[2]]; // covers the 40x40 grid, 4 px margin
    }
    let Outcome::Stack {
        shape,
        corrections,
        flags,
        ..
    } = same_whatever_the_order(&imgs)
    else {
        panic!("a covering slice is resampled, not refused");
    };
    assert_eq!(shape, (8, 20));
    assert_eq!(
        corrections,
        vec![Correction::Resampled {
            series_uid: UID.into(),
            slice: 3,
            reason: "size 48x48 vs 40x40".into(),
            padded_percent: 0.0
        }]
    );
    assert_eq!(flags, vec![FlagKind::ResampledSlices]);
    let s = load_written(&imgs);
    for p in [0, 10, 19] {
        assert_eq!(
            s.frame(3, p).unwrap().pixels,
            clean.frame(3, p).unwrap().pixels,
            "phase {p}: the same anatomy on the stack's grid"
        );
    }
}

fn load_written(imgs: &[Img]) -> CineStack {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), imgs, 0);
    load(tmp.path()).unwrap().remove(0)
}

#[test]
fn pixel_spacing_changing_within_a_slice_is_refused_whatever_the_order() {
    let mut imgs = cine(UID, 8, 20);
    for i in imgs.iter_mut().filter(|i| slice_of(i) == 2 && i.phase < 10) {
        i.spacing = [1.6, 1.6];
    }
    match refused(&imgs) {
        StackDefect::MixedRasterInSlice { slice, detail, .. } => {
            assert_eq!(slice, 2);
            assert!(
                detail.contains("1.600") && detail.contains("1.500"),
                "{detail}"
            );
        }
        d => panic!("wrong defect {d:?}"),
    }
}

#[test]
fn pixel_spacing_differing_between_slices_gives_one_answer_whatever_the_order() {
    // Half the slices at 1.5 mm, half at 1.6 mm: no majority, so the choice of grid must not
    // come from whichever file is read first.
    let mut imgs = cine(UID, 8, 20);
    for i in imgs.iter_mut().filter(|i| slice_of(i) >= 4) {
        i.spacing = [1.6, 1.6];
    }
    let Outcome::Stack {
        shape,
        pixel_spacing,
        corrections,
        flags,
        ..
    } = same_whatever_the_order(&imgs)
    else {
        panic!("slices covering the grid are resampled");
    };
    assert_eq!(shape, (8, 20));
    assert_eq!(
        pixel_spacing,
        [1.5, 1.5],
        "the smaller field of view is the grid"
    );
    let resampled: Vec<usize> = corrections
        .iter()
        .filter_map(|c| match c {
            Correction::Resampled { slice, .. } => Some(*slice),
            _ => None,
        })
        .collect();
    assert_eq!(resampled, vec![4, 5, 6, 7]);
    assert_eq!(flags, vec![FlagKind::ResampledSlices]);
}

fn corrections_and_flags(imgs: &[Img]) -> (Vec<Correction>, Vec<(FlagKind, Severity)>) {
    let s = load_written(imgs);
    let flags = check_stack(&s)
        .iter()
        .map(|f| (f.kind, f.severity))
        .collect();
    (s.corrections, flags)
}

#[test]
fn half_the_phases_missing_is_flagged() {
    let full = corrections_and_flags(&cine(UID, 8, 20));
    assert_eq!(full, (vec![], vec![]), "a complete series has neither");
    let half: Vec<Img> = cine(UID, 8, 20)
        .into_iter()
        .filter(|i| i.phase % 2 == 0)
        .collect();
    assert!(matches!(
        same_whatever_the_order(&half),
        Outcome::Stack { shape: (8, 10), .. }
    ));
    let (corrections, flags) = corrections_and_flags(&half);
    assert_eq!(
        corrections,
        vec![Correction::MissingPhases {
            series_uid: UID.into(),
            expected: 20,
            found: 10,
            evidence: "CardiacNumberOfImages".into()
        }]
    );
    assert_eq!(flags, vec![(FlagKind::MissingPhases, Severity::Error)]);
    // Without CardiacNumberOfImages, the hole in the trigger times tells.
    let holed: Vec<Img> = cine(UID, 8, 20)
        .into_iter()
        .filter(|i| !(6..14).contains(&i.phase))
        .map(|mut i| {
            i.cni = None;
            i
        })
        .collect();
    let (corrections, flags) = corrections_and_flags(&holed);
    assert!(
        corrections.iter().any(|c| matches!(
            c,
            Correction::MissingPhases {
                expected: 20,
                found: 12,
                ..
            }
        )),
        "{corrections:?}"
    );
    assert_eq!(flags, vec![(FlagKind::MissingPhases, Severity::Error)]);
}

#[test]
fn missing_slices_and_frames_are_flagged() {
    let imgs: Vec<Img> = cine(UID, 8, 20)
        .into_iter()
        .filter(|i| slice_of(i) != 4 && !(slice_of(i) == 2 && i.phase == 7))
        .collect();
    let (corrections, flags) = corrections_and_flags(&imgs);
    assert!(corrections
        .iter()
        .any(|c| matches!(c, Correction::MissingSlice { count: 1, .. })));
    assert_eq!(
        flags,
        vec![
            (FlagKind::MissingFrames, Severity::Error),
            (FlagKind::MissingSlices, Severity::Error)
        ]
    );
}

#[test]
fn two_orientations_under_one_series_are_refused() {
    let mut imgs = cine(UID, 8, 20);
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    for mut i in cine(UID, 8, 20) {
        let k = slice_of(&i) as f64 * 8.0;
        i.orientation = [1.0, 0.0, 0.0, 0.0, c, s];
        // Along the tilted normal (0, -s, c), starting 100 mm away.
        i.position = [-30.0, -30.0 - s * k, 100.0 + c * k];
        i.sop_uid = format!("{}.2", i.sop_uid);
        i.instance += 1000;
        imgs.push(i);
    }
    match refused(&imgs) {
        StackDefect::MixedOrientations { stacks, angle_deg } => {
            assert_eq!(stacks, 2);
            assert!((angle_deg - 30.0).abs() < 0.01, "{angle_deg}");
        }
        d => panic!("wrong defect {d:?}"),
    }
}

/// `cine(UID, slices, phases)` as a second acquisition: new SOP UIDs and instance numbers.
fn second(slices: usize, phases: usize, edit: impl Fn(&mut Img)) -> Vec<Img> {
    cine(UID, slices, phases)
        .into_iter()
        .map(|mut i| {
            i.sop_uid = format!("{}.2", i.sop_uid);
            i.instance += 1000;
            edit(&mut i);
            i
        })
        .collect()
}

#[test]
fn two_frames_of_reference_under_one_series_are_refused() {
    let mut imgs = cine(UID, 8, 20);
    imgs.extend(second(8, 20, |i| {
        i.frame_of_reference = "1.2.3.7.97".into();
        i.position[2] += 4.0;
    }));
    assert_eq!(
        refused(&imgs),
        StackDefect::MixedFrameOfReference { count: 2 }
    );
}

#[test]
fn two_phase_counts_under_one_series_are_refused() {
    let mut imgs = cine(UID, 8, 20);
    imgs.extend(second(6, 12, |i| i.position[2] += 64.0));
    assert_eq!(
        refused(&imgs),
        StackDefect::MixedPhaseCounts {
            values: vec![12, 20]
        }
    );
}

#[test]
fn two_sets_of_trigger_times_at_the_same_positions_are_refused() {
    let mut imgs = cine(UID, 8, 20);
    imgs.extend(second(8, 20, |i| {
        i.trigger = i.trigger.map(|t| t + 20.0);
    }));
    assert!(matches!(
        refused(&imgs),
        StackDefect::TooManyPhases {
            slice: 0,
            phases: 40,
            limit: 20,
            ..
        }
    ));
}

/// Labels from the phantom's intensities: the LV pool is 900, the myocardium 300.
fn phantom_labels(s: &CineStack) -> HashMap<(usize, usize), cineseg::segment::SliceLabels> {
    let mut out = HashMap::new();
    for (z, slice) in s.slices.iter().enumerate() {
        for (p, f) in slice.frames.iter().enumerate() {
            let Some(f) = f else { continue };
            let labels: Vec<u8> = f
                .pixels
                .iter()
                .map(|&v| match v {
                    v if v > 600.0 => 1,
                    v if v > 200.0 => 2,
                    _ => 0,
                })
                .collect();
            let foreground = labels.iter().filter(|&&l| l > 0).count();
            out.insert(
                (z, p),
                cineseg::segment::SliceLabels {
                    labels,
                    confidence: 0.95,
                    foreground,
                },
            );
        }
    }
    out
}

#[test]
fn report_json_and_html_show_the_flags_and_corrections() {
    // Half the phases and one slice missing.
    let imgs: Vec<Img> = cine(UID, 8, 20)
        .into_iter()
        .filter(|i| i.phase % 2 == 0 && slice_of(i) != 5)
        .collect();
    let src = tempfile::tempdir().unwrap(); // the SEG writer reads the source files
    write(src.path(), &imgs, 0);
    let stack = load(src.path()).unwrap().remove(0);
    let analysis =
        cineseg::analysis::series::analyse(&stack, &phantom_labels(&stack), 0.6).expect("analysis");
    let out = tempfile::tempdir().unwrap();
    let id = cineseg::report::json::ResultIdentity {
        id: "test-result",
        version: 1,
        supersedes: None,
        closed_because: "test",
        series_instance_uid: UID,
    };
    let model = cineseg::registry::ModelIdentity {
        name: "test-model".into(),
        content_id: "0123456789abcdef".into(),
    };
    let dir = cineseg::report::results::write(out.path(), &id, &analysis, &model, false)
        .expect("results written");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert!(json["summary"]["lv_ef_percent"].is_number(), "{json}");
    assert_eq!(json["ef_flagged"], true);
    let kinds: Vec<&str> = json["quality_flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"missing_phases") && kinds.contains(&"missing_slices"),
        "{kinds:?}"
    );
    let corrections: Vec<String> = json["corrections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str().map(String::from))
        .collect();
    assert!(
        corrections.iter().any(|c| c.contains("\"missing_phases\"")),
        "{corrections:?}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("(FLAGGED: see quality flags)"),
        "EF row flagged"
    );
    assert!(html.contains("only 10 of 20 phases received"), "flag shown");
    assert!(
        html.contains("<li>10 of 20 phases present (CardiacNumberOfImages)</li>"),
        "correction shown"
    );
    assert!(html.contains("1 slice(s) missing after slice 4, not filled"));
}
