//! Checkpoints: the model, the optimiser moments and the loop state, written at the end of
//! every epoch so an interrupted run resumes where it stopped and, because every random draw
//! is a function of (seed, epoch, step), continues exactly as if never interrupted.

use super::adamw::AdamW;
use super::TrainError;
use crate::nn::params::UNetParams;
use crate::nn::weights::{Model, StoreAs};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Loop state saved beside the model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoopState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// Best validation score so far (mean foreground Dice) and its epoch.
    pub best_score: f64,
    pub best_epoch: usize,
    /// Seconds of training so far (for time budgets across resumes).
    pub seconds: f64,
    /// One entry per finished epoch.
    pub history: Vec<super::EpochReport>,
    /// Fingerprint of the options, so a resume with different options is refused.
    pub options: String,
}

/// Paths of a checkpoint directory.
pub struct CheckpointDir {
    pub dir: PathBuf,
}

impl CheckpointDir {
    /// Checkpoints under `out/checkpoint`.
    pub fn new(out: &Path) -> Self {
        CheckpointDir {
            dir: out.join("checkpoint"),
        }
    }
    fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    fn optim(&self) -> PathBuf {
        self.dir.join("optimizer.safetensors")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// True when a complete checkpoint exists (the state file is written last).
    pub fn exists(&self) -> bool {
        self.state().is_file()
    }

    /// Writes model, optimiser and state; the state file goes last, by rename, so a crash
    /// mid-write leaves the previous checkpoint usable.
    pub fn save(&self, model: &Model, opt: &AdamW, state: &LoopState) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        model.save(&self.model(), StoreAs::F32)?;
        let bytes = optimizer_bytes(opt).map_err(TrainError::Checkpoint)?;
        write_atomic(&self.optim(), &bytes)?;
        let json =
            serde_json::to_vec_pretty(state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        write_atomic(&self.state(), &json)
    }

    /// The loop state alone (`None` when there is no checkpoint): how far a run got and how
    /// long it trained, without loading the model and optimiser.
    pub fn load_state(&self) -> Result<Option<LoopState>, TrainError> {
        if !self.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(self.state()).map_err(|e| TrainError::io(&self.state(), e))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", self.state().display())))
    }

    /// Loads a checkpoint written by [`save`](Self::save).
    pub fn load(&self) -> Result<(Model, AdamW, LoopState), TrainError> {
        let state: LoopState = serde_json::from_slice(
            &std::fs::read(self.state()).map_err(|e| TrainError::io(&self.state(), e))?,
        )
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", self.state().display())))?;
        let model = Model::load(&self.model())?;
        let bytes = std::fs::read(self.optim()).map_err(|e| TrainError::io(&self.optim(), e))?;
        let opt = optimizer_from_bytes(&bytes, &model.params)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", self.optim().display())))?;
        Ok((model, opt, state))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

fn optimizer_bytes(opt: &AdamW) -> Result<Vec<u8>, String> {
    let layout = UNetParams::layout(&opt.m.cfg);
    let blobs: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .iter()
        .zip(opt.m.tensors().into_iter().zip(opt.v.tensors()))
        .flat_map(|(info, (m, v))| {
            [
                (
                    format!("m.{}", info.name),
                    info.shape.clone(),
                    bytemuck::cast_slice::<f32, u8>(m).to_vec(),
                ),
                (
                    format!("v.{}", info.name),
                    info.shape.clone(),
                    bytemuck::cast_slice::<f32, u8>(v).to_vec(),
                ),
            ]
        })
        .collect();
    let mut views = Vec::new();
    for (name, shape, b) in &blobs {
        views.push((
            name.clone(),
            TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| e.to_string())?,
        ));
    }
    let meta = [
        ("step".to_string(), opt.step.to_string()),
        ("lr".to_string(), opt.lr.to_string()),
        ("weight_decay".to_string(), opt.weight_decay.to_string()),
    ]
    .into_iter()
    .collect();
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

fn optimizer_from_bytes(bytes: &[u8], params: &UNetParams) -> Result<AdamW, String> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let meta = header.metadata().clone().unwrap_or_default();
    let num = |k: &str| {
        meta.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or(format!("missing {k}"))
    };
    let mut opt = AdamW::new(params, num("lr")?, num("weight_decay")?);
    opt.step = num("step")? as u64;
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let layout = UNetParams::layout(&params.cfg);
    for (prefix, target) in [("m", &mut opt.m), ("v", &mut opt.v)] {
        for (info, dst) in layout.iter().zip(target.tensors_mut()) {
            let t = st
                .tensor(&format!("{prefix}.{}", info.name))
                .map_err(|e| e.to_string())?;
            if t.dtype() != Dtype::F32 || t.shape() != info.shape.as_slice() {
                return Err(format!(
                    "{prefix}.{} has the wrong dtype or shape",
                    info.name
                ));
            }
            *dst = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
        }
    }
    Ok(opt)
}
