//! The 1x1 output convolution with bias: features to class logits.

use crate::nn::gemm::{sgemm, MatRef, Par};
use crate::nn::Tensor;

/// `logits = x · W^T + b`, W in OIHW (`classes x c x 1 x 1`).
pub fn forward(x: &Tensor, w: &[f32], b: &[f32], threads: usize) -> Tensor {
    let k = b.len();
    let mut out = Tensor::uninit(x.n, x.h, x.w, k);
    sgemm(
        MatRef::row_major(&x.data, x.pixels(), x.c),
        MatRef::row_major(w, k, x.c).t(),
        &mut out.data,
        k,
        false,
        Par::Threads(threads),
    );
    for row in out.data.chunks_exact_mut(k) {
        for (v, bb) in row.iter_mut().zip(b) {
            *v += bb;
        }
    }
    out
}

/// Backward: returns `dx`, adds into `dw` (OIHW) and `db`.
pub fn backward(
    x: &Tensor,
    w: &[f32],
    dlogits: &Tensor,
    dw: &mut [f32],
    db: &mut [f32],
    threads: usize,
) -> Tensor {
    let (k, p) = (dlogits.c, x.pixels());
    let dl = MatRef::row_major(&dlogits.data, p, k);
    let mut sums = vec![0.0f64; k];
    for row in dlogits.data.chunks_exact(k) {
        for (a, v) in sums.iter_mut().zip(row) {
            *a += *v as f64;
        }
    }
    for (a, s) in db.iter_mut().zip(sums) {
        *a += s as f32;
    }
    sgemm(
        dl.t(),
        MatRef::row_major(&x.data, p, x.c),
        dw,
        x.c,
        true,
        Par::Threads(threads),
    );
    let mut dx = Tensor::uninit(x.n, x.h, x.w, x.c);
    sgemm(
        dl,
        MatRef::row_major(w, k, x.c),
        &mut dx.data,
        x.c,
        false,
        Par::Threads(threads),
    );
    dx
}
