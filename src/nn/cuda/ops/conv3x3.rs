//! Host side of kernels/conv3x3.cu: the fp16 implicit-GEMM 3x3 convolution (forward, data gradient with dgrad-packed weights, weight gradient) and its weight packing.

use super::defines;
use super::{blocks, grid1, i, l, T1};
use crate::nn::cuda::launch::{Act, Arg, Launch};
use crate::nn::NnError;

/// Typed launches of these kernels for every [`Launch`]er (the GPU, or the simulator in tests):
/// argument order and types written down once, next to the grid each kernel assumes.
pub trait Conv3x3Ops: Launch {
    /// 3x3 convolution (or its data gradient with dgrad-packed weights); see conv3x3_fwd.
    #[allow(clippy::too_many_arguments)]
    fn conv3x3(
        &self,
        x: Act,
        w: u64,
        y: Act,
        bias: u64,
        relu: bool,
        stats: u64,
        nhw: (usize, usize, usize),
        cin: usize,
        cout: usize,
    ) -> Result<(), NnError> {
        let (n, h, wd) = nhw;
        let grid = (
            blocks(n * h * wd, defines::CONV_BM, usize::MAX),
            blocks(cout, defines::CONV_BN, usize::MAX),
            1,
        );
        let args = [
            Arg::P(x.p),
            i(x.ld),
            Arg::P(w),
            Arg::P(y.p),
            i(y.ld),
            Arg::P(bias),
            Arg::I(relu as i32),
            Arg::P(stats),
            i(n),
            i(h),
            i(wd),
            i(cin),
            i(cout),
        ];
        self.launch(
            "conv3x3_fwd",
            grid,
            (defines::CONV_THREADS as u32, 1, 1),
            &args,
        )
    }

    /// Weight gradient into an OIHW fp32 buffer (added to it).
    fn conv3x3_wgrad(
        &self,
        x: Act,
        dy: Act,
        dw: u64,
        nhw: (usize, usize, usize),
        cin: usize,
        cout: usize,
    ) -> Result<(), NnError> {
        let (n, h, wd) = nhw;
        let pixels = n * h * wd;
        let tiles = (9 * cin).div_ceil(defines::CONV_BM) * cout.div_ceil(defines::CONV_BN);
        // Enough blocks for ~4 per SM, each reducing at least 256 pixels.
        let splits = (4 * self.sms())
            .div_ceil(tiles)
            .clamp(1, pixels.div_ceil(256).max(1));
        let pps = pixels.div_ceil(splits);
        let grid = (
            blocks(9 * cin, defines::CONV_BM, usize::MAX),
            blocks(cout, defines::CONV_BN, usize::MAX),
            pixels.div_ceil(pps) as u32,
        );
        let args = [
            Arg::P(x.p),
            i(x.ld),
            Arg::P(dy.p),
            i(dy.ld),
            Arg::P(dw),
            i(n),
            i(h),
            i(wd),
            i(cin),
            i(cout),
            l(pps),
        ];
        self.launch(
            "conv3x3_wgrad",
            grid,
            (defines::CONV_THREADS as u32, 1, 1),
            &args,
        )
    }

    /// fp32 OIHW weights -> fp16 forward GEMM layout and (when `dgrad` is not 0) the fp16
    /// data-gradient layout.
    fn conv3x3_pack(
        &self,
        w: u64,
        fwd: u64,
        dgrad: u64,
        cin: usize,
        cout: usize,
    ) -> Result<(), NnError> {
        self.launch(
            "conv3x3_pack",
            grid1(self.sms(), 9 * cin * cout),
            (T1, 1, 1),
            &[
                Arg::P(w),
                Arg::P(0),
                Arg::P(fwd),
                Arg::P(dgrad),
                i(cin),
                i(cout),
            ],
        )
    }
}

impl<T: Launch + ?Sized> Conv3x3Ops for T {}
