//! Comparison metrics shared by the tests that hold fp16 GPU (or simulated GPU) results against
//! the CPU backend.

/// Relative L2 error and cosine similarity of `got` against `want`.
pub fn rel_l2(got: &[f32], want: &[f32]) -> (f64, f64) {
    let (mut e, mut n, mut dot, mut ng) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        e += ((g - w) as f64).powi(2);
        n += (*w as f64).powi(2);
        dot += *g as f64 * *w as f64;
        ng += (*g as f64).powi(2);
    }
    (
        (e / n.max(1e-300)).sqrt(),
        dot / (n.sqrt() * ng.sqrt()).max(1e-300),
    )
}

/// Every tensor of a parameter set, concatenated in layout order (for one overall comparison).
#[allow(dead_code)]
pub fn flat(p: &cineseg::nn::UNetParams) -> Vec<f32> {
    p.tensors().into_iter().flatten().copied().collect()
}
