//! Whether bf16 pays on this processor: AVX512-BF16 being present does not make it fast. On
//! the 2-core Xeon this was written on (2026-12-03, KVM), `vdpbf16ps` issues once every two
//! cycles while f32 FMAs issue twice per cycle, so a bf16 dot product (2 multiplies per lane)
//! runs at ~0.7x the f32 FMA rate and the bf16 U-Net is slower than f32. `--precision auto`
//! therefore times both instructions once per process (a few milliseconds, register-only
//! loops) and uses bf16 only where it is clearly faster.

use std::sync::OnceLock;

/// How much faster bf16 must multiply than f32 before `auto` picks it: the rest of a network
/// (transforms, BatchNorm, packing) does not speed up, so a small edge is not worth the
/// rounding.
pub const AUTO_MIN_SPEEDUP: f64 = 1.3;

/// bf16 multiply-add rate over f32 FMA rate on one core (flops counted as 2 per product);
/// 0 where bf16 is not native. Measured once per process.
pub fn speedup_over_f32() -> f64 {
    static RATIO: OnceLock<f64> = OnceLock::new();
    *RATIO.get_or_init(measure)
}

#[cfg(target_arch = "x86_64")]
fn measure() -> f64 {
    if !super::native() {
        return 0.0;
    }
    use std::time::Instant;
    const ITERS: usize = 100_000;
    let best = |f: &dyn Fn() -> f32| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    // SAFETY: both functions need AVX-512 F (and BF16 for the first), checked by `native()`.
    let t_bf16 = best(&|| unsafe { bf16_loop(ITERS) });
    let t_f32 = best(&|| unsafe { f32_loop(ITERS) });
    // Per iteration: 16 dot products of 16 lanes x 2 products, or 16 FMAs of 16 lanes.
    (2.0 * t_f32) / t_bf16.max(1e-9)
}

#[cfg(not(target_arch = "x86_64"))]
fn measure() -> f64 {
    0.0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn bf16_loop(iters: usize) -> f32 {
    use core::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 16];
    let a: __m512bh = core::mem::transmute(_mm512_set1_epi32(std::hint::black_box(0x3f80_3f80)));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_dpbf16_ps(*v, a, a);
        }
    }
    acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn f32_loop(iters: usize) -> f32 {
    use core::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 16];
    let a = _mm512_set1_ps(std::hint::black_box(0.999));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(a, a, *v);
        }
    }
    acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}
