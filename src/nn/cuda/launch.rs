//! Launching a kernel by name ([`Launch`]), on the GPU ([`Launcher`]) or the simulator; the
//! typed wrapper of every kernel lives in [`super::ops`], one module per kernel file.
//!
//! Buffers are passed as raw device addresses (`u64`) so a channel slice of a concatenation
//! buffer is simply `base + offset * element size`, and an absent optional pointer is `0`.
//! The backend runs everything on one stream with cudarc's event tracking switched off, so
//! stream order alone orders the kernels; the buffers are owned by the backend and outlive
//! every launch.

use super::modules::Kernels;
use crate::nn::NnError;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// One kernel argument.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A device address (or 0 for "none").
    P(u64),
    /// `int`.
    I(i32),
    /// `long long`.
    L(i64),
    /// `float`.
    F(f32),
}

/// Device address of a buffer, `off` elements in.
pub fn addr<T>(s: &CudaSlice<T>, stream: &CudaStream, off: usize) -> u64 {
    let (p, _sync) = s.device_ptr(stream);
    p + (off * std::mem::size_of::<T>()) as u64
}

/// Launches kernels by name on one stream.
pub struct Launcher {
    pub stream: Arc<CudaStream>,
    pub kernels: Kernels,
    /// Streaming multiprocessors, to size split-K grids.
    pub sms: usize,
}

/// Launching one kernel by name: the one thing that differs between the GPU ([`Launcher`]) and
/// the CPU simulator (tests/sim_support), so the launch geometry in [`super::ops`] and the whole
/// training composition (`train`) run unchanged on both.
pub trait Launch {
    /// Launches `name` with `args` on a grid of `grid` blocks of `block` threads, in stream order.
    fn launch(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[Arg],
    ) -> Result<(), NnError>;
    /// Streaming multiprocessors (sizes split-K and grid-stride grids).
    fn sms(&self) -> usize;
}

/// An activation tensor on the device: address of channel 0 of pixel 0, and row stride.
#[derive(Clone, Copy, Debug)]
pub struct Act {
    pub p: u64,
    pub ld: usize,
}

impl Launch for Launcher {
    fn launch(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[Arg],
    ) -> Result<(), NnError> {
        let f = self.kernels.get(name).map_err(NnError::Device)?;
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::P(v) => b.arg(v),
                Arg::I(v) => b.arg(v),
                Arg::L(v) => b.arg(v),
                Arg::F(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: block,
            shared_mem_bytes: 0,
        };
        // SAFETY: argument lists match the kernel signatures in kernels/*.cu (one wrapper per
        // kernel below); all addresses point into live buffers owned by the backend.
        unsafe { b.launch(cfg) }.map_err(|e| NnError::Device(format!("launching {name}: {e}")))?;
        Ok(())
    }

    fn sms(&self) -> usize {
        self.sms.max(1)
    }
}
