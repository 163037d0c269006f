//! 2x2 max-pool, stride 2, with argmax indices kept for the backward pass. Rows of output
//! pixels run in parallel; each pixel's channels are compared branch-free (a select per
//! channel), which the per-path copies vectorise.

use super::isa::per_path;
use crate::nn::Tensor;
use rayon::prelude::*;

per_path! {
    /// One output row: `out`/`idx` hold `wo` pixels of `c` channels; `r0`, `r1` are the two
    /// input rows (at least `2 * wo` pixels each).
    fn forward_row(r0: &[f32], r1: &[f32], c: usize, out: &mut [f32], idx: &mut [u8]) {
        let pixels = out.chunks_exact_mut(c).zip(idx.chunks_exact_mut(c));
        for (x, (o, ix)) in pixels.enumerate() {
            let (a, b) = (&r0[2 * x * c..(2 * x + 2) * c], &r1[2 * x * c..(2 * x + 2) * c]);
            let (v0, v1, v2, v3) = (&a[..c], &a[c..], &b[..c], &b[c..]);
            let vals = v0.iter().zip(v1).zip(v2.iter().zip(v3));
            for ((o, ix), ((p0, p1), (p2, p3))) in o.iter_mut().zip(ix.iter_mut()).zip(vals) {
                // First max wins ties, as in PyTorch: a later window value must be strictly
                // greater to take over.
                let (mut m, mut k) = (*p0, 0u8);
                if *p1 > m {
                    (m, k) = (*p1, 1);
                }
                if *p2 > m {
                    (m, k) = (*p2, 2);
                }
                if *p3 > m {
                    (m, k) = (*p3, 3);
                }
                *o = m;
                *ix = k;
            }
        }
    }
}

per_path! {
    /// One output row backward: writes both input rows `d0`, `d1` (`2 * wo` pixels each)
    /// whole, the gradient where the window's max was and 0 elsewhere.
    fn backward_row(dout: &[f32], idx: &[u8], c: usize, d0: &mut [f32], d1: &mut [f32]) {
        let pixels = dout.chunks_exact(c).zip(idx.chunks_exact(c));
        let rows = d0.chunks_exact_mut(2 * c).zip(d1.chunks_exact_mut(2 * c));
        for ((g, ix), (a, b)) in pixels.zip(rows) {
            let (a0, a1) = a.split_at_mut(c);
            let (b0, b1) = b.split_at_mut(c);
            let dst = a0.iter_mut().zip(a1.iter_mut()).zip(b0.iter_mut().zip(b1.iter_mut()));
            for ((((q0, q1), (q2, q3)), gv), k) in dst.zip(g).zip(ix) {
                let pick = |slot: u8| f32::from_bits(gv.to_bits() & ((*k == slot) as u32).wrapping_neg());
                *q0 = pick(0);
                *q1 = pick(1);
                *q2 = pick(2);
                *q3 = pick(3);
            }
        }
    }
}

/// Max over each 2x2 window; `idx` records which of the four won (0..3, row-major), first max
/// wins ties as in PyTorch. An odd last row or column is dropped, as PyTorch does.
pub fn forward(x: &Tensor) -> (Tensor, Vec<u8>) {
    let (ho, wo, c) = (x.h / 2, x.w / 2, x.c);
    let mut out = Tensor::uninit(x.n, ho, wo, c);
    let mut idx = vec![0u8; out.data.len()];
    let row = wo * c;
    if row == 0 {
        return (out, idx);
    }
    let in_row = x.w * c;
    out.data
        .par_chunks_mut(row)
        .zip(idx.par_chunks_mut(row))
        .enumerate()
        .for_each(|(r, (o, ix))| {
            let (n, y) = (r / ho, r % ho);
            let s = (n * x.h + 2 * y) * in_row;
            forward_row(
                &x.data[s..s + in_row],
                &x.data[s + in_row..s + 2 * in_row],
                c,
                o,
                ix,
            );
        });
    (out, idx)
}

/// Routes each output gradient to the input that won the max; `h`, `w` are the input size.
pub fn backward(dout: &Tensor, idx: &[u8], h: usize, w: usize) -> Tensor {
    let (ho, wo, c) = (dout.h, dout.w, dout.c);
    let mut dx = Tensor::zeros(dout.n, h, w, c);
    let (row, in_row) = (wo * c, w * c);
    if row == 0 {
        return dx;
    }
    // Each output row owns two input rows; an odd last input row (never a max) stays zero.
    dx.data
        .par_chunks_mut(in_row)
        .enumerate()
        .filter(|(r, _)| r % h < 2 * ho)
        .collect::<Vec<_>>()
        .par_chunks_mut(2)
        .for_each(|pair| {
            let [(r, d0), (_, d1)] = pair else {
                return;
            };
            let (n, y) = (*r / h, (*r % h) / 2);
            let o = (n * ho + y) * row;
            backward_row(&dout.data[o..o + row], &idx[o..o + row], c, d0, d1);
        });
    dx
}
