//! What a CPU training step rounds, and where: the convolution GEMMs' precision, and whether
//! stored tensors are rounded to fp16 the way the CUDA backend stores them. The second is the
//! reduced-precision reference of the GPU path: the f32 CPU step with fp16 rounding of every
//! activation and of every (loss-scaled) activation gradient, so that a difference between the
//! simulated fp16 CUDA step and the f32 CPU step can be told apart from a bug
//! (tests/train_sim.rs).

use super::precision::Precision;
use crate::nn::Tensor;

/// How tensors between layers are kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Storage {
    /// f32, as the CPU backend keeps them.
    F32,
    /// Rounded to fp16 as the CUDA backend stores them: activations as they are, activation
    /// gradients multiplied by the loss scale first (they are stored scaled), then unscaled.
    F16 { loss_scale: f32 },
}

/// The numerics of one training step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Numerics {
    /// Precision of the 3x3 convolution GEMMs.
    pub gemm: Precision,
    /// Rounding of the tensors passed between layers.
    pub storage: Storage,
}

impl From<Precision> for Numerics {
    /// The CPU backend's numerics: f32 storage, GEMMs in `gemm`.
    fn from(gemm: Precision) -> Self {
        Numerics {
            gemm,
            storage: Storage::F32,
        }
    }
}

impl Numerics {
    /// Rounds an activation as it would be stored.
    pub fn store(&self, t: &mut Tensor) {
        if let Storage::F16 { .. } = self.storage {
            for v in &mut t.data {
                *v = half::f16::from_f32(*v).to_f32();
            }
        }
    }

    /// Rounds an activation gradient as it would be stored (scaled by the loss scale).
    pub fn store_grad(&self, t: &mut Tensor) {
        if let Storage::F16 { loss_scale } = self.storage {
            for v in &mut t.data {
                *v = half::f16::from_f32(*v * loss_scale).to_f32() / loss_scale;
            }
        }
    }

    /// [`store`](Self::store) returning the tensor.
    pub fn stored(&self, mut t: Tensor) -> Tensor {
        self.store(&mut t);
        t
    }

    /// [`store_grad`](Self::store_grad) returning the tensor.
    pub fn stored_grad(&self, mut t: Tensor) -> Tensor {
        self.store_grad(&mut t);
        t
    }
}
