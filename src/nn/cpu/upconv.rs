//! 2x2 stride-2 transposed convolution with bias, writing straight into the decoder's
//! concatenation buffer `[skip, up]` (skip channels first), and the channel copy/split that
//! goes with the concatenation.

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
    let mut sums = vec![0.0f64; cout];
    for (pix, row) in g.chunks_exact_mut(4 * cout).enumerate() {
        let (n, y, xx) = (pix / (h * w), (pix / w) % h, pix % w);
        for tap in 0..4 {
            let (a, b) = (tap / 2, tap % 2);
            let d = ((n * 2 * h + 2 * y + a) * 2 * w + 2 * xx + b) * cd + offset;
            row[tap * cout..(tap + 1) * cout].copy_from_slice(&dcat.data[d..d + cout]);
            for (s, v) in sums.iter_mut().zip(&dcat.data[d..d + cout]) {
                *s += *v as f64;
            }
        }
    }
    for (a, s) in dbias.iter_mut().zip(sums) {
        *a += s as f32;
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
    for (s, d) in src.data.chunks_exact(c).zip(dst.data.chunks_exact_mut(cd)) {
        d[offset..offset + c].copy_from_slice(s);
    }
}

/// Adds channels `offset..offset + dst.c` of `src` into `dst` (the skip part of a concat gradient).
pub fn add_channels(src: &Tensor, offset: usize, dst: &mut Tensor) {
    let (c, cs) = (dst.c, src.c);
    for (d, s) in dst.data.chunks_exact_mut(c).zip(src.data.chunks_exact(cs)) {
        for (a, b) in d.iter_mut().zip(&s[offset..offset + c]) {
            *a += b;
        }
    }
}
