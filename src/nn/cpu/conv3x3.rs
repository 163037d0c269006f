//! 3x3 convolution, stride 1, padding 1, no bias (bias only in the folded inference epilogue):
//! forward, data gradient and weight gradient, all as im2col + GEMM with pixels as GEMM rows.
//!
//! Work is cut into row chunks so the im2col buffer stays in cache and its size bounded; chunks
//! run in parallel with single-threaded GEMMs, or, when there are too few rows (deep levels,
//! small batches), one after another with a multi-threaded GEMM. Summation order depends only on
//! the thread count, so a run is bit-for-bit repeatable for a fixed `threads`.

use super::bf16::PackedB;
use super::isa::per_path;
use super::precision::Precision;
use crate::nn::buffer::Scratch;
use crate::nn::gemm::{gemm_in, MatRef, Par, Rhs};
use crate::nn::Tensor;
use rayon::prelude::*;

/// What to do with each output value after the GEMM, while it is still in cache.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// Raw convolution output (training: BatchNorm follows).
    None,
    /// `max(0, v + bias[c])`: folded BatchNorm + ReLU for inference.
    BiasRelu(&'a [f32]),
}

/// Packs OIHW weights into the GEMM layout `[(tap * cin + ci) x cout]`, `tap = ky * 3 + kx`.
pub fn pack(w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    // Output-channel innermost: the 9 destination rows are written sequentially.
    let mut p = vec![0.0; 9 * cin * cout];
    for ci in 0..cin {
        for co in 0..cout {
            let src = &w_oihw[(co * cin + ci) * 9..(co * cin + ci + 1) * 9];
            for (tap, v) in src.iter().enumerate() {
                p[(tap * cin + ci) * cout + co] = *v;
            }
        }
    }
    p
}

/// OIHW weights of the data-gradient convolution: taps flipped, in/out channels swapped
/// (`cin x cout x 3 x 3`), so the data gradient is an ordinary forward convolution of `dy`.
pub fn flip_for_dgrad(w_oihw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    // Written in destination order (ci, co), so the output is filled sequentially.
    let mut f = vec![0.0; 9 * cin * cout];
    for ci in 0..cin {
        for co in 0..cout {
            for tap in 0..9 {
                f[(ci * cout + co) * 9 + (8 - tap)] = w_oihw[(co * cin + ci) * 9 + tap];
            }
        }
    }
    f
}

/// How a convolution is computed; both give the same result to f32 rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// im2col + one GEMM (K = 9 cin): best when there are few pixels.
    Im2col,
    /// Winograd F(2x2, 3x3): 2.25x fewer multiplies, needs many tiles.
    Winograd,
}

/// Smallest `cin * cout` for which Winograd beats im2col: with few channels the tile
/// transforms cost more than the multiplies they save (measured with examples/conv_profile:
/// 32 -> 32 is faster by im2col, 64 -> 64 and wider by Winograd).
pub const WINOGRAD_MIN_CHANNEL_PRODUCT: usize = 2048;

/// The method for a convolution of `cin` to `cout` channels.
pub fn method_for(cin: usize, cout: usize) -> Method {
    if cin * cout >= WINOGRAD_MIN_CHANNEL_PRODUCT {
        Method::Winograd
    } else {
        Method::Im2col
    }
}

/// The GEMM operands of a convolution's weights: one matrix for im2col, sixteen for Winograd.
#[derive(Clone, Debug)]
enum Packed {
    F32(Vec<f32>),
    Bf16(Vec<PackedB>),
}

/// A 3x3 convolution's weights prepared for one method and precision (the method chosen from
/// the channel counts, or given explicitly by tests that compare methods).
#[derive(Clone, Debug)]
pub struct ConvWeights {
    pub cin: usize,
    pub cout: usize,
    pub method: Method,
    pub precision: Precision,
    data: Packed,
}

impl ConvWeights {
    /// Prepares OIHW weights `cout x cin x 3 x 3` for the method [`method_for`] picks, in f32.
    pub fn new(w_oihw: &[f32], cin: usize, cout: usize) -> Self {
        Self::prepare(w_oihw, cin, cout, method_for(cin, cout), Precision::F32)
    }

    /// Prepares OIHW weights for the method [`method_for`] picks, in `precision`.
    pub fn new_in(w_oihw: &[f32], cin: usize, cout: usize, precision: Precision) -> Self {
        Self::prepare(w_oihw, cin, cout, method_for(cin, cout), precision)
    }

    /// Prepares OIHW weights for a given method, in f32.
    pub fn with_method(w_oihw: &[f32], cin: usize, cout: usize, method: Method) -> Self {
        Self::prepare(w_oihw, cin, cout, method, Precision::F32)
    }

    /// Prepares OIHW weights for a given method and precision: transformed (Winograd) or
    /// packed (im2col) in f32, then, for bf16, rounded into the kernel's panels.
    pub fn prepare(
        w_oihw: &[f32],
        cin: usize,
        cout: usize,
        method: Method,
        precision: Precision,
    ) -> Self {
        let f32_data = match method {
            Method::Im2col => pack(w_oihw, cin, cout),
            Method::Winograd => super::winograd::transform_weights(w_oihw, cin, cout),
        };
        let data = match precision {
            Precision::F32 => Packed::F32(f32_data),
            Precision::Bf16 => Packed::Bf16(match method {
                Method::Im2col => vec![PackedB::pack(MatRef::row_major(&f32_data, 9 * cin, cout))],
                Method::Winograd => f32_data
                    .chunks_exact(cin * cout)
                    .map(|u| PackedB::pack(MatRef::row_major(u, cin, cout)))
                    .collect(),
            }),
        };
        ConvWeights {
            cin,
            cout,
            method,
            precision,
            data,
        }
    }

    /// Prepares the data-gradient convolution of OIHW weights `cout x cin x 3 x 3`
    /// (it maps `cout` channels back to `cin`).
    pub fn for_dgrad(w_oihw: &[f32], cin: usize, cout: usize) -> Self {
        Self::new(&flip_for_dgrad(w_oihw, cin, cout), cout, cin)
    }

    /// Same as [`for_dgrad`](Self::for_dgrad) in `precision`.
    pub fn for_dgrad_in(w_oihw: &[f32], cin: usize, cout: usize, precision: Precision) -> Self {
        Self::new_in(&flip_for_dgrad(w_oihw, cin, cout), cout, cin, precision)
    }

    /// Same as [`for_dgrad`](Self::for_dgrad) with a given method and precision.
    pub fn for_dgrad_with(
        w_oihw: &[f32],
        cin: usize,
        cout: usize,
        method: Method,
        precision: Precision,
    ) -> Self {
        Self::prepare(
            &flip_for_dgrad(w_oihw, cin, cout),
            cout,
            cin,
            method,
            precision,
        )
    }

    /// The GEMM right operands: 1 (im2col, `9 cin x cout`) or 16 (Winograd, `cin x cout`).
    fn operands(&self) -> Vec<Rhs<'_>> {
        match &self.data {
            Packed::F32(d) => {
                let k = if self.method == Method::Im2col {
                    9 * self.cin
                } else {
                    self.cin
                };
                d.chunks_exact(k * self.cout)
                    .map(|m| Rhs::F32(MatRef::row_major(m, k, self.cout)))
                    .collect()
            }
            Packed::Bf16(panels) => panels.iter().map(Rhs::Bf16).collect(),
        }
    }

    /// Convolution of `x`.
    pub fn apply(&self, x: &Tensor, epi: Epilogue<'_>, threads: usize) -> Tensor {
        assert_eq!(
            x.c, self.cin,
            "conv3x3: input has {} channels, weights expect {}",
            x.c, self.cin
        );
        let mut out = Tensor::uninit(x.n, x.h, x.w, self.cout);
        let ops = self.operands();
        match self.method {
            Method::Im2col => forward_rhs(x, ops[0], self.cout, epi, threads, &mut out.data),
            Method::Winograd => {
                super::winograd::forward_into(x, &ops, self.cout, epi, threads, &mut out.data)
            }
        }
        out
    }
}

/// Adds a packed weight gradient `[(tap * cin + ci) x cout]` into an OIHW gradient.
pub fn unpack_add(packed: &[f32], cin: usize, cout: usize, grad_oihw: &mut [f32]) {
    for co in 0..cout {
        for ci in 0..cin {
            for tap in 0..9 {
                grad_oihw[(co * cin + ci) * 9 + tap] += packed[(tap * cin + ci) * cout + co];
            }
        }
    }
}

/// Rows per chunk: big enough that GEMM packing is amortised, small enough for cache.
fn chunk_rows(pixels: usize, k: usize, threads: usize) -> usize {
    let by_cache = (1 << 19) / k.max(1);
    let per_thread = pixels.div_ceil(threads.max(1) * 2);
    by_cache.min(per_thread).max(256).min(pixels.max(1))
}

/// Writes the im2col rows of pixels `p0..p0 + rows` into `buf` (`rows x 9c`).
fn im2col(x: &Tensor, p0: usize, rows: usize, buf: &mut [f32]) {
    let (h, w, c) = (x.h, x.w, x.c);
    let k = 9 * c;
    for r in 0..rows {
        let p = p0 + r;
        let (img, rem) = (p / (h * w), p % (h * w));
        let (y, xx) = (rem / w, rem % w);
        let row = &mut buf[r * k..(r + 1) * k];
        for ky in 0..3 {
            let yy = y as isize + ky as isize - 1;
            for kx in 0..3 {
                let xs = xx as isize + kx as isize - 1;
                let dst = &mut row[(ky * 3 + kx) * c..(ky * 3 + kx + 1) * c];
                if yy < 0 || yy >= h as isize || xs < 0 || xs >= w as isize {
                    dst.fill(0.0);
                } else {
                    let src = ((img * h + yy as usize) * w + xs as usize) * c;
                    dst.copy_from_slice(&x.data[src..src + c]);
                }
            }
        }
    }
}

per_path! {
fn apply_epilogue(out: &mut [f32], cout: usize, epi: Epilogue<'_>) {
    if let Epilogue::BiasRelu(bias) = epi {
        for row in out.chunks_exact_mut(cout) {
            super::lanes::update(row, bias, |v, b| (v + b).max(0.0));
        }
    }
}
}

/// Convolution of `x` (NHWC) with packed weights (see [`pack`]) into `cout` channels.
pub fn forward(
    x: &Tensor,
    packed: &[f32],
    cout: usize,
    epi: Epilogue<'_>,
    threads: usize,
) -> Tensor {
    let mut out = Tensor::uninit(x.n, x.h, x.w, cout);
    forward_into(x, packed, cout, epi, threads, &mut out.data);
    out
}

/// [`forward`] into a caller-provided `pixels x cout` buffer (overwritten).
pub fn forward_into(
    x: &Tensor,
    packed: &[f32],
    cout: usize,
    epi: Epilogue<'_>,
    threads: usize,
    out: &mut [f32],
) {
    let k = 9 * x.c;
    assert_eq!(
        packed.len(),
        k * cout,
        "conv3x3: packed weights do not match {} -> {cout}",
        x.c
    );
    forward_rhs(
        x,
        Rhs::F32(MatRef::row_major(packed, k, cout)),
        cout,
        epi,
        threads,
        out,
    );
}

/// im2col convolution with the weights as a GEMM operand of either precision.
fn forward_rhs(
    x: &Tensor,
    wmat: Rhs<'_>,
    cout: usize,
    epi: Epilogue<'_>,
    threads: usize,
    out: &mut [f32],
) {
    let k = 9 * x.c;
    let pixels = x.pixels();
    assert_eq!(out.len(), pixels * cout);
    let rows = chunk_rows(pixels, k, threads);
    let run = |ci: usize, oc: &mut [f32], buf: &mut Scratch, par: Par| {
        let p0 = ci * rows;
        let n = oc.len() / cout;
        let buf = buf.resize(n * k);
        im2col(x, p0, n, buf);
        wmat.gemm(MatRef::row_major(buf, n, k), oc, cout, false, par);
        apply_epilogue(oc, cout, epi);
    };
    if pixels.div_ceil(rows) >= 2 && threads > 1 {
        out.par_chunks_mut(rows * cout)
            .enumerate()
            .for_each_init(Scratch::new, |buf, (ci, oc)| run(ci, oc, buf, Par::Serial));
    } else {
        let mut buf = Scratch::new();
        for (ci, oc) in out.chunks_mut(rows * cout).enumerate() {
            run(ci, oc, &mut buf, Par::Threads(threads));
        }
    }
}

/// Fewest 2x2 tiles for a Winograd weight gradient: its 16 per-position sums write a
/// `16 x cin x cout` accumulator per chunk, which only pays off over many tiles (measured with
/// examples/conv_profile: 12x12 x 8 images at 512 channels is faster by im2col).
pub const WINOGRAD_WGRAD_MIN_TILES: usize = 512;

/// Weight gradient in packed layout `[(tap * cin + ci) x cout]`, by Winograd where the channel
/// counts and the number of tiles make it faster, else by im2col; f32.
pub fn backward_weights(x: &Tensor, dy: &Tensor, threads: usize) -> Vec<f32> {
    backward_weights_in(Precision::F32, x, dy, threads)
}

/// [`backward_weights`] with the GEMMs in `precision`.
pub fn backward_weights_in(
    precision: Precision,
    x: &Tensor,
    dy: &Tensor,
    threads: usize,
) -> Vec<f32> {
    let wino = method_for(x.c, dy.c) == Method::Winograd
        && super::winograd::tile_count(x.n, x.h, x.w) >= WINOGRAD_WGRAD_MIN_TILES;
    backward_weights_with(
        if wino {
            Method::Winograd
        } else {
            Method::Im2col
        },
        precision,
        x,
        dy,
        threads,
    )
}

/// Weight gradient by a given method and precision (tests compare methods).
pub fn backward_weights_with(
    m: Method,
    precision: Precision,
    x: &Tensor,
    dy: &Tensor,
    threads: usize,
) -> Vec<f32> {
    match m {
        Method::Im2col => backward_weights_im2col(precision, x, dy, threads),
        Method::Winograd => super::winograd::backward_weights(precision, x, dy, threads),
    }
}

/// Weight gradient as `im2col(x)^T · dy`.
fn backward_weights_im2col(
    precision: Precision,
    x: &Tensor,
    dy: &Tensor,
    threads: usize,
) -> Vec<f32> {
    let (k, cout, pixels) = (9 * x.c, dy.c, x.pixels());
    assert_eq!(dy.pixels(), pixels);
    let rows = chunk_rows(pixels, k, threads);
    let nchunks = pixels.div_ceil(rows);
    let accumulate = |first: usize, last: usize, par: Par| {
        let mut acc = vec![0.0f32; k * cout];
        let mut scratch = Scratch::new();
        for ci in first..last {
            let p0 = ci * rows;
            let n = rows.min(pixels - p0);
            let buf = scratch.resize(n * k);
            im2col(x, p0, n, buf);
            let a = MatRef::row_major(buf, n, k).t();
            let b = MatRef::row_major(&dy.data[p0 * cout..(p0 + n) * cout], n, cout);
            gemm_in(precision, a, b, &mut acc, cout, ci > first, par);
        }
        acc
    };
    super::parallel::sum_over_chunks(nchunks, threads, accumulate)
}

/// Data gradient: the convolution of `dy` with [`ConvWeights::for_dgrad`] weights.
pub fn backward_data(dy: &Tensor, dgrad: &ConvWeights, threads: usize) -> Tensor {
    dgrad.apply(dy, Epilogue::None, threads)
}
