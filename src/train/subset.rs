//! Which target-site frames a fine-tuning run may learn from: all labelled frames, only
//! end-diastole/end-systole (what sites usually contour, about a tenth of a cine), the frames of
//! N patients, or N random frames. The transfer-learning paper compares exactly these, so the
//! selection must be reproducible from a seed and must never reach outside the candidate
//! (training) frames it is given.
//!
//! ED and ES come from the store's phase tags when it has them; otherwise they are found from
//! the labelled LV area: per patient, the phase with the largest LV area is ED and the one with
//! the smallest is ES, counting only slices labelled at every phase so that a phase with more
//! contoured slices does not look larger.

use super::data::FrameSource;
use super::TrainError;
use crate::image::Phase;
use crate::nn::rng::Rng;
use crate::store::FrameStore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Output channel of the LV blood pool in cineseg's class order (background, LV, MYO, RV).
pub const LV_CLASS: usize = crate::analysis::volume::LV as usize;

/// A subset of the candidate frames, as chosen on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subset {
    /// Every candidate frame.
    All,
    /// End-diastolic and end-systolic frames only.
    EdEs,
    /// Every frame of this many patients (seeded choice).
    Patients(usize),
    /// This many frames drawn at random without replacement (seeded).
    Random(usize),
}

impl FromStr for Subset {
    type Err = String;
    /// Parses `all`, `ed-es`, `patients:N` or `random:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let count = |v: &str| -> Result<usize, String> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{s:?}: the count must be a positive integer")),
            }
        };
        match s.split_once(':') {
            None if s == "all" => Ok(Subset::All),
            None if s == "ed-es" || s == "edes" => Ok(Subset::EdEs),
            Some(("patients", n)) => Ok(Subset::Patients(count(n)?)),
            Some(("random", n)) => Ok(Subset::Random(count(n)?)),
            _ => Err(format!(
                "unknown subset {s:?} (use all, ed-es, patients:N or random:N)"
            )),
        }
    }
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subset::All => write!(f, "all"),
            Subset::EdEs => write!(f, "ed-es"),
            Subset::Patients(n) => write!(f, "patients:{n}"),
            Subset::Random(n) => write!(f, "random:{n}"),
        }
    }
}

/// Where a frame sits in its patient's cine: what subset selection needs beyond the pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameTag {
    pub patient: String,
    pub slice: usize,
    pub phase_index: usize,
    /// ED, ES, or `Other` when the source did not say (then ED/ES come from the LV area).
    pub phase: Phase,
}

/// Tags of every frame of a store, in store order.
pub fn store_tags(store: &FrameStore) -> Vec<FrameTag> {
    store
        .frames()
        .iter()
        .map(|m| FrameTag {
            patient: m.patient_id.clone(),
            slice: m.slice,
            phase_index: m.phase_index,
            phase: m.phase,
        })
        .collect()
}

/// The ED and ES frames among `candidates`, per patient from the tags when any of the
/// patient's frames is tagged ED or ES, otherwise from the LV area (see the module docs).
/// A patient with a single phase contributes that phase. Returned in candidate order.
pub fn ed_es_frames(
    src: &dyn FrameSource,
    tags: &[FrameTag],
    candidates: &[usize],
) -> Result<Vec<usize>, TrainError> {
    check_tags(src, tags, candidates)?;
    let mut by_patient: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in candidates {
        by_patient
            .entry(tags[i].patient.as_str())
            .or_default()
            .push(i);
    }
    let mut keep = BTreeSet::new();
    for frames in by_patient.values() {
        if frames.iter().any(|&i| tags[i].phase != Phase::Other) {
            keep.extend(
                frames
                    .iter()
                    .copied()
                    .filter(|&i| tags[i].phase != Phase::Other),
            );
            continue;
        }
        let (ed, es) = extreme_phases(src, tags, frames);
        keep.extend(
            frames
                .iter()
                .copied()
                .filter(|&i| tags[i].phase_index == ed || tags[i].phase_index == es),
        );
    }
    Ok(candidates
        .iter()
        .copied()
        .filter(|i| keep.contains(i))
        .collect())
}

/// (ED, ES) phase indices of one patient's frames: largest and smallest LV area over the
/// slices labelled (LV drawn) at every phase; all labelled slices when no slice is common.
fn extreme_phases(src: &dyn FrameSource, tags: &[FrameTag], frames: &[usize]) -> (usize, usize) {
    let lv_drawn = |i: usize| src.labelled(i).get(LV_CLASS).copied().unwrap_or(false);
    let mut slices_of: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for &i in frames.iter().filter(|&&i| lv_drawn(i)) {
        slices_of
            .entry(tags[i].phase_index)
            .or_default()
            .insert(tags[i].slice);
    }
    let Some(first) = slices_of.values().next() else {
        // No LV drawn anywhere: fall back to the first phase for both.
        let p = frames
            .iter()
            .map(|&i| tags[i].phase_index)
            .min()
            .unwrap_or(0);
        return (p, p);
    };
    let common: BTreeSet<usize> = slices_of.values().fold(first.clone(), |acc, s| {
        acc.intersection(s).copied().collect()
    });
    let mut area: BTreeMap<usize, usize> = slices_of.keys().map(|p| (*p, 0)).collect();
    for &i in frames.iter().filter(|&&i| lv_drawn(i)) {
        if common.is_empty() || common.contains(&tags[i].slice) {
            let n = src
                .mask(i)
                .iter()
                .filter(|&&c| c as usize == LV_CLASS)
                .count();
            *area.entry(tags[i].phase_index).or_default() += n;
        }
    }
    // Ties go to the earlier phase, so the choice does not depend on map internals.
    let ed = area
        .iter()
        .fold((0, None::<usize>), |b, (p, a)| {
            if b.1.is_none_or(|x| *a > x) {
                (*p, Some(*a))
            } else {
                b
            }
        })
        .0;
    let es = area
        .iter()
        .fold((0, None::<usize>), |b, (p, a)| {
            if b.1.is_none_or(|x| *a < x) {
                (*p, Some(*a))
            } else {
                b
            }
        })
        .0;
    (ed, es)
}

/// Frames of `subset` among `candidates`, deterministic for a seed, in candidate order.
/// Asking for more patients or frames than exist is an error rather than a silent shortfall,
/// because the experiment's rows compare subsets of stated sizes.
pub fn select(
    src: &dyn FrameSource,
    tags: &[FrameTag],
    candidates: &[usize],
    subset: &Subset,
    seed: u64,
) -> Result<Vec<usize>, TrainError> {
    check_tags(src, tags, candidates)?;
    let picked = match subset {
        Subset::All => candidates.to_vec(),
        Subset::EdEs => ed_es_frames(src, tags, candidates)?,
        Subset::Patients(n) => {
            let mut patients: Vec<&str> = Vec::new();
            for &i in candidates {
                if !patients.contains(&tags[i].patient.as_str()) {
                    patients.push(&tags[i].patient);
                }
            }
            if *n > patients.len() {
                return Err(TrainError::Data(format!(
                    "{n} patients asked for, {} available",
                    patients.len()
                )));
            }
            Rng::new(seed ^ 0x5041_5449_454E_5453).shuffle(&mut patients);
            let chosen: BTreeSet<&str> = patients[..*n].iter().copied().collect();
            candidates
                .iter()
                .copied()
                .filter(|&i| chosen.contains(tags[i].patient.as_str()))
                .collect()
        }
        Subset::Random(n) => {
            if *n > candidates.len() {
                return Err(TrainError::Data(format!(
                    "{n} frames asked for, {} available",
                    candidates.len()
                )));
            }
            let mut order = candidates.to_vec();
            Rng::new(seed ^ 0x5241_4E44_4F4D).shuffle(&mut order);
            let chosen: BTreeSet<usize> = order[..*n].iter().copied().collect();
            candidates
                .iter()
                .copied()
                .filter(|i| chosen.contains(i))
                .collect()
        }
    };
    if picked.is_empty() {
        return Err(TrainError::Data(format!(
            "subset {subset} selected no frame"
        )));
    }
    Ok(picked)
}

fn check_tags(
    src: &dyn FrameSource,
    tags: &[FrameTag],
    candidates: &[usize],
) -> Result<(), TrainError> {
    if tags.len() != src.len() {
        return Err(TrainError::Data(format!(
            "{} frame tags for {} frames",
            tags.len(),
            src.len()
        )));
    }
    if let Some(bad) = candidates.iter().find(|&&i| i >= src.len()) {
        return Err(TrainError::Data(format!(
            "frame index {bad} outside {} frames",
            src.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::MemoryFrames;

    /// Two patients, 3 phases x 2 slices; LV area grows with `area(phase)`.
    fn cine(area: impl Fn(usize) -> usize, tagged: bool) -> (MemoryFrames, Vec<FrameTag>) {
        let mut f = MemoryFrames {
            size: 8,
            ..Default::default()
        };
        let mut tags = Vec::new();
        for p in ["a", "b"] {
            for phase in 0..3 {
                for slice in 0..2 {
                    let mut m = vec![0u8; 64];
                    m[..area(phase)].fill(LV_CLASS as u8);
                    f.images.push(vec![0.0; 64]);
                    f.masks.push(m);
                    f.labelled.push(vec![true; 4]);
                    f.patients.push(p.into());
                    let ph = match (tagged, phase) {
                        (true, 0) => Phase::Ed,
                        (true, 1) => Phase::Es,
                        _ => Phase::Other,
                    };
                    tags.push(FrameTag {
                        patient: p.into(),
                        slice,
                        phase_index: phase,
                        phase: ph,
                    });
                }
            }
        }
        (f, tags)
    }

    #[test]
    fn parses_and_prints_subsets() {
        for s in ["all", "ed-es", "patients:3", "random:17"] {
            assert_eq!(s.parse::<Subset>().unwrap().to_string(), s);
        }
        assert!("random:0".parse::<Subset>().is_err());
        assert!("some".parse::<Subset>().is_err());
        assert!("patients:x".parse::<Subset>().is_err());
    }

    #[test]
    fn ed_es_from_lv_area_when_untagged() {
        // Phase 1 largest (ED), phase 2 smallest (ES): phase 0 must be left out.
        let (f, tags) = cine(|p| [20, 40, 5][p], false);
        let all: Vec<usize> = (0..f.images.len()).collect();
        let got = ed_es_frames(&f, &tags, &all).unwrap();
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|&i| tags[i].phase_index != 0));
    }

    #[test]
    fn ed_es_from_tags_when_present() {
        // Tags say ED = 0, ES = 1, even though the areas would say otherwise.
        let (f, tags) = cine(|p| [20, 40, 5][p], true);
        let all: Vec<usize> = (0..f.images.len()).collect();
        let got = ed_es_frames(&f, &tags, &all).unwrap();
        assert!(got.iter().all(|&i| tags[i].phase_index < 2) && got.len() == 8);
    }

    #[test]
    fn subsets_stay_inside_candidates_and_repeat() {
        let (f, tags) = cine(|p| p * 10 + 1, false);
        let cand: Vec<usize> = (0..f.images.len()).filter(|i| i % 2 == 0).collect();
        let one = select(&f, &tags, &cand, &Subset::Patients(1), 7).unwrap();
        assert_eq!(one.len(), 3);
        assert!(one
            .iter()
            .all(|i| cand.contains(i) && tags[*i].patient == tags[one[0]].patient));
        let r = select(&f, &tags, &cand, &Subset::Random(4), 7).unwrap();
        assert_eq!(r, select(&f, &tags, &cand, &Subset::Random(4), 7).unwrap());
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(|i| cand.contains(i)));
        assert!(select(&f, &tags, &cand, &Subset::Random(7), 7).is_err());
        assert!(select(&f, &tags, &cand, &Subset::Patients(3), 7).is_err());
    }
}
