//! Host side of kernels/batchnorm.cu: BatchNorm statistics, normalisation with ReLU, and the fused backward.

use super::defines;
use super::{blocks, grid1, i, l, T1};
use crate::nn::cuda::launch::{Act, Arg, Launch};
use crate::nn::NnError;

/// Typed launches of these kernels for every [`Launch`]er (the GPU, or the simulator in tests):
/// argument order and types written down once, next to the grid each kernel assumes.
pub trait BatchNormOps: Launch {
    /// BatchNorm statistics -> mean, invstd, scale, shift (and running statistics if given).
    #[allow(clippy::too_many_arguments)]
    fn bn_finalize(
        &self,
        stats: u64,
        count: usize,
        gamma: u64,
        beta: u64,
        running: Option<(u64, u64)>,
        out: [u64; 4],
        c: usize,
    ) -> Result<(), NnError> {
        let (rm, rv) = running.unwrap_or((0, 0));
        let args = [
            Arg::P(stats),
            l(count),
            Arg::P(gamma),
            Arg::P(beta),
            Arg::P(rm),
            Arg::P(rv),
            Arg::F(0.1),
            Arg::F(1e-5),
            Arg::P(out[0]),
            Arg::P(out[1]),
            Arg::P(out[2]),
            Arg::P(out[3]),
            i(c),
        ];
        self.launch(
            "bn_finalize",
            (blocks(c, 64, 1024), 1, 1),
            (64, 1, 1),
            &args,
        )
    }

    /// y = relu(z * scale + shift).
    fn bn_apply_relu(
        &self,
        z: Act,
        y: Act,
        scale: u64,
        shift: u64,
        rows: usize,
        c: usize,
    ) -> Result<(), NnError> {
        let args = [
            Arg::P(z.p),
            i(z.ld),
            Arg::P(y.p),
            i(y.ld),
            Arg::P(scale),
            Arg::P(shift),
            l(rows),
            i(c),
        ];
        self.launch(
            "bn_apply_relu",
            grid1(self.sms(), rows * c),
            (T1, 1, 1),
            &args,
        )
    }

    /// BatchNorm + ReLU backward: sums, input gradient, parameter gradients.
    #[allow(clippy::too_many_arguments)]
    fn bn_backward(
        &self,
        dy: Act,
        z: Act,
        y: Act,
        gamma: u64,
        mean: u64,
        invstd: u64,
        sums: u64,
        dx: Act,
        dgamma: u64,
        dbeta: u64,
        rows: usize,
        c: usize,
    ) -> Result<(), NnError> {
        let gy = blocks(
            rows,
            defines::BNR_TY * 64,
            (4 * self.sms()).div_ceil(c.div_ceil(32)).max(1),
        );
        let red = [
            Arg::P(dy.p),
            i(dy.ld),
            Arg::P(z.p),
            i(z.ld),
            Arg::P(y.p),
            i(y.ld),
            Arg::P(mean),
            Arg::P(invstd),
            Arg::P(sums),
            l(rows),
            i(c),
        ];
        self.launch(
            "bn_bwd_reduce",
            (blocks(c, defines::BNR_TX, usize::MAX), gy, 1),
            (defines::BNR_TX as u32, defines::BNR_TY as u32, 1),
            &red,
        )?;
        let args = [
            Arg::P(dy.p),
            i(dy.ld),
            Arg::P(z.p),
            i(z.ld),
            Arg::P(y.p),
            i(y.ld),
            Arg::P(gamma),
            Arg::P(mean),
            Arg::P(invstd),
            Arg::P(sums),
            Arg::P(dx.p),
            i(dx.ld),
            l(rows),
            i(c),
        ];
        self.launch("bn_bwd_dx", grid1(self.sms(), rows * c), (T1, 1, 1), &args)?;
        self.launch(
            "bn_param_grads",
            (blocks(c, 64, 1024), 1, 1),
            (64, 1, 1),
            &[Arg::P(sums), Arg::P(dgamma), Arg::P(dbeta), i(c)],
        )
    }
}

impl<T: Launch + ?Sized> BatchNormOps for T {}
