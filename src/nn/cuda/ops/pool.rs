//! Host side of kernels/pool.cu: 2x2 max-pooling with indices, and its backward.

use super::{grid1, i, T1};
use crate::nn::cuda::launch::{Act, Arg, Launch};
use crate::nn::NnError;

/// Typed launches of these kernels for every [`Launch`]er (the GPU, or the simulator in tests):
/// argument order and types written down once, next to the grid each kernel assumes.
pub trait PoolOps: Launch {
    /// 2x2 max-pool with indices; y and idx dense.
    fn maxpool(
        &self,
        x: Act,
        y: u64,
        idx: u64,
        nhw: (usize, usize, usize),
        c: usize,
    ) -> Result<(), NnError> {
        let (n, h, w) = nhw;
        let args = [
            Arg::P(x.p),
            i(x.ld),
            Arg::P(y),
            Arg::P(idx),
            i(n),
            i(h),
            i(w),
            i(c),
        ];
        self.launch(
            "maxpool2_fwd",
            grid1(self.sms(), n * (h / 2) * (w / 2) * c),
            (T1, 1, 1),
            &args,
        )
    }

    /// Max-pool backward into dense dx, plus the skip gradient `add` when given.
    fn maxpool_bwd(
        &self,
        dout: u64,
        idx: u64,
        add: Option<Act>,
        dx: u64,
        nhw: (usize, usize, usize),
        c: usize,
    ) -> Result<(), NnError> {
        let (n, h, w) = nhw;
        let a = add.unwrap_or(Act { p: 0, ld: c });
        let args = [
            Arg::P(dout),
            Arg::P(idx),
            Arg::P(a.p),
            i(a.ld),
            Arg::P(dx),
            i(n),
            i(h),
            i(w),
            i(c),
        ];
        self.launch(
            "maxpool2_bwd",
            grid1(self.sms(), n * h * w * c),
            (T1, 1, 1),
            &args,
        )
    }
}

impl<T: Launch + ?Sized> PoolOps for T {}
