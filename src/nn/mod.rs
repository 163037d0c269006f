//! The neural-network engine: the fixed U-Net of docs/ARCHITECTURE.md, its weights file, the
//! loss, and the `Backend` trait with a CPU implementation.
//!
//! Layers have explicit forward and backward passes side by side (as in llm.c) instead of an
//! autograd tape: the graph is fixed, so explicit passes are faster and easier to audit.
//! Activations are NHWC (channels last) so that convolutions become GEMMs whose long dimension
//! is the pixel count.

pub mod backend;
pub mod buffer;
pub mod config;
pub mod cpu;
#[cfg(feature = "gpu")]
pub mod cuda;
pub mod device;
pub mod error;
pub mod fold;
pub mod gemm;
pub mod loss;
pub mod params;
pub mod profile;
pub mod reference;
pub mod rng;
pub mod tensor;
pub mod weights;

pub use backend::{Backend, TrainOutput};
pub use config::{Preprocess, UNetConfig};
pub use device::DeviceChoice;
pub use error::NnError;
pub use params::UNetParams;
pub use tensor::Tensor;
pub use weights::Model;
