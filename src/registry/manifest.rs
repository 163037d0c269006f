//! What the registry records about one model version: where it came from (parent, data,
//! recipe), its content hash, and every validation it went through, so a promoted model can be
//! traced and a bad one explained months later.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Validation of a model on the site's held-out split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Dice per class name on the held-out frames (classes not drawn there are absent).
    pub dice: BTreeMap<String, f64>,
    /// The promotion score: mean Dice over the classes present.
    pub score: f64,
    /// Held-out patients and frames it was measured on.
    pub patients: usize,
    pub frames: usize,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// `models/<id>/manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The version's name: 16 hex digits of the SHA-256 of its content (see `content_id`).
    pub id: String,
    /// Full SHA-256 of `model.safetensors`, checked on load.
    pub sha256: String,
    /// The version this one was trained from, when it is in the registry.
    pub parent: Option<String>,
    /// The data it was trained on (a store path or a description).
    pub data: String,
    /// The recipe as recorded in the model file (JSON text), or empty.
    pub recipe: String,
    pub note: String,
    /// Seconds since the Unix epoch.
    pub registered_at: u64,
    /// Every held-out validation, oldest first.
    pub validations: Vec<Validation>,
}

/// One change of the current model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `promote` or `rollback`.
    pub action: String,
    /// The model that became current.
    pub id: String,
    /// The model that was current before.
    pub previous: Option<String>,
    pub at: u64,
    /// Scores behind a promotion (candidate, incumbent).
    pub candidate_score: Option<f64>,
    pub incumbent_score: Option<f64>,
}

/// `registry.json`: which model serves, and how it came to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistryState {
    pub format: String,
    pub current: Option<String>,
    pub events: Vec<Event>,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
