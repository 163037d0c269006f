//! Deterministic parallel reductions: work split into fixed chunk ranges per worker and the
//! partial results added in worker order, so sums do not depend on thread scheduling and a run
//! is repeatable bit for bit for a given thread count.

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
