//! Rounding to bf16 and the packed operand layouts of the bf16 micro-kernel.
//!
//! A word (`u32`) holds two bf16 values adjacent in `k`: `k = 2p` in the low half, `2p + 1` in
//! the high half, the order `vdpbf16ps` pairs them in. An odd `k` is padded with zero.
//! `A` is row-major words (`[row][pair]`, rows padded to a multiple of [`MR`]), `B` is packed
//! in panels of [`NR`] columns (`[panel][pair][column]`); partial blocks and panels are padded
//! with zeros, so the kernel always reads whole groups.

use super::kernel::{MR, NR};
use crate::nn::gemm::MatRef;

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits. NaN stays NaN (quiet).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    let rounded = (bits.wrapping_add(rounding) >> 16) as u16;
    // A select, not a branch, so packing loops vectorise.
    if x.is_nan() {
        ((bits >> 16) | 0x0040) as u16
    } else {
        rounded
    }
}

/// `x` rounded to bf16 and widened back to f32: the value the bf16 kernel multiplies.
#[inline(always)]
pub fn round(x: f32) -> f32 {
    f32::from_bits((to_bf16(x) as u32) << 16)
}

#[inline(always)]
fn word(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | ((to_bf16(hi) as u32) << 16)
}

/// The left operand, rounded to bf16, as row-major words (`pairs` per row) with the rows
/// padded to whole blocks of [`MR`]: the kernel broadcasts one word per row and pair. Row-major
/// keeps the packing a contiguous conversion that vectorises.
pub struct PackedA {
    rows: usize,
    pairs: usize,
    words: Vec<u32>,
}

impl PackedA {
    /// Packs any view (row-major, or a transposed one for weight gradients).
    pub fn pack(a: MatRef<'_>) -> Self {
        let (rows, k) = (a.rows, a.cols);
        let pairs = k.div_ceil(2);
        let mut words = vec![0u32; rows.div_ceil(MR) * MR * pairs];
        for (i, dst) in words.chunks_exact_mut(pairs.max(1)).take(rows).enumerate() {
            if a.cs == 1 {
                let src = &a.data[i * a.rs..i * a.rs + k];
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = word(s[0], s[1]);
                }
            } else {
                let at = |j: usize| a.data[i * a.rs + j * a.cs];
                for (p, d) in dst.iter_mut().enumerate().take(k / 2) {
                    *d = word(at(2 * p), at(2 * p + 1));
                }
            }
            if k % 2 == 1 {
                dst[pairs - 1] = word(a.data[i * a.rs + (k - 1) * a.cs], 0.0);
            }
        }
        PackedA { rows, pairs, words }
    }

    /// Rows of the matrix (before padding).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Pairs of `k` (the inner dimension rounded up to even, halved): the row stride in words.
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// Block `b` of [`MR`] rows: `MR * pairs` words.
    pub fn block(&self, b: usize) -> &[u32] {
        &self.words[b * self.pairs * MR..(b + 1) * self.pairs * MR]
    }
}

/// The right operand, rounded and packed in panels of [`NR`] columns: for weights, packed once
/// when a model is loaded.
#[derive(Clone, Debug)]
pub struct PackedB {
    rows: usize,
    cols: usize,
    pairs: usize,
    words: Vec<u32>,
}

impl PackedB {
    /// Packs any view.
    pub fn pack(b: MatRef<'_>) -> Self {
        let (k, cols) = (b.rows, b.cols);
        let pairs = k.div_ceil(2);
        let panels = cols.div_ceil(NR);
        let mut words = vec![0u32; panels * pairs * NR];
        let at = |i: usize, j: usize| b.data[i * b.rs + j * b.cs];
        for p in 0..pairs {
            let (k0, k1) = (2 * p, 2 * p + 1);
            for j in 0..cols {
                let (pn, col) = (j / NR, j % NR);
                let hi = if k1 < k { at(k1, j) } else { 0.0 };
                words[(pn * pairs + p) * NR + col] = word(at(k0, j), hi);
            }
        }
        PackedB {
            rows: k,
            cols,
            pairs,
            words,
        }
    }

    /// Rows (`k`) of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the matrix (before padding).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Panel `p` of [`NR`] columns: `pairs * NR` words.
    pub fn panel(&self, p: usize) -> &[u32] {
        &self.words[p * self.pairs * NR..(p + 1) * self.pairs * NR]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is exactly half-way between bf16 1.0 and 1 + 2^-7: ties go to even (1.0).
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        // 1 + 3 * 2^-8 is half-way between 1 + 2^-7 and 1 + 2^-6: to even (1 + 2^-6).
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 1.0 / 64.0);
        assert_eq!(round(1.0 + 1.0 / 200.0), 1.0 + 1.0 / 128.0);
        assert_eq!(round(-2.5), -2.5);
        assert!(round(f32::NAN).is_nan());
        assert_eq!(round(f32::INFINITY), f32::INFINITY);
        // The largest finite values round up to infinity, as IEEE rounding does.
        assert_eq!(round(f32::MAX), f32::INFINITY);
    }
}
