//! Host side of kernels/upconv.cu: the 2x2 stride-2 transposed convolution (forward, data and weight gradients, packing); its bias gradient uses the channel sums of kernels/tensor.cu.

use super::defines;
use super::{blocks, grid1, i, l, T1};
use crate::nn::cuda::launch::{Act, Arg, Launch};
use crate::nn::NnError;

/// Typed launches of these kernels for every [`Launch`]er (the GPU, or the simulator in tests):
/// argument order and types written down once, next to the grid each kernel assumes.
pub trait UpconvOps: Launch {
    /// Transposed conv of x (n x h x w) into the slice y (n x 2h x 2w).
    #[allow(clippy::too_many_arguments)]
    fn upconv(
        &self,
        x: Act,
        wpk: u64,
        bias: u64,
        y: Act,
        nhw: (usize, usize, usize),
        cin: usize,
        cout: usize,
    ) -> Result<(), NnError> {
        let (n, h, w) = nhw;
        let args = [
            Arg::P(x.p),
            i(x.ld),
            Arg::P(wpk),
            Arg::P(bias),
            Arg::P(y.p),
            i(y.ld),
            i(n),
            i(h),
            i(w),
            i(cin),
            i(cout),
        ];
        self.launch(
            "upconv2_fwd",
            grid1(self.sms(), 4 * n * h * w * cout),
            (T1, 1, 1),
            &args,
        )
    }

    /// Transposed conv backward: dx (dense), dw (IOHW, added), dbias (added).
    #[allow(clippy::too_many_arguments)]
    fn upconv_bwd(
        &self,
        x: Act,
        dy: Act,
        wpk: u64,
        dx: u64,
        dw: u64,
        dbias: u64,
        nhw: (usize, usize, usize),
        cin: usize,
        cout: usize,
    ) -> Result<(), NnError> {
        let (n, h, w) = nhw;
        let args = [
            Arg::P(dy.p),
            i(dy.ld),
            Arg::P(wpk),
            Arg::P(dx),
            i(n),
            i(h),
            i(w),
            i(cin),
            i(cout),
        ];
        self.launch(
            "upconv2_bwd_data",
            grid1(self.sms(), n * h * w * cin),
            (T1, 1, 1),
            &args,
        )?;
        let pixels = n * h * w;
        let wblocks = (cin * cout * 4).div_ceil(T1 as usize);
        let splits = (4 * self.sms())
            .div_ceil(wblocks)
            .clamp(1, pixels.div_ceil(64).max(1));
        let pps = pixels.div_ceil(splits);
        let args = [
            Arg::P(x.p),
            i(x.ld),
            Arg::P(dy.p),
            i(dy.ld),
            Arg::P(dw),
            i(n),
            i(h),
            i(w),
            i(cin),
            i(cout),
            l(pps),
        ];
        self.launch(
            "upconv2_wgrad",
            (wblocks as u32, pixels.div_ceil(pps) as u32, 1),
            (T1, 1, 1),
            &args,
        )?;
        let rows = 4 * pixels;
        let gy = blocks(rows, defines::CSUM_TY * 64, 256);
        self.launch(
            "channel_sums_f16",
            (blocks(cout, defines::CSUM_TX, usize::MAX), gy, 1),
            (defines::CSUM_TX as u32, defines::CSUM_TY as u32, 1),
            &[Arg::P(dy.p), i(dy.ld), l(rows), i(cout), Arg::P(dbias)],
        )
    }

    /// fp32 IOHW transposed-conv weights -> fp16 packed `[ci][tap*cout+co]`.
    fn upconv_pack(&self, w: u64, wpk: u64, cin: usize, cout: usize) -> Result<(), NnError> {
        self.launch(
            "upconv2_pack",
            grid1(self.sms(), 4 * cin * cout),
            (T1, 1, 1),
            &[Arg::P(w), Arg::P(wpk), i(cin), i(cout)],
        )
    }
}

impl<T: Launch + ?Sized> UpconvOps for T {}
