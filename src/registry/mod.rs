//! The model registry on disk: every model version the box ever made or received, with its
//! parent, data, recipe and validations; which one serves; and the rule that changes that.
//!
//! ```text
//! ROOT/registry.json              current model and the promote/rollback log
//! ROOT/split.json                 the site's held-out patients (drawn once, see `split`)
//! ROOT/models/<id>/model.safetensors
//! ROOT/models/<id>/manifest.json
//! ```
//!
//! A version's id is the start of a SHA-256 over what decides the model's behaviour (the
//! tensors as f32 in layout order, the architecture, labels and preprocessing; not provenance
//! notes, and not the file's header order, which the safetensors writer does not fix), so the
//! same weights registered twice are one version. The SHA-256 of the stored file is kept as
//! well, and a file altered on disk is refused on load. Promotion evaluates
//! the candidate *and* the incumbent on the held-out split now (not on stored numbers, which
//! may come from a smaller split) and switches only when the candidate is better by more than
//! the margin. Nothing is ever deleted, so any version can be rolled back to.

pub mod evaluate;
pub mod manifest;
pub mod split;

pub use manifest::{Event, Manifest, RegistryState, Validation};
pub use split::HeldOutSplit;

use crate::nn::{Model, NnError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const FORMAT: &str = "cineseg-registry-1";

/// Everything the registry can fail with, naming the file or version involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: damaged registry file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no model version {0:?} in the registry (see `cineseg models list`)")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] NnError),
    #[error("validation failed: {0}")]
    Evaluate(String),
}

impl RegistryError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        RegistryError::Io {
            path: path.into(),
            source,
        }
    }
    fn corrupt(path: &Path, reason: String) -> Self {
        RegistryError::Corrupt {
            path: path.into(),
            reason,
        }
    }
}

/// The outcome of a promotion request.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Decision {
    pub promoted: bool,
    pub candidate: String,
    pub candidate_validation: Validation,
    /// The model current at the time, with its validation on the same split.
    pub incumbent: Option<(String, Validation)>,
    pub margin: f64,
    /// One sentence for people and logs.
    pub reason: String,
}

/// A registry rooted at a folder.
pub struct Registry {
    root: PathBuf,
    state: RegistryState,
}

impl Registry {
    /// Opens (or creates) the registry in `root`.
    pub fn open(root: &Path) -> Result<Self, RegistryError> {
        let models = root.join("models");
        std::fs::create_dir_all(&models).map_err(|e| RegistryError::io(&models, e))?;
        let path = root.join("registry.json");
        let state = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistryState {
                format: FORMAT.into(),
                ..Default::default()
            },
            Err(e) => return Err(RegistryError::io(&path, e)),
            Ok(b) => {
                let s: RegistryState = serde_json::from_slice(&b)
                    .map_err(|e| RegistryError::corrupt(&path, e.to_string()))?;
                if s.format != FORMAT {
                    return Err(RegistryError::corrupt(
                        &path,
                        format!("format {:?}, expected {FORMAT:?}", s.format),
                    ));
                }
                s
            }
        };
        Ok(Registry {
            root: root.to_path_buf(),
            state,
        })
    }

    /// The registry's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The serving model's id.
    pub fn current(&self) -> Option<&str> {
        self.state.current.as_deref()
    }

    /// The promote/rollback log, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.state.events
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("models").join(id)
    }

    /// Path of a version's weights file.
    pub fn model_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("model.safetensors")
    }

    /// Registers a model file (copied in); returns its manifest. A file already registered
    /// returns the existing manifest unchanged. `parent` must be a registered id.
    pub fn add(
        &mut self,
        file: &Path,
        parent: Option<&str>,
        data: &str,
        note: &str,
    ) -> Result<Manifest, RegistryError> {
        let bytes = std::fs::read(file).map_err(|e| RegistryError::io(file, e))?;
        let model = Model::from_bytes(&bytes, file)?;
        if let Some(p) = parent {
            self.manifest(p)?;
        }
        let sha = hex(&Sha256::digest(&bytes));
        let id = content_id(&model);
        if let Ok(m) = self.manifest(&id) {
            return Ok(m);
        }
        let dir = self.dir(&id);
        std::fs::create_dir_all(&dir).map_err(|e| RegistryError::io(&dir, e))?;
        write_atomic(&self.model_path(&id), &bytes)?;
        let m = Manifest {
            id: id.clone(),
            sha256: sha,
            parent: parent.map(str::to_string),
            data: if data.is_empty() {
                model.extra.get("train_data").cloned().unwrap_or_default()
            } else {
                data.into()
            },
            recipe: model.extra.get("recipe").cloned().unwrap_or_default(),
            note: note.into(),
            registered_at: manifest::now(),
            validations: Vec::new(),
        };
        self.save_manifest(&m)?;
        Ok(m)
    }

    /// The manifest of version `id`.
    pub fn manifest(&self, id: &str) -> Result<Manifest, RegistryError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(RegistryError::Unknown(id.into()));
        }
        let path = self.dir(id).join("manifest.json");
        let bytes = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::Unknown(id.into()))
            }
            r => r.map_err(|e| RegistryError::io(&path, e))?,
        };
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::corrupt(&path, e.to_string()))
    }

    /// Every version, oldest first.
    pub fn list(&self) -> Result<Vec<Manifest>, RegistryError> {
        let models = self.root.join("models");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&models).map_err(|e| RegistryError::io(&models, e))? {
            let entry = entry.map_err(|e| RegistryError::io(&models, e))?;
            if let Some(id) = entry.file_name().to_str().filter(|_| entry.path().is_dir()) {
                out.push(self.manifest(id)?);
            }
        }
        out.sort_by(|a, b| (a.registered_at, &a.id).cmp(&(b.registered_at, &b.id)));
        Ok(out)
    }

    /// Loads version `id`, refusing a file whose content no longer matches its hash.
    pub fn load(&self, id: &str) -> Result<Model, RegistryError> {
        let m = self.manifest(id)?;
        let path = self.model_path(id);
        let bytes = std::fs::read(&path).map_err(|e| RegistryError::io(&path, e))?;
        if hex(&Sha256::digest(&bytes)) != m.sha256 {
            return Err(RegistryError::corrupt(
                &path,
                "content does not match the registered SHA-256".into(),
            ));
        }
        Ok(Model::from_bytes(&bytes, &path)?)
    }

    /// The site's held-out split, drawn on first use with `fraction` and persisted; patients
    /// not seen before are assigned and saved, patients already assigned never move.
    pub fn held_out_split<'a>(
        &self,
        site: &str,
        fraction: f64,
        patients: impl IntoIterator<Item = &'a str>,
    ) -> Result<HeldOutSplit, RegistryError> {
        let path = self.root.join("split.json");
        let mut split = match HeldOutSplit::load(&path)? {
            Some(s) => {
                if s.site != site {
                    return Err(RegistryError::Invalid(format!(
                        "{} belongs to site {:?}, not {site:?}",
                        path.display(),
                        s.site
                    )));
                }
                s
            }
            None => HeldOutSplit::new(site, fraction)?,
        };
        let new = split.assign(patients);
        if new > 0 || !path.exists() {
            let json = serde_json::to_vec_pretty(&split)
                .map_err(|e| RegistryError::Invalid(e.to_string()))?;
            write_atomic(&path, &json)?;
        }
        Ok(split)
    }

    /// Evaluates `candidate` and the current model with `evaluate` (on the held-out split) and
    /// makes the candidate current only if its score beats the incumbent's by more than
    /// `margin`. With no current model the candidate is promoted. Both validations are
    /// recorded in the manifests whatever the outcome.
    pub fn promote(
        &mut self,
        candidate: &str,
        margin: f64,
        evaluate: &mut dyn FnMut(&Model) -> Result<Validation, RegistryError>,
    ) -> Result<Decision, RegistryError> {
        if !(margin.is_finite() && margin >= 0.0) {
            return Err(RegistryError::Invalid(format!(
                "margin {margin} must be a non-negative number"
            )));
        }
        if self.current() == Some(candidate) {
            return Err(RegistryError::Invalid(format!(
                "{candidate} is already the current model"
            )));
        }
        let cand_val = self.validate(candidate, evaluate)?;
        let incumbent = match self.state.current.clone() {
            Some(id) => {
                let v = self.validate(&id, evaluate)?;
                Some((id, v))
            }
            None => None,
        };
        let (promoted, reason) = match &incumbent {
            _ if !cand_val.score.is_finite() => {
                (false, "the candidate's score is not a number".to_string())
            }
            None => (true, "no current model".to_string()),
            Some((id, v)) if cand_val.score > v.score + margin => (
                true,
                format!(
                    "score {:.4} beats {id}'s {:.4} by more than {margin}",
                    cand_val.score, v.score
                ),
            ),
            Some((id, v)) => (
                false,
                format!(
                    "score {:.4} does not beat {id}'s {:.4} by more than {margin}",
                    cand_val.score, v.score
                ),
            ),
        };
        if promoted {
            self.state.events.push(Event {
                action: "promote".into(),
                id: candidate.into(),
                previous: self.state.current.clone(),
                at: manifest::now(),
                candidate_score: Some(cand_val.score),
                incumbent_score: incumbent.as_ref().map(|(_, v)| v.score),
            });
            self.state.current = Some(candidate.into());
            self.save_state()?;
        }
        Ok(Decision {
            promoted,
            candidate: candidate.into(),
            candidate_validation: cand_val,
            incumbent,
            margin,
            reason,
        })
    }

    /// Makes `to` current, or (with `None`) the model that was current before the current one
    /// was promoted. Returns the new current id.
    pub fn rollback(&mut self, to: Option<&str>) -> Result<String, RegistryError> {
        let target = match to {
            Some(id) => {
                self.manifest(id)?;
                id.to_string()
            }
            None => {
                let cur = self.state.current.clone().ok_or_else(|| {
                    RegistryError::Invalid("no current model to roll back".into())
                })?;
                self.state
                    .events
                    .iter()
                    .rev()
                    .find(|e| e.id == cur && e.action == "promote")
                    .and_then(|e| e.previous.clone())
                    .ok_or_else(|| {
                        RegistryError::Invalid(format!(
                            "{cur} has no earlier model to roll back to"
                        ))
                    })?
            }
        };
        self.state.events.push(Event {
            action: "rollback".into(),
            id: target.clone(),
            previous: self.state.current.clone(),
            at: manifest::now(),
            candidate_score: None,
            incumbent_score: None,
        });
        self.state.current = Some(target.clone());
        self.save_state()?;
        Ok(target)
    }

    /// Makes `id` current on an operator's word, without a held-out comparison (a site with no
    /// labelled data yet, or a model validated elsewhere). Recorded as a `set` event, so the
    /// history says that no validation decided it; `rollback` returns to the previous one.
    pub fn set_current(&mut self, id: &str) -> Result<(), RegistryError> {
        self.manifest(id)?;
        self.state.events.push(Event {
            action: "set".into(),
            id: id.to_string(),
            previous: self.state.current.clone(),
            at: manifest::now(),
            candidate_score: None,
            incumbent_score: None,
        });
        self.state.current = Some(id.to_string());
        self.save_state()
    }

    fn validate(
        &self,
        id: &str,
        evaluate: &mut dyn FnMut(&Model) -> Result<Validation, RegistryError>,
    ) -> Result<Validation, RegistryError> {
        let model = self.load(id)?;
        let v = evaluate(&model)?;
        let mut m = self.manifest(id)?;
        m.validations.push(v.clone());
        self.save_manifest(&m)?;
        Ok(v)
    }

    fn save_manifest(&self, m: &Manifest) -> Result<(), RegistryError> {
        let json =
            serde_json::to_vec_pretty(m).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        write_atomic(&self.dir(&m.id).join("manifest.json"), &json)
    }

    fn save_state(&self) -> Result<(), RegistryError> {
        let json = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        write_atomic(&self.root.join("registry.json"), &json)
    }
}

/// Which model made a result: a name for people (file stem or `registry:<id>`) and the content
/// id that identifies the weights exactly. Results carry both, so a result made with swapped
/// weights can be traced to them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelIdentity {
    /// Name for people.
    pub name: String,
    /// [`content_id`] of the model.
    pub content_id: String,
}

impl ModelIdentity {
    /// The identity of `model`, called `name`.
    pub fn of(name: &str, model: &Model) -> ModelIdentity {
        ModelIdentity {
            name: name.to_string(),
            content_id: content_id(model),
        }
    }

    /// AlgorithmVersion for DICOM (LO, at most 64 characters): the content id, then the name.
    pub fn algorithm_version(&self) -> String {
        let v = format!("{} ({})", self.content_id, self.name);
        v.chars().take(64).collect()
    }
}

/// The version id of a model: 16 hex digits of a SHA-256 over its tensors (f32, layout
/// order, with names) and its architecture, labels and preprocessing.
pub fn content_id(model: &Model) -> String {
    let mut h = Sha256::new();
    let describe = serde_json::json!({
        "config": model.params.cfg,
        "labels": model.labels,
        "preprocess": model.preprocess,
    });
    h.update(describe.to_string().as_bytes());
    for (info, t) in crate::nn::UNetParams::layout(&model.params.cfg)
        .iter()
        .zip(model.params.tensors())
    {
        h.update(info.name.as_bytes());
        for v in t {
            h.update(v.to_le_bytes());
        }
    }
    hex(&h.finalize())[..16].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes by temporary file, fsync and rename, so a crash never leaves a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| RegistryError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| RegistryError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| RegistryError::io(path, e))
}
