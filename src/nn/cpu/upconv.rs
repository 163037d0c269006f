//! 2x2 stride-2 transposed convolution with bias, writing straight into the decoder's
//! concatenation buffer `[skip, up]` (skip channels first), and the channel copy/split that
//! goes with the concatenation.

use super::parallel::{add_rows, column_sums};
use crate::nn::gemm::{sgemm, MatRef, Par};
use crate::nn::Tensor;
use rayon::prelude::*;

/// Packs IOHW weights `cin x cout x 2 x 2` into `[cin x (tap * cout + co)]`, `tap = a * 2 + b`.
pub fn pack(w_iohw: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut p = vec![0.0; cin * 4 * cout];
    for ci in 0..cin {
        for co in 0..cout {
            for tap in 0..4 {
                p[ci * 4 * cout + tap * cout + co] = w_iohw[(ci * cout + co) * 4 + tap];
            }
        }
    }
    p
}

/// Upsamples `x` (`cin` channels) into channels `offset..offset + cout` of `dst`, which is
/// twice as large in each direction.
pub fn forward_into(
    x: &Tensor,
    packed: &[f32],
    bias: &[f32],
    dst: &mut Tensor,
    offset: usize,
    threads: usize,
) {
    let cout = bias.len();
    let p = x.pixels();
    let mut tmp = crate::nn::buffer::Scratch::new();
    let tmp = tmp.resize(p * 4 * cout);
    sgemm(
        MatRef::row_major(&x.data, p, x.c),
        MatRef::row_major(packed, x.c, 4 * cout),
        tmp,
        4 * cout,
        false,
        Par::Threads(threads),
    );
    let (w, cd) = (x.w, dst.c);
    // One input row (y) of an image fills output rows 2y and 2y + 1: disjoint, so rows of
    // the output are scattered in parallel.
    let tmp: &[f32] = tmp;
    dst.data
        .par_chunks_mut(2 * 2 * w * cd)
        .enumerate()
        .for_each(|(ny, out)| {
            for xx in 0..w {
                let row = &tmp[(ny * w + xx) * 4 * cout..(ny * w + xx + 1) * 4 * cout];
                for tap in 0..4 {
                    let (a, b) = (tap / 2, tap % 2);
                    let d = (a * 2 * w + 2 * xx + b) * cd + offset;
                    for co in 0..cout {
                        out[d + co] = row[tap * cout + co] + bias[co];
                    }
                }
            }
        });
}

/// Backward: from the gradient of the concatenation buffer `dcat` (channels `offset..`),
/// returns the input gradient and adds into the packed-layout weight gradient and `dbias`.
pub fn backward(
    x: &Tensor,
    packed: &[f32],
    dcat: &Tensor,
    offset: usize,
    dpacked: &mut [f32],
    dbias: &mut [f32],
    threads: usize,
) -> Tensor {
    let cout = dbias.len();
    let (p, h, w, cd) = (x.pixels(), x.h, x.w, dcat.c);
    let mut gbuf = crate::nn::buffer::Scratch::new();
    let g = gbuf.resize(p * 4 * cout);
    // Gather the four output pixels of each input pixel into one GEMM row; an input row of
    // `w` pixels reads two output rows, disjoint from every other, so rows run in parallel.
    g.par_chunks_mut(w * 4 * cout)
        .enumerate()
        .for_each(|(ny, rows)| {
            let (n, y) = (ny / h, ny % h);
            for (xx, row) in rows.chunks_exact_mut(4 * cout).enumerate() {
                for tap in 0..4 {
                    let (a, b) = (tap / 2, tap % 2);
                    let d = ((n * 2 * h + 2 * y + a) * 2 * w + 2 * xx + b) * cd + offset;
                    row[tap * cout..(tap + 1) * cout].copy_from_slice(&dcat.data[d..d + cout]);
                }
            }
        });
    let g: &[f32] = g;
    let sums = column_sums(p, 4 * cout, threads, |lo, hi, acc| {
        add_rows(&g[lo * 4 * cout..hi * 4 * cout], acc)
    });
    for (co, a) in dbias.iter_mut().enumerate() {
        *a += (0..4).map(|tap| sums[tap * cout + co]).sum::<f64>() as f32;
    }
    let gm = MatRef::row_major(g, p, 4 * cout);
    sgemm(
        MatRef::row_major(&x.data, p, x.c).t(),
        gm,
        dpacked,
        4 * cout,
        true,
        Par::Threads(threads),
    );
    let mut dx = Tensor::uninit(x.n, h, w, x.c);
    sgemm(
        gm,
        MatRef::row_major(packed, x.c, 4 * cout).t(),
        &mut dx.data,
        x.c,
        false,
        Par::Threads(threads),
    );
    dx
}

/// Adds a packed weight gradient back into IOHW layout.
pub fn unpack_add(packed: &[f32], cin: usize, cout: usize, grad_iohw: &mut [f32]) {
    for ci in 0..cin {
        for co in 0..cout {
            for tap in 0..4 {
                grad_iohw[(ci * cout + co) * 4 + tap] += packed[ci * 4 * cout + tap * cout + co];
            }
        }
    }
}

/// The decoder's input `[skip, up(below)]` in one buffer: the skip copied into the first
/// channels, the transposed convolution written straight into the rest.
pub fn concat_upsampled(
    skip: &Tensor,
    below: &Tensor,
    packed: &[f32],
    bias: &[f32],
    threads: usize,
) -> Tensor {
    let mut cat = Tensor::uninit(skip.n, skip.h, skip.w, skip.c + bias.len());
    copy_channels(skip, &mut cat, 0);
    forward_into(below, packed, bias, &mut cat, skip.c, threads);
    cat
}

/// Copies all channels of `src` into channels `offset..offset + src.c` of `dst` (same pixels).
pub fn copy_channels(src: &Tensor, dst: &mut Tensor, offset: usize) {
    let (c, cd) = (src.c, dst.c);
    if c == 0 {
        return;
    }
    dst.data
        .par_chunks_mut(cd * PIXELS_PER_TASK)
        .zip(src.data.par_chunks(c * PIXELS_PER_TASK))
        .for_each(|(d, s)| {
            for (s, d) in s.chunks_exact(c).zip(d.chunks_exact_mut(cd)) {
                d[offset..offset + c].copy_from_slice(s);
            }
        });
}

/// Channels `offset..offset + c` of `src` as a tensor of their own (the skip part of a concat
/// gradient).
pub fn extract_channels(src: &Tensor, offset: usize, c: usize) -> Tensor {
    let mut out = Tensor::uninit(src.n, src.h, src.w, c);
    let cs = src.c;
    if c == 0 {
        return out;
    }
    out.data
        .par_chunks_mut(c * PIXELS_PER_TASK)
        .zip(src.data.par_chunks(cs * PIXELS_PER_TASK))
        .for_each(|(d, s)| {
            for (d, s) in d.chunks_exact_mut(c).zip(s.chunks_exact(cs)) {
                d.copy_from_slice(&s[offset..offset + c]);
            }
        });
    out
}

/// Pixels per parallel task of the channel copies: large enough to amortise a task, small
/// enough to balance two to a few dozen threads.
const PIXELS_PER_TASK: usize = 1024;
