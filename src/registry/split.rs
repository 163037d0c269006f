//! The site's held-out validation split, by patient, drawn once and persisted.
//!
//! Promotion compares models on these patients, so they must never be trained on and must
//! never change: a split re-randomised per run leaks training patients into validation (MONAI
//! Label users met exactly this). The first draw writes `split.json`; later calls only *add*
//! patients never seen before (by a salted hash of their id, so the same id always lands on
//! the same side) and never move a patient already assigned, even if the fraction asked for
//! changes.

use super::RegistryError;
use crate::store::split::split_position;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// Persisted assignment of patients to training or held-out validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOutSplit {
    /// Site name, part of the hash salt: two sites do not share a pattern of held-out ids.
    pub site: String,
    /// Fraction of patients held out, fixed at the first draw.
    pub fraction: f64,
    pub validation: BTreeSet<String>,
    pub training: BTreeSet<String>,
}

impl HeldOutSplit {
    /// An empty split for `site` holding out `fraction` of the patients.
    pub fn new(site: &str, fraction: f64) -> Result<Self, RegistryError> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(RegistryError::Invalid(format!(
                "held-out fraction {fraction} must be between 0 and 1"
            )));
        }
        Ok(HeldOutSplit {
            site: site.into(),
            fraction,
            validation: BTreeSet::new(),
            training: BTreeSet::new(),
        })
    }

    /// Whether `patient` is held out (unknown patients are not).
    pub fn is_held_out(&self, patient: &str) -> bool {
        self.validation.contains(patient)
    }

    /// Assigns patients not seen before; returns how many were new. Existing ones never move.
    pub fn assign<'a>(&mut self, patients: impl IntoIterator<Item = &'a str>) -> usize {
        let mut new = 0;
        for p in patients {
            if self.validation.contains(p) || self.training.contains(p) {
                continue;
            }
            new += 1;
            if split_position(&format!("{}\u{1f}{p}", self.site)) < self.fraction {
                self.validation.insert(p.to_string());
            } else {
                self.training.insert(p.to_string());
            }
        }
        // A split with patients but none held out cannot validate: hold out the first training
        // patient in id order (deterministic) the first time this happens.
        if self.validation.is_empty() && self.training.len() >= 2 {
            if let Some(first) = self.training.iter().next().cloned() {
                self.training.remove(&first);
                self.validation.insert(first);
            }
        }
        new
    }

    /// Loads the split from `path`, or `None` when it has not been drawn yet.
    pub fn load(path: &Path) -> Result<Option<Self>, RegistryError> {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::io(path, e)),
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| RegistryError::corrupt(path, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_never_move() {
        let ids: Vec<String> = (0..40).map(|i| format!("pt{i:02}")).collect();
        let mut s = HeldOutSplit::new("site-a", 0.25).unwrap();
        assert_eq!(s.assign(ids[..20].iter().map(String::as_str)), 20);
        let before = s.clone();
        assert_eq!(s.assign(ids.iter().map(String::as_str)), 20);
        assert!(
            before.validation.is_subset(&s.validation) && before.training.is_subset(&s.training)
        );
        s.fraction = 0.9; // even a changed fraction does not re-draw
        assert_eq!(s.assign(ids.iter().map(String::as_str)), 0);
        let held = s.validation.len();
        assert!((4..=18).contains(&held), "{held} of 40 held out");
        // Another site gets another pattern.
        let mut t = HeldOutSplit::new("site-b", 0.25).unwrap();
        t.assign(ids.iter().map(String::as_str));
        assert_ne!(t.validation, s.validation);
        assert!(HeldOutSplit::new("x", 1.0).is_err());
    }
}
