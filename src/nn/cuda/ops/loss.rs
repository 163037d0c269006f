//! Host side of kernels/loss.cu: the fused cross-entropy + soft-Dice loss over labelled classes.

use super::{defines, grid1, i, l, T1};
use crate::nn::cuda::launch::{Arg, Launch};
use crate::nn::NnError;

/// Typed launches of these kernels for every [`Launch`]er (the GPU, or the simulator in tests):
/// argument order and types written down once, next to the grid each kernel assumes.
pub trait LossOps: Launch {
    /// Fused loss: acc (zeroed, 3k+1 f64), out (3+2k f64), dlogits (fp32, times `scale`).
    #[allow(clippy::too_many_arguments)]
    fn loss(
        &self,
        logits: u64,
        labels: u64,
        labelled: u64,
        acc: u64,
        out: u64,
        dl: u64,
        n: usize,
        hw: usize,
        k: usize,
        scale: f32,
    ) -> Result<(), NnError> {
        if k > defines::LOSS_MAXK {
            // The kernels keep per-class sums in fixed arrays of LOSS_MAXK.
            return Err(NnError::Config(format!(
                "{k} classes: the CUDA loss supports at most {}",
                defines::LOSS_MAXK
            )));
        }
        let g = grid1(self.sms(), n * hw);
        self.launch(
            "loss_fwd",
            g,
            (T1, 1, 1),
            &[
                Arg::P(logits),
                Arg::P(labels),
                Arg::P(labelled),
                i(n),
                l(hw),
                i(k),
                Arg::P(acc),
            ],
        )?;
        self.launch(
            "loss_finalize",
            (1, 1, 1),
            (32, 1, 1),
            &[
                Arg::P(acc),
                Arg::P(labelled),
                i(n),
                l(hw),
                i(k),
                Arg::P(out),
            ],
        )?;
        let args = [
            Arg::P(logits),
            Arg::P(labels),
            Arg::P(labelled),
            Arg::P(acc),
            Arg::P(out),
            i(n),
            l(hw),
            i(k),
            Arg::F(scale),
            Arg::P(dl),
        ];
        self.launch("loss_bwd", g, (T1, 1, 1), &args)
    }
}

impl<T: Launch + ?Sized> LossOps for T {}
