//! Training: optimiser, schedule, augmentation, sampling, the training loop and checkpoints.

pub mod adamw;
pub mod adapt;
pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod domain7t;
pub mod finetune;
pub mod schedule;
pub mod subset;
pub mod trainer;
pub mod transfer_experiment;
pub mod unlabelled;

use crate::nn::NnError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("training data: {0}")]
    Data(String),
    #[error("loss became NaN or infinite at epoch {epoch}, step {step}: lower the learning rate")]
    Diverged { epoch: usize, step: u64 },
}

impl TrainError {
    /// An I/O error on a named path.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What one epoch achieved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    /// Validation Dice per class (`None` for background and classes never labelled).
    pub val_dice: Vec<Option<f64>>,
    pub lr: f64,
    pub images_per_s: f64,
    pub seconds: f64,
}
