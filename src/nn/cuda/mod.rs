//! The CUDA backend: fp16 NHWC activations, hand-written kernels (`kernels/*.cu`) driven
//! through cudarc with dynamic loading, so the same binary runs where no GPU exists.
//!
//! - [`context`]: opening a device without panicking when libcuda is missing;
//! - [`modules`]: the embedded kernels and their loading (fatbin, PTX, NVRTC);
//! - [`launch`]: launching a kernel by name, on the GPU or the simulator;
//! - [`ops`]: one typed wrapper per kernel, a module per kernel file, tile sizes from the kernels;
//! - [`device`]: device memory as raw addresses (so the simulator can stand in for the GPU);
//! - [`infer`]: folded weights, per-shape buffers, the forward pass (CUDA graph);
//! - [`train`]: the fp16 training step (loss scaling, gradients to the host or AdamW on the device);
//! - [`backend`]: [`CudaBackend`], the [`Backend`](crate::nn::Backend) implementation.

pub mod backend;
pub mod context;
pub mod device;
pub mod infer;
pub mod launch;
pub mod modules;
pub mod ops;
pub mod train;

pub use backend::CudaBackend;
