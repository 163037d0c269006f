//! Model files: safetensors with PyTorch's tensor names and layouts plus self-describing
//! metadata (`format`, `config`, `labels`, `preprocess`), so `unet_ref.py` loads what cineseg
//! writes and cineseg loads what PyTorch exports.

use super::params::{Kind, UNetParams};
use super::{NnError, Preprocess, UNetConfig};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The `format` metadata value that marks a cineseg U-Net file.
pub const FORMAT: &str = "cineseg-unet";

/// Class names in output-channel order for the default 4-class model.
pub const DEFAULT_LABELS: [&str; 4] = ["background", "lv", "myo", "rv"];

/// A model as stored on disk: weights plus everything needed to run it correctly.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub params: UNetParams,
    /// Name of each output class (index = channel).
    pub labels: Vec<String>,
    /// Input preparation used in training; `None` for a file that does not say (e.g. a fresh
    /// PyTorch export), in which case callers must supply one.
    pub preprocess: Option<Preprocess>,
    /// Other metadata kept verbatim (provenance, recipe, metrics).
    pub extra: BTreeMap<String, String>,
}

/// On-disk precision of a saved model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreAs {
    F32,
    F16,
}

impl Model {
    /// A model around fresh or trained parameters with the default labels.
    pub fn new(params: UNetParams, preprocess: Option<Preprocess>) -> Self {
        let labels = default_labels(params.cfg.classes);
        Model {
            params,
            labels,
            preprocess,
            extra: BTreeMap::new(),
        }
    }

    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        &self.params.cfg
    }

    /// Reads a model file, checking every tensor's presence, shape and dtype.
    pub fn load(path: &Path) -> Result<Self, NnError> {
        let bytes = std::fs::read(path).map_err(|source| NnError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses a model from the bytes of a file (`path` only names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, NnError> {
        let err = |r: String| NnError::weights(path, r);
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| err(format!("not a safetensors file ({e})")))?;
        let meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
        match meta.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            Some(other) => return Err(err(format!("format is {other:?}, expected {FORMAT:?}"))),
            None => return Err(err(format!("no \"format\" metadata (expected {FORMAT:?})"))),
        }
        let cfg_json = meta
            .get("config")
            .ok_or_else(|| err("no \"config\" metadata".into()))?;
        let cfg: UNetConfig = serde_json::from_str(cfg_json)
            .map_err(|e| err(format!("bad \"config\" metadata: {e}")))?;
        cfg.validate().map_err(|e| err(e.to_string()))?;
        let labels: Vec<String> = match meta.get("labels") {
            Some(s) => {
                serde_json::from_str(s).map_err(|e| err(format!("bad \"labels\" metadata: {e}")))?
            }
            None => default_labels(cfg.classes),
        };
        if labels.len() != cfg.classes {
            return Err(err(format!(
                "{} labels for {} classes",
                labels.len(),
                cfg.classes
            )));
        }
        let preprocess: Option<Preprocess> = match meta.get("preprocess") {
            Some(s) => Some(
                serde_json::from_str(s)
                    .map_err(|e| err(format!("bad \"preprocess\" metadata: {e}")))?,
            ),
            None => None,
        };
        if let Some(p) = &preprocess {
            p.validate(cfg.size_multiple()).map_err(err)?;
        }
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| err(format!("corrupt tensor data ({e})")))?;
        // Every tensor's presence and shape first, allocating nothing but the layout (names
        // and shapes). A 200-byte file claiming a huge `base` used to have its parameters
        // allocated here before any shape was checked, aborting the process; now they are
        // allocated only once the file is known to hold them (safetensors has checked each
        // tensor's bytes against the file), so at most 2x the file (f16 -> f32).
        let layout = UNetParams::layout(&cfg);
        let mut views = Vec::with_capacity(layout.len());
        for info in &layout {
            let view = st.tensor(&info.name).map_err(|_| {
                err(format!(
                    "tensor {} missing: the file does not match its config (base {}, depth {}, classes {})",
                    info.name, cfg.base, cfg.depth, cfg.classes
                ))
            })?;
            if view.shape() != info.shape.as_slice() {
                return Err(err(format!(
                    "tensor {} has shape {:?}, the config (base {}, depth {}) needs {:?}",
                    info.name,
                    view.shape(),
                    cfg.base,
                    cfg.depth,
                    info.shape
                )));
            }
            views.push(view);
        }
        let mut params = UNetParams::zeros(&cfg);
        for ((info, view), dst) in layout.iter().zip(&views).zip(params.tensors_mut()) {
            *dst = to_f32(view).map_err(|r| err(format!("tensor {}: {r}", info.name)))?;
            if dst.iter().any(|v| !v.is_finite()) {
                return Err(err(format!(
                    "tensor {} holds NaN or infinite values",
                    info.name
                )));
            }
        }
        let known = ["format", "config", "labels", "preprocess"];
        let extra = meta
            .into_iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .collect();
        Ok(Model {
            params,
            labels,
            preprocess,
            extra,
        })
    }

    /// Writes the model atomically (temporary file, then rename), so a crash never leaves a
    /// half-written model where a good one was.
    pub fn save(&self, path: &Path, store: StoreAs) -> Result<(), NnError> {
        let bytes = self
            .to_bytes(store)
            .map_err(|r| NnError::weights(path, r))?;
        let tmp = path.with_extension("safetensors.tmp");
        let io = |source| NnError::Io {
            path: path.into(),
            source,
        };
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }

    /// Serialises the model to safetensors bytes.
    pub fn to_bytes(&self, store: StoreAs) -> Result<Vec<u8>, String> {
        let layout = UNetParams::layout(&self.params.cfg);
        let tensors = self.params.tensors();
        let blobs: Vec<Vec<u8>> = tensors
            .iter()
            .map(|t| match store {
                StoreAs::F32 => bytemuck::cast_slice::<f32, u8>(t).to_vec(),
                StoreAs::F16 => t
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            })
            .collect();
        let dtype = match store {
            StoreAs::F32 => Dtype::F32,
            StoreAs::F16 => Dtype::F16,
        };
        let mut views = Vec::new();
        for (info, blob) in layout.iter().zip(&blobs) {
            views.push((
                info.name.clone(),
                TensorView::new(dtype, info.shape.clone(), blob).map_err(|e| e.to_string())?,
            ));
        }
        let mut meta: HashMap<String, String> = self.extra.clone().into_iter().collect();
        meta.insert("format".into(), FORMAT.into());
        meta.insert(
            "config".into(),
            serde_json::to_string(&self.params.cfg).map_err(|e| e.to_string())?,
        );
        meta.insert(
            "labels".into(),
            serde_json::to_string(&self.labels).map_err(|e| e.to_string())?,
        );
        if let Some(p) = &self.preprocess {
            meta.insert(
                "preprocess".into(),
                serde_json::to_string(p).map_err(|e| e.to_string())?,
            );
        }
        safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
    }

    /// Number of trainable values (7.8 M for the default configuration).
    pub fn parameter_count(&self) -> usize {
        self.params.trainable_count()
    }

    /// True if `kind` tensors should get weight decay (4-D weights only).
    pub fn decays(kind: Kind) -> bool {
        kind == Kind::Weight4d
    }
}

/// Labels for `classes` outputs: the standard four, or numbered ones.
pub fn default_labels(classes: usize) -> Vec<String> {
    (0..classes)
        .map(|i| {
            DEFAULT_LABELS
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("class{i}"))
        })
        .collect()
}

/// Converts a stored tensor of any float dtype to f32 (little-endian, possibly unaligned).
fn to_f32(view: &TensorView<'_>) -> Result<Vec<f32>, String> {
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        other => return Err(format!("dtype {other:?} is not a float type")),
    })
}

/// Tensors by name, each with its shape and its values widened to f64.
pub type TensorsF64 = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

/// Reads every tensor of a safetensors file as f64 with its shape (goldens, tools).
pub fn read_tensors_f64(path: &Path) -> Result<TensorsF64, NnError> {
    let bytes = std::fs::read(path).map_err(|source| NnError::Io {
        path: path.into(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| NnError::weights(path, e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, v) in st.tensors() {
        let d = v.data();
        let vals: Vec<f64> = match v.dtype() {
            Dtype::F64 => d
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            Dtype::I32 => d
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                .collect(),
            Dtype::I64 => d
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64)
                .collect(),
            _ => to_f32(&v)
                .map_err(|r| NnError::weights(path, r))?
                .into_iter()
                .map(f64::from)
                .collect(),
        };
        out.insert(name, (v.shape().to_vec(), vals));
    }
    Ok(out)
}
