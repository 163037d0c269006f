//! The AVX512-BF16 micro-kernel: a 12 x 32 block of `C` (24 zmm accumulators) updated with
//! `vdpbf16ps`, which multiplies pairs of bf16 values exactly and adds both products to an f32
//! lane. Operands come packed by [`super::pack`]: for each pair of `k`, one word of each of the
//! 12 rows of `A` (row-major words, broadcast) and 32 words of `B` (one per column, two zmm
//! loads), each word holding the bf16 values of `k = 2p` (low half) and `k = 2p + 1` (high).
//!
//! Rust's AVX512-BF16 intrinsics are stable (`core::arch::x86_64::_mm512_dpbf16_ps`), so no
//! inline assembly is needed; the function is compiled with `#[target_feature]` and only called
//! after run-time detection ([`super::native`]).

/// Rows of `C` per micro-kernel call.
pub const MR: usize = 12;
/// Columns of `C` per micro-kernel call (two 16-lane vectors).
pub const NR: usize = 32;

/// `C[0..rows][0..cols] (+)= A_block · B_panel` over `pairs` pairs of `k`.
///
/// # Safety
/// The CPU must have AVX-512 F and AVX512-BF16. `a` must point at `MR` rows of `pairs` words
/// (row stride `pairs`), `b` at
/// `pairs * NR` words, and `c` at a row-major block with `rows <= MR` rows of stride `ldc`
/// whose first `cols <= NR` values are writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn dot_12x32(
    pairs: usize,
    a: *const u32,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    use core::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let mut bp = b;
    for p in 0..pairs {
        // SAFETY (whole loop): the caller guarantees `pairs` packed groups behind `a` and `b`.
        let b0: __m512bh = core::mem::transmute(_mm512_loadu_si512(bp as *const __m512i));
        let b1: __m512bh = core::mem::transmute(_mm512_loadu_si512(bp.add(16) as *const __m512i));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av: __m512bh =
                core::mem::transmute(_mm512_set1_epi32(*a.add(r * pairs + p) as i32));
            acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, b0);
            acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, b1);
        }
        bp = bp.add(NR);
    }
    let lane_mask = |n: usize| -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    };
    let m0 = lane_mask(cols);
    let m1 = lane_mask(cols.saturating_sub(16));
    // Constant indices (the loop unrolls), so the accumulators stay in registers above.
    for (r, acc_r) in acc.iter().enumerate() {
        if r < rows {
            let row = c.add(r * ldc);
            let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, m0, v0);
            _mm512_mask_storeu_ps(row.add(16), m1, v1);
        }
    }
}

/// The plain counterpart of [`dot_12x32`] on the same packed operands, for every processor:
/// per lane, the `2p + 1` product then the `2p` product added to an f32 sum (both products of
/// bf16 values are exact in f32). Used where bf16 is not native (tests of the packing and
/// blocking on any CPU) and as the reference the kernel is tested against.
#[allow(clippy::too_many_arguments)]
pub fn dot_reference(
    pairs: usize,
    a: &[u32],
    b: &[u32],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    let lo = |w: u32| f32::from_bits(w << 16);
    let hi = |w: u32| f32::from_bits(w & 0xFFFF_0000);
    for r in 0..rows {
        for j in 0..cols {
            let mut s = 0.0f32;
            for p in 0..pairs {
                let (x, y) = (a[r * pairs + p], b[p * NR + j]);
                s += hi(x) * hi(y);
                s += lo(x) * lo(y);
            }
            let dst = &mut c[r * ldc + j];
            *dst = if accumulate { *dst + s } else { s };
        }
    }
}
