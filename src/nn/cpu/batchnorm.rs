//! BatchNorm (training mode, batch statistics) fused with the ReLU that always follows it in
//! the U-Net: forward, running-statistic update, and backward. Inference never runs this: there
//! BatchNorm is folded into the convolution (see `nn::fold`).

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

/// Rows summed in f32 before being added to the f64 totals: short enough that f32 rounding
/// stays far below the parity bounds, long enough that the inner loops vectorise.
const BLOCK_ROWS: usize = 64;

/// Per-channel sums over rows, computed in fixed static partitions (deterministic): each row's
/// contributions are added by `f(row, acc)` into an f32 block accumulator (`width` values),
/// flushed into f64 totals every [`BLOCK_ROWS`] rows.
fn channel_sums(
    rows: usize,
    width: usize,
    threads: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f64> {
    let parts = threads.max(1).min(rows.max(1));
    let partials: Vec<Vec<f64>> = (0..parts)
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0.0f64; width];
            let mut block = vec![0.0f32; width];
            let (lo, hi) = (t * rows / parts, (t + 1) * rows / parts);
            let mut r = lo;
            while r < hi {
                let end = (r + BLOCK_ROWS).min(hi);
                block.fill(0.0);
                for row in r..end {
                    f(row, &mut block);
                }
                for (a, b) in acc.iter_mut().zip(&block) {
                    *a += *b as f64;
                }
                r = end;
            }
            acc
        })
        .collect();
    let mut total = vec![0.0; width];
    for p in partials {
        for (a, b) in total.iter_mut().zip(p) {
            *a += b;
        }
    }
    total
}

/// `y = relu(gamma * (x - mean) / sqrt(var + eps) + beta)` with batch statistics; updates the
/// running statistics (unbiased variance, momentum 0.1) like PyTorch.
pub fn forward_train(x: &Tensor, bn: &mut BatchNorm, threads: usize) -> (Tensor, BnCache) {
    let (c, rows) = (x.c, x.pixels());
    let sums = channel_sums(rows, c, threads, |r, acc| {
        for (a, v) in acc.iter_mut().zip(&x.data[r * c..(r + 1) * c]) {
            *a += *v;
        }
    });
    let mean: Vec<f64> = sums.iter().map(|s| s / rows as f64).collect();
    let mean32: Vec<f32> = mean.iter().map(|m| *m as f32).collect();
    let sq = channel_sums(rows, c, threads, |r, acc| {
        for ((a, v), m) in acc.iter_mut().zip(&x.data[r * c..(r + 1) * c]).zip(&mean32) {
            let d = *v - m;
            *a += d * d;
        }
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
        .for_each(|(yo, xi)| {
            for (yr, xr) in yo.chunks_exact_mut(c).zip(xi.chunks_exact(c)) {
                for ch in 0..c {
                    yr[ch] = (xr[ch] * scale[ch] + shift[ch]).max(0.0);
                }
            }
        });
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
    let sums = channel_sums(rows, 2 * c, threads, |r, acc| {
        let (xr, yr, dr) = (
            &x.data[r * c..(r + 1) * c],
            &y.data[r * c..(r + 1) * c],
            &dy.data[r * c..(r + 1) * c],
        );
        let (a0, a1) = acc.split_at_mut(c);
        for ch in 0..c {
            let dz = if yr[ch] > 0.0 { dr[ch] } else { 0.0 };
            a0[ch] += dz;
            a1[ch] += dz * ((xr[ch] - mean[ch]) * invstd[ch]);
        }
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
        .for_each(|((dxo, xi), (yi, di))| {
            for (((dxr, xr), yr), dr) in dxo
                .chunks_exact_mut(c)
                .zip(xi.chunks_exact(c))
                .zip(yi.chunks_exact(c))
                .zip(di.chunks_exact(c))
            {
                for ch in 0..c {
                    let dz = if yr[ch] > 0.0 { dr[ch] } else { 0.0 };
                    dxr[ch] = k[ch] * dz - (a[ch] + (xr[ch] - mean[ch]) * b[ch]);
                }
            }
        });
    dx
}
