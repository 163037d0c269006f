//! [`CudaBackend`]: the U-Net on the GPU.

use super::context::{self, Gpu};
use super::modules::Kernels;
use crate::nn::backend::{Backend, TrainOutput};
use crate::nn::loss::Target;
use crate::nn::{NnError, Tensor, UNetParams};

/// The GPU implementation of [`Backend`].
pub struct CudaBackend {
    gpu: Gpu,
    kernels: Kernels,
}

impl CudaBackend {
    /// Opens device `ordinal` and loads the kernels, or says why the GPU cannot be used.
    pub fn open(ordinal: usize) -> Result<Self, String> {
        let gpu = context::open(ordinal)?;
        let kernels = Kernels::load(&gpu)?;
        Ok(CudaBackend { gpu, kernels })
    }
}

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        format!("cuda ({}, sm_{}{}, kernels {:?})", self.gpu.name, self.gpu.cc.0, self.gpu.cc.1, self.kernels.how)
    }

    fn load_inference(&mut self, _params: &UNetParams) -> Result<(), NnError> {
        Err(NnError::Device("CUDA inference not implemented yet".into()))
    }

    fn infer(&mut self, _x: &Tensor) -> Result<Tensor, NnError> {
        Err(NnError::Device("CUDA inference not implemented yet".into()))
    }

    fn train_step(&mut self, _params: &mut UNetParams, _x: &Tensor, _target: &Target) -> Result<TrainOutput, NnError> {
        Err(NnError::Device("CUDA training not implemented yet".into()))
    }
}
