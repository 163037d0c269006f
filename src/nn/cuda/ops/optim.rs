//! Host side of kernels/adamw.cu and the gradient overflow check of kernels/tensor.cu: one AdamW update, skipped on overflow.

use super::{grid1, l, T1};
use crate::nn::cuda::launch::{Arg, Launch};
use crate::nn::NnError;

/// Typed launches of these kernels for every [`Launch`]er (the GPU, or the simulator in tests):
/// argument order and types written down once, next to the grid each kernel assumes.
pub trait OptimOps: Launch {
    /// Sets `*flag = 1` when `g[0..n)` holds inf or NaN.
    fn overflow_check(&self, g: u64, n: usize, flag: u64) -> Result<(), NnError> {
        self.launch(
            "grad_overflow",
            grid1(self.sms(), n),
            (T1, 1, 1),
            &[Arg::P(g), l(n), Arg::P(flag)],
        )
    }

    /// One AdamW update of `n` values (skipped on the device when `*overflow` is set).
    #[allow(clippy::too_many_arguments)]
    fn adamw(
        &self,
        p: u64,
        g: u64,
        m: u64,
        v: u64,
        n: usize,
        h: AdamWStep,
        overflow: u64,
    ) -> Result<(), NnError> {
        let args = [
            Arg::P(p),
            Arg::P(g),
            Arg::P(m),
            Arg::P(v),
            Arg::P(0),
            l(n),
            Arg::F(h.beta1),
            Arg::F(h.beta2),
            Arg::F(h.eps),
            Arg::F(h.decay),
            Arg::F(h.step_size),
            Arg::F(h.inv_sqrt_bc2),
            Arg::F(h.inv_scale),
            Arg::P(overflow),
        ];
        self.launch("adamw_step", grid1(self.sms(), n), (T1, 1, 1), &args)
    }
}

impl<T: Launch + ?Sized> OptimOps for T {}

/// The scalars of one `adamw_step` launch (see kernels/adamw.cu).
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `1 - lr * weight_decay` for decayed tensors, 1 otherwise.
    pub decay: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `1 / sqrt(1 - beta2^t)`.
    pub inv_sqrt_bc2: f32,
    /// `1 / loss scale`.
    pub inv_scale: f32,
}
