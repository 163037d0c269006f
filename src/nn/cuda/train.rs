//! Training on the GPU (not written yet: see the report). Returns a clear error so callers fall
//! back to the CPU for training.

use super::CudaBackend;
use crate::nn::backend::TrainOutput;
use crate::nn::loss::Target;
use crate::nn::{NnError, Tensor, UNetParams};

/// One training step on the GPU.
pub fn train_step(_b: &mut CudaBackend, _params: &mut UNetParams, _x: &Tensor, _target: &Target) -> Result<TrainOutput, NnError> {
    Err(NnError::Device("training on CUDA is not implemented yet; use --device cpu for training".into()))
}
