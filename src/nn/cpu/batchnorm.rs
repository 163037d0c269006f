//! BatchNorm (training mode, batch statistics) fused with the ReLU that always follows it in
//! the U-Net: forward, running-statistic update, and backward. Inference never runs this: there
//! BatchNorm is folded into the convolution (see `nn::fold`).

use super::isa::per_path;
use super::parallel::{add_rows, column_sums};
use crate::nn::params::BatchNorm;
use crate::nn::Tensor;
use rayon::prelude::*;

/// PyTorch's BatchNorm epsilon.
pub const EPS: f64 = 1e-5;
/// PyTorch's running-statistics momentum.
pub const MOMENTUM: f64 = 0.1;

/// What the backward pass needs from the forward pass, besides its input and output.
#[derive(Clone, Debug)]
pub struct BnCache {
    pub mean: Vec<f32>,
    pub invstd: Vec<f32>,
}

per_path! {
    /// `acc[ch] += (x[r][ch] - mean[ch])^2` over the rows of `x`.
    fn add_squares(x: &[f32], mean: &[f32], acc: &mut [f32]) {
        for xr in x.chunks_exact(acc.len()) {
            for ((a, v), m) in acc.iter_mut().zip(xr).zip(mean) {
                let d = *v - m;
                *a += d * d;
            }
        }
    }
}

per_path! {
    /// `y = relu(x * scale + shift)`, rows of `scale.len()` channels.
    fn scale_shift_relu(x: &[f32], scale: &[f32], shift: &[f32], y: &mut [f32]) {
        let c = scale.len();
        for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for (((yv, xv), k), b) in yr.iter_mut().zip(xr).zip(scale).zip(shift) {
                *yv = (*xv * k + b).max(0.0);
            }
        }
    }
}

per_path! {
    /// Backward sums over rows: `s0[ch] += dz`, `s1[ch] += dz * xhat` with `dz = dy * relu'(y)`
    /// and `xhat = (x - mean) * invstd`.
    #[allow(clippy::too_many_arguments)]
    fn add_backward_sums(
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        mean: &[f32],
        invstd: &[f32],
        s0: &mut [f32],
        s1: &mut [f32],
    ) {
        let c = mean.len();
        for ((xr, yr), dr) in x.chunks_exact(c).zip(y.chunks_exact(c)).zip(dy.chunks_exact(c)) {
            let sums = s0.iter_mut().zip(s1.iter_mut());
            let rows = xr.iter().zip(yr).zip(dr);
            for (((a0, a1), ((xv, yv), dv)), (m, is)) in sums.zip(rows).zip(mean.iter().zip(invstd)) {
                let dz = f32::from_bits(dv.to_bits() & ((*yv > 0.0) as u32).wrapping_neg());
                *a0 += dz;
                *a1 += dz * ((*xv - m) * is);
            }
        }
    }
}

per_path! {
    /// `dx = k * dz - (a + (x - mean) * b)` row by row (see [`backward`]).
    #[allow(clippy::too_many_arguments)]
    fn backward_dx(
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        mean: &[f32],
        k: &[f32],
        a: &[f32],
        b: &[f32],
        dx: &mut [f32],
    ) {
        let c = mean.len();
        let rows = dx.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(y.chunks_exact(c).zip(dy.chunks_exact(c)));
        for ((dxr, xr), (yr, dr)) in rows {
            let consts = mean.iter().zip(k).zip(a.iter().zip(b));
            let vals = dxr.iter_mut().zip(xr).zip(yr.iter().zip(dr));
            for (((dxv, xv), (yv, dv)), ((m, kk), (aa, bb))) in vals.zip(consts) {
                let dz = f32::from_bits(dv.to_bits() & ((*yv > 0.0) as u32).wrapping_neg());
                *dxv = kk * dz - (aa + (*xv - m) * bb);
            }
        }
    }
}

/// `y = relu(gamma * (x - mean) / sqrt(var + eps) + beta)` with batch statistics; updates the
/// running statistics (unbiased variance, momentum 0.1) like PyTorch.
pub fn forward_train(x: &Tensor, bn: &mut BatchNorm, threads: usize) -> (Tensor, BnCache) {
    let (c, rows) = (x.c, x.pixels());
    let sums = column_sums(rows, c, threads, |lo, hi, acc| {
        add_rows(&x.data[lo * c..hi * c], acc)
    });
    let mean: Vec<f64> = sums.iter().map(|s| s / rows as f64).collect();
    let mean32: Vec<f32> = mean.iter().map(|m| *m as f32).collect();
    let sq = column_sums(rows, c, threads, |lo, hi, acc| {
        add_squares(&x.data[lo * c..hi * c], &mean32, acc)
    });
    let var: Vec<f64> = sq.iter().map(|s| s / rows as f64).collect();
    let invstd: Vec<f32> = var
        .iter()
        .map(|v| (1.0 / (v + EPS).sqrt()) as f32)
        .collect();
    let unbias = if rows > 1 {
        rows as f64 / (rows as f64 - 1.0)
    } else {
        1.0
    };
    for ch in 0..c {
        bn.running_mean[ch] =
            ((1.0 - MOMENTUM) * bn.running_mean[ch] as f64 + MOMENTUM * mean[ch]) as f32;
        bn.running_var[ch] =
            ((1.0 - MOMENTUM) * bn.running_var[ch] as f64 + MOMENTUM * var[ch] * unbias) as f32;
    }
    let mean: Vec<f32> = mean.iter().map(|m| *m as f32).collect();
    let scale: Vec<f32> = invstd.iter().zip(&bn.weight).map(|(i, g)| i * g).collect();
    let shift: Vec<f32> = (0..c)
        .map(|ch| bn.bias[ch] - mean[ch] * scale[ch])
        .collect();
    let mut y = Tensor::uninit(x.n, x.h, x.w, c);
    let chunk = c * 1024;
    y.data
        .par_chunks_mut(chunk)
        .zip(x.data.par_chunks(chunk))
        .for_each(|(yo, xi)| scale_shift_relu(xi, &scale, &shift, yo));
    (y, BnCache { mean, invstd })
}

/// Backward of [`forward_train`]: from `dy` (gradient of the ReLU output `y`), the pre-BN input
/// `x` and the cache, returns `dx` and adds into `dgamma`, `dbeta`.
// A layer's backward takes every tensor it reads and writes explicitly (llm.c style).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dy: &Tensor,
    x: &Tensor,
    y: &Tensor,
    gamma: &[f32],
    cache: &BnCache,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    threads: usize,
) -> Tensor {
    let (c, rows) = (x.c, x.pixels());
    let (mean, invstd) = (&cache.mean, &cache.invstd);
    // Sums of dz = dy * relu'(y) and of dz * xhat, per channel, in one pass.
    let sums = column_sums(rows, 2 * c, threads, |lo, hi, acc| {
        let (a0, a1) = acc.split_at_mut(c);
        let span = lo * c..hi * c;
        add_backward_sums(
            &x.data[span.clone()],
            &y.data[span.clone()],
            &dy.data[span],
            mean,
            invstd,
            a0,
            a1,
        )
    });
    let sum_dz: Vec<f32> = sums[..c].iter().map(|v| *v as f32).collect();
    let sum_dzx: Vec<f32> = sums[c..].iter().map(|v| *v as f32).collect();
    for ch in 0..c {
        dbeta[ch] += sum_dz[ch];
        dgamma[ch] += sum_dzx[ch];
    }
    // dx = k * (dz - sum_dz / n - xhat * sum_dzx / n), rearranged per channel as
    // dx = k * dz - (a + (x - mean) * b), with the constants hoisted so the row loop vectorises.
    let inv_n = 1.0 / rows as f32;
    let k: Vec<f32> = (0..c).map(|ch| gamma[ch] * invstd[ch]).collect();
    let a: Vec<f32> = (0..c).map(|ch| k[ch] * sum_dz[ch] * inv_n).collect();
    let b: Vec<f32> = (0..c)
        .map(|ch| k[ch] * invstd[ch] * sum_dzx[ch] * inv_n)
        .collect();
    let mut dx = Tensor::uninit(x.n, x.h, x.w, c);
    let chunk = c * 256;
    dx.data
        .par_chunks_mut(chunk)
        .zip(x.data.par_chunks(chunk))
        .zip(y.data.par_chunks(chunk).zip(dy.data.par_chunks(chunk)))
        .for_each(|((dxo, xi), (yi, di))| backward_dx(xi, yi, di, mean, &k, &a, &b, dxo));
    dx
}
