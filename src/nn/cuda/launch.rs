//! Kernel launches: one typed wrapper per kernel, so argument order and types (which cudarc
//! cannot check against the kernel signature, docs/CRATES.md 1.3) are written down once,
//! next to the launch geometry the kernel assumes (kernels/*.cu).
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

// Tile sizes of conv3x3.cu (CONV_BM, CONV_BN, CONV_THREADS).
const CONV_BM: usize = 64;
const CONV_BN: usize = 64;
const CONV_THREADS: u32 = 128;
const T1: u32 = 256;

fn blocks(n: usize, per: usize, cap: usize) -> u32 {
    n.div_ceil(per).clamp(1, cap) as u32
}

fn i(v: usize) -> Arg {
    Arg::I(v as i32)
}
fn l(v: usize) -> Arg {
    Arg::L(v as i64)
}

/// Launches kernels by name on one stream.
pub struct Launcher {
    pub stream: Arc<CudaStream>,
    pub kernels: Kernels,
    /// Streaming multiprocessors, to size split-K grids.
    pub sms: usize,
}

/// Launching one kernel by name: the one thing that differs between the GPU ([`Launcher`]) and
/// the CPU simulator (tests/train_sim.rs), so the launch geometry in [`Ops`] and the whole
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

/// One typed wrapper per kernel, for every [`Launch`]er: argument order and types are written
/// down once, next to the grid each kernel assumes.
pub trait Ops: Launch {
    fn grid1(&self, n: usize) -> (u32, u32, u32) {
        (blocks(n, T1 as usize, 32 * self.sms()), 1, 1)
    }

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
            blocks(n * h * wd, CONV_BM, usize::MAX),
            blocks(cout, CONV_BN, usize::MAX),
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
        self.launch("conv3x3_fwd", grid, (CONV_THREADS, 1, 1), &args)
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
        let tiles = (9 * cin).div_ceil(CONV_BM) * cout.div_ceil(CONV_BN);
        // Enough blocks for ~4 per SM, each reducing at least 256 pixels.
        let splits = (4 * self.sms())
            .div_ceil(tiles)
            .clamp(1, pixels.div_ceil(256).max(1));
        let pps = pixels.div_ceil(splits);
        let grid = (
            blocks(9 * cin, CONV_BM, usize::MAX),
            blocks(cout, CONV_BN, usize::MAX),
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
        self.launch("conv3x3_wgrad", grid, (CONV_THREADS, 1, 1), &args)
    }

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
        self.launch("bn_apply_relu", self.grid1(rows * c), (T1, 1, 1), &args)
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
            8 * 64,
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
            (blocks(c, 32, usize::MAX), gy, 1),
            (32, 8, 1),
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
        self.launch("bn_bwd_dx", self.grid1(rows * c), (T1, 1, 1), &args)?;
        self.launch(
            "bn_param_grads",
            (blocks(c, 64, 1024), 1, 1),
            (64, 1, 1),
            &[Arg::P(sums), Arg::P(dgamma), Arg::P(dbeta), i(c)],
        )
    }

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
            self.grid1(n * (h / 2) * (w / 2) * c),
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
        self.launch("maxpool2_bwd", self.grid1(n * h * w * c), (T1, 1, 1), &args)
    }

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
            self.grid1(4 * n * h * w * cout),
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
            self.grid1(n * h * w * cin),
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
        let gy = blocks(rows, 8 * 64, 256);
        self.launch(
            "channel_sums_f16",
            (blocks(cout, 32, usize::MAX), gy, 1),
            (32, 8, 1),
            &[Arg::P(dy.p), i(dy.ld), l(rows), i(cout), Arg::P(dbias)],
        )
    }

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
        self.launch("head_fwd", self.grid1(rows * k), (T1, 1, 1), &args)
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
            self.grid1(rows * c),
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
        let g = self.grid1(n * hw);
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

    /// Sets `*flag = 1` when `g[0..n)` holds inf or NaN.
    fn overflow_check(&self, g: u64, n: usize, flag: u64) -> Result<(), NnError> {
        self.launch(
            "grad_overflow",
            self.grid1(n),
            (T1, 1, 1),
            &[Arg::P(g), l(n), Arg::P(flag)],
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
            self.grid1(9 * cin * cout),
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

    /// fp32 IOHW transposed-conv weights -> fp16 packed `[ci][tap*cout+co]`.
    fn upconv_pack(&self, w: u64, wpk: u64, cin: usize, cout: usize) -> Result<(), NnError> {
        self.launch(
            "upconv2_pack",
            self.grid1(4 * cin * cout),
            (T1, 1, 1),
            &[Arg::P(w), Arg::P(wpk), i(cin), i(cout)],
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
        self.launch("adamw_step", self.grid1(n), (T1, 1, 1), &args)
    }
}

impl<T: Launch + ?Sized> Ops for T {}

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
