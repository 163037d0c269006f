//! Deterministic parallel reductions: work split into fixed chunk ranges per worker and the
//! partial results added in worker order, so sums do not depend on thread scheduling and a run
//! is repeatable bit for bit for a given thread count.

use super::isa::per_path;
use crate::nn::gemm::Par;
use rayon::prelude::*;

/// Sums the vectors `f(first, last, par)` returns for contiguous ranges of `nchunks` chunks.
/// With several chunks and threads, each worker takes one range and runs serial GEMMs;
/// otherwise one call covers everything with a multi-threaded GEMM.
pub fn sum_over_chunks(
    nchunks: usize,
    threads: usize,
    f: impl Fn(usize, usize, Par) -> Vec<f32> + Sync,
) -> Vec<f32> {
    if nchunks >= 2 && threads > 1 {
        let workers = threads.min(nchunks);
        let parts: Vec<Vec<f32>> = (0..workers)
            .into_par_iter()
            .map(|t| {
                f(
                    t * nchunks / workers,
                    (t + 1) * nchunks / workers,
                    Par::Serial,
                )
            })
            .collect();
        let mut parts = parts.into_iter();
        let mut total = parts.next().unwrap_or_default();
        for p in parts {
            for (a, b) in total.iter_mut().zip(&p) {
                *a += b;
            }
        }
        total
    } else {
        f(0, nchunks, Par::Threads(threads))
    }
}

/// Rows summed in f32 before being added to the f64 totals: short enough that f32 rounding
/// stays far below the parity bounds, long enough that the inner loops vectorise.
const BLOCK_ROWS: usize = 64;

/// Per-column (per-channel) sums over rows, computed in fixed static partitions (deterministic): each block
/// of at most [`BLOCK_ROWS`] rows is added by `f(lo, hi, acc)`, row by row in order, into an
/// f32 block accumulator (`width` values), which is flushed into f64 totals after each block.
pub fn column_sums(
    rows: usize,
    width: usize,
    threads: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
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
                f(r, end, &mut block);
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

per_path! {
    /// `acc[ch] += x[r][ch]` over the rows of `x` (row length `acc.len()`).
    pub fn add_rows(x: &[f32], acc: &mut [f32]) {
        for xr in x.chunks_exact(acc.len()) {
            for (a, v) in acc.iter_mut().zip(xr) {
                *a += *v;
            }
        }
    }
}
