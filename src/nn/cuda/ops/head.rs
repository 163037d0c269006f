//! Host side of kernels/head.cu: the 1x1 classification head and its backward.

use super::{blocks, grid1, i, l, T1};
use crate::nn::cuda::launch::{Act, Arg, Launch};
use crate::nn::NnError;

/// Typed launches of these kernels for every [`Launch`]er (the GPU, or the simulator in tests):
/// argument order and types written down once, next to the grid each kernel assumes.
pub trait HeadOps: Launch {
    /// Head: fp32 logits.
    #[allow(clippy::too_many_arguments)]
    fn head(
        &self,
        x: Act,
        w: u64,
        b: u64,
        logits: u64,
        rows: usize,
        c: usize,
        k: usize,
    ) -> Result<(), NnError> {
        let args = [
            Arg::P(x.p),
            i(x.ld),
            Arg::P(w),
            Arg::P(b),
            Arg::P(logits),
            l(rows),
            i(c),
            i(k),
        ];
        self.launch("head_fwd", grid1(self.sms(), rows * k), (T1, 1, 1), &args)
    }

    /// Head backward: dx (fp16, dense), dw and db (added).
    #[allow(clippy::too_many_arguments)]
    fn head_bwd(
        &self,
        x: Act,
        dl: u64,
        w: u64,
        dx: u64,
        dw: u64,
        db: u64,
        rows: usize,
        c: usize,
        k: usize,
    ) -> Result<(), NnError> {
        self.launch(
            "head_bwd_data",
            grid1(self.sms(), rows * c),
            (T1, 1, 1),
            &[Arg::P(dl), Arg::P(w), Arg::P(dx), l(rows), i(c), i(k)],
        )?;
        let splits = rows.div_ceil(2048).clamp(1, 8 * self.sms());
        let pps = rows.div_ceil(splits);
        let args = [
            Arg::P(x.p),
            i(x.ld),
            Arg::P(dl),
            Arg::P(dw),
            Arg::P(db),
            l(rows),
            i(c),
            i(k),
            l(pps),
        ];
        self.launch(
            "head_wgrad",
            (
                blocks(k * c + k, T1 as usize, usize::MAX),
                rows.div_ceil(pps) as u32,
                1,
            ),
            (T1, 1, 1),
            &args,
        )
    }
}

impl<T: Launch + ?Sized> HeadOps for T {}
