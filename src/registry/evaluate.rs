//! Measuring a model on the held-out split, in the form the registry records.

use super::{RegistryError, Validation};
use crate::nn::{Backend, Model};
use crate::train::data::FrameSource;
use crate::train::trainer::validate;
use std::collections::{BTreeMap, BTreeSet};

/// Dice per class of `model` on frames `idx` of `src` (the held-out patients' frames), pooled
/// over frames; the score is the mean over the classes drawn there.
pub fn held_out_validation(
    backend: &mut dyn Backend,
    model: &Model,
    src: &dyn FrameSource,
    idx: &[usize],
    batch: usize,
) -> Result<Validation, RegistryError> {
    if idx.is_empty() {
        return Err(RegistryError::Evaluate(
            "the held-out split has no frames in this data".into(),
        ));
    }
    if !src.size().is_multiple_of(model.config().size_multiple()) {
        return Err(RegistryError::Evaluate(format!(
            "frames of {} pixels do not fit the model's depth",
            src.size()
        )));
    }
    let d = validate(backend, model, src, idx, batch)
        .map_err(|e| RegistryError::Evaluate(e.to_string()))?;
    let dice: BTreeMap<String, f64> = d
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, v)| v.is_finite())
        .map(|(c, v)| {
            (
                model
                    .labels
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| format!("class{c}")),
                *v,
            )
        })
        .collect();
    let score = if dice.is_empty() {
        f64::NAN
    } else {
        dice.values().sum::<f64>() / dice.len() as f64
    };
    let patients: BTreeSet<&str> = idx.iter().map(|&i| src.patient(i)).collect();
    Ok(Validation {
        dice,
        score,
        patients: patients.len(),
        frames: idx.len(),
        at: super::manifest::now(),
    })
}
