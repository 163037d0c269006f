//! Receptions of a series and when one is complete.
//!
//! A series is received in epochs. Epoch 0 is the first reception; once it is closed into a
//! job, anything that arrives for the same SeriesInstanceUID opens the next epoch. That epoch
//! is judged and processed together with what the processed reception held (its *base*):
//! - a continuation (the rest of a series that paused longer than `settle_ms`) joins the slices
//!   already received, and the result is produced again, whole, as a new version that
//!   supersedes the first;
//! - a re-sent or corrected series is processed whole: byte-identical instances are part of
//!   the new version, changed ones replace their earlier copy;
//! - an epoch that only repeats instances of the base byte for byte (a sender retrying after a
//!   lost response) produces nothing: the processed result stands.
//!
//! Completeness comes from what the series says: ImagesInAcquisition x CardiacNumberOfImages
//! reached, or every slice position holding CardiacNumberOfImages phases after a quiet
//! `settle_ms`. A series closed only because nothing came for `series_idle_s` is flagged
//! incomplete, with the count that was missing.

use super::index::InstanceRecord;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A reception still receiving.
#[derive(Debug)]
pub(super) struct OpenSeries {
    pub epoch: u32,
    pub sops: BTreeMap<String, InstanceRecord>,
    /// When the last instance of this epoch was acknowledged (the start of the daemon, for an
    /// epoch recovered at start-up: a sender gets the whole settle time to resume).
    pub last_seen: Instant,
}

/// The last reception of a series that became a job, with everything that job processed.
#[derive(Debug, Clone)]
pub(super) struct ClosedSeries {
    pub epoch: u32,
    pub job: String,
    /// Its processed version (1 for the first result of the series).
    pub version: u32,
    pub sops: BTreeMap<String, InstanceRecord>,
    /// When it was closed (ms since the Unix epoch): its files are kept for continuations
    /// for `continuation_window_s` after that.
    pub closed_ms: u64,
}

/// Why a reception is ready to close.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Closing {
    /// The rule that closed it.
    pub because: &'static str,
    /// Set when the series is known or suspected to be incomplete: the reason, with counts.
    pub incomplete: Option<String>,
    /// Facts worth a note in the report (doubts the series itself raises).
    pub notes: Vec<String>,
}

/// The instances a job for `open` processes: the base's, replaced by this epoch's copies, plus
/// this epoch's new ones.
pub(super) fn union<'a>(
    open: &'a OpenSeries,
    base: Option<&'a ClosedSeries>,
) -> BTreeMap<&'a str, &'a InstanceRecord> {
    let mut all: BTreeMap<&str, &InstanceRecord> = BTreeMap::new();
    if let Some(b) = base {
        all.extend(b.sops.iter().map(|(k, v)| (k.as_str(), v)));
    }
    all.extend(open.sops.iter().map(|(k, v)| (k.as_str(), v)));
    all
}

/// Whether every instance of `open` repeats, byte for byte, an instance of `base`.
pub(super) fn only_repeats(open: &OpenSeries, base: Option<&ClosedSeries>) -> bool {
    let Some(b) = base else { return false };
    open.sops
        .iter()
        .all(|(sop, r)| b.sops.get(sop).is_some_and(|p| p.sha256 == r.sha256))
}

/// Why the reception `open` (judged with its `base`) is complete at `now`, if it is.
pub(super) fn completion(
    open: &OpenSeries,
    base: Option<&ClosedSeries>,
    now: Instant,
    settle: Duration,
    idle: Duration,
) -> Option<Closing> {
    let quiet = now.saturating_duration_since(open.last_seen);
    let all = union(open, base);
    let recs: Vec<&InstanceRecord> = all.values().copied().collect();
    if recs.is_empty() {
        return None;
    }
    let count = recs.len() as u64;
    let phases = recs
        .iter()
        .find_map(|r| r.cardiac_images)
        .filter(|c| *c > 0);
    let in_acquisition = recs
        .iter()
        .find_map(|r| r.images_in_acquisition)
        .filter(|n| *n > 0);
    let done = |because| Closing {
        because,
        incomplete: None,
        notes: Vec::new(),
    };
    if let (Some(n), Some(c)) = (in_acquisition, phases) {
        if count >= n.saturating_mul(c) {
            return Some(done("expected instance count reached"));
        }
    }
    if quiet >= settle {
        if recs.iter().all(|r| r.frames > 1) {
            return Some(done("multi-frame instances settled"));
        }
        if let Some(c) = phases {
            let per_slice = per_slice_counts(&recs);
            if !per_slice.is_empty() && per_slice.values().all(|n| *n >= c) {
                let mut closing = done("every slice has its phase count");
                if let Some(n) = in_acquisition.filter(|n| *n > count && *n % c == 0) {
                    closing.notes.push(format!(
                        "ImagesInAcquisition is {n} but {count} images of this series arrived \
                         ({} slices of {}): if the scanner acquired more slices than it sent, \
                         a later continuation will supersede this result",
                        per_slice.len(),
                        n / c
                    ));
                }
                return Some(closing);
            }
        }
    }
    if quiet >= idle {
        return Some(Closing {
            because: "idle timeout",
            incomplete: Some(idle_reason(&recs, phases, idle)),
            notes: Vec::new(),
        });
    }
    None
}

fn per_slice_counts<'a>(recs: &[&'a InstanceRecord]) -> HashMap<&'a str, u64> {
    let mut per_slice: HashMap<&str, u64> = HashMap::new();
    for r in recs {
        if let Some(k) = &r.slice {
            *per_slice.entry(k.as_str()).or_default() += 1;
        }
    }
    per_slice
}

/// What was missing when a reception closed on the idle timeout.
fn idle_reason(recs: &[&InstanceRecord], phases: Option<u64>, idle: Duration) -> String {
    let quiet = format!(
        "closed after {} s without new instances with {} images",
        idle.as_secs(),
        recs.len()
    );
    let Some(c) = phases else {
        return format!("{quiet}; no CardiacNumberOfImages, so completeness could not be checked");
    };
    let per_slice = per_slice_counts(recs);
    let short: Vec<u64> = per_slice.values().copied().filter(|n| *n < c).collect();
    if per_slice.is_empty() {
        return format!("{quiet}; no ImagePositionPatient, so completeness could not be checked");
    }
    format!(
        "{quiet}: {} of {} slice positions have fewer than the {c} phases CardiacNumberOfImages \
         gives (fewest: {})",
        short.len(),
        per_slice.len(),
        short.iter().min().copied().unwrap_or(c)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sop: &str, z: usize, sha: &str) -> InstanceRecord {
        InstanceRecord {
            sop: sop.into(),
            series: "s".into(),
            epoch: 0,
            file: format!("{sop}.dcm"),
            sha256: sha.into(),
            bytes: 1,
            slice: Some(format!("0\\0\\{z}")),
            images_in_acquisition: None,
            cardiac_images: Some(2),
            frames: 1,
            at_ms: 0,
        }
    }

    fn open(recs: &[InstanceRecord], epoch: u32, at: Instant) -> OpenSeries {
        OpenSeries {
            epoch,
            sops: recs.iter().map(|r| (r.sop.clone(), r.clone())).collect(),
            last_seen: at,
        }
    }

    #[test]
    fn a_continuation_is_judged_with_the_slices_already_processed() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let (settle, idle) = (Duration::from_secs(1), Duration::from_secs(60));
        let base = ClosedSeries {
            epoch: 0,
            job: "j0".into(),
            version: 1,
            closed_ms: 0,
            sops: [rec("a", 0, "1"), rec("b", 0, "2")]
                .into_iter()
                .map(|r| (r.sop.clone(), r))
                .collect(),
        };
        let cont = open(&[rec("c", 10, "3")], 1, t0);
        // Slice 10 has one of two phases: not complete until the idle timeout.
        assert_eq!(completion(&cont, Some(&base), later, settle, idle), None);
        let cont = open(&[rec("c", 10, "3"), rec("d", 10, "4")], 1, t0);
        let c = completion(&cont, Some(&base), later, settle, idle).expect("complete");
        assert_eq!(c.because, "every slice has its phase count");
        assert_eq!(union(&cont, Some(&base)).len(), 4);
        assert!(!only_repeats(&cont, Some(&base)));
    }

    #[test]
    fn repeats_are_told_apart_from_changes_and_idle_closes_are_flagged() {
        let t0 = Instant::now();
        let base = ClosedSeries {
            epoch: 0,
            job: "j0".into(),
            version: 1,
            closed_ms: 0,
            sops: [rec("a", 0, "1")]
                .into_iter()
                .map(|r| (r.sop.clone(), r))
                .collect(),
        };
        assert!(only_repeats(&open(&[rec("a", 0, "1")], 1, t0), Some(&base)));
        assert!(!only_repeats(
            &open(&[rec("a", 0, "X")], 1, t0),
            Some(&base)
        ));
        assert!(!only_repeats(&open(&[rec("a", 0, "1")], 0, t0), None));
        let half = open(&[rec("a", 0, "1")], 0, t0);
        let c = completion(
            &half,
            None,
            t0 + Duration::from_secs(61),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .expect("idle");
        let why = c.incomplete.expect("flagged");
        assert!(why.contains("1 of 1 slice positions"), "{why}");
    }
}
