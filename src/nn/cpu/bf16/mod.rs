//! bf16 GEMM for processors that multiply bf16 natively (AVX512-BF16): operands rounded to
//! bf16 (round to nearest even) while they are packed, products exact, sums in f32. This is
//! what PyTorch's CPU autocast does for convolutions, and it halves the bytes a GEMM streams
//! while doubling the multiplies per instruction.
//!
//! [`reference_gemm`] is the plain counterpart: the same rounding of the operands, the same
//! pairwise order of the sums, scalar f32 arithmetic. Tests hold the kernel to it, so a
//! difference from f32 can be told apart from a bug.

pub mod calibrate;
pub mod kernel;
pub mod pack;

use crate::nn::gemm::{MatRef, Par};
use kernel::{MR, NR};
pub use pack::{round, to_bf16, PackedA, PackedB};
use rayon::prelude::*;

/// Whether this processor multiplies bf16 natively (the kernel can run).
pub fn native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which micro-kernel runs a bf16 GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `vdpbf16ps` (AVX512-BF16).
    Native,
    /// [`kernel::dot_reference`]: the same arithmetic in scalar code, on any processor.
    Reference,
}

impl Kernel {
    /// The native kernel where the processor has it, else the reference.
    pub fn best() -> Kernel {
        if native() {
            Kernel::Native
        } else {
            Kernel::Reference
        }
    }
}

/// `C` shared by the workers of one GEMM, each writing a disjoint block.
struct CPtr(*mut f32);
// SAFETY: workers write disjoint blocks (distinct column panels or row blocks), see `run`.
unsafe impl Sync for CPtr {}
impl CPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the field).
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `c = (accumulate ? c : 0) + a · b` with both operands rounded to bf16 and f32 sums; `b`
/// packed once (weights) with [`PackedB::pack`]. Shapes as in [`crate::nn::gemm::sgemm`].
///
/// Runs the native kernel where the processor has it, else the (slow) scalar reference.
///
/// # Panics
/// On inconsistent shapes (programming errors, never data-dependent).
pub fn gemm_packed(
    a: MatRef<'_>,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    par: Par,
) {
    gemm_packed_with(Kernel::best(), a, b, c, ldc, accumulate, par)
}

/// [`gemm_packed`] on a given micro-kernel (tests compare them).
///
/// # Panics
/// When `kernel` is [`Kernel::Native`] on a processor without AVX512-BF16, or on
/// inconsistent shapes.
pub fn gemm_packed_with(
    kernel: Kernel,
    a: MatRef<'_>,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    par: Par,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols());
    assert_eq!(b.rows(), k, "bf16 gemm: inner dimensions differ");
    assert!(ldc >= n, "bf16 gemm: ldc smaller than n");
    assert!(
        kernel == Kernel::Reference || native(),
        "bf16 kernel called on a processor without AVX512-BF16"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ldc + n <= c.len(),
        "bf16 gemm: dst view exceeds its buffer"
    );
    let pa = PackedA::pack(a);
    run(kernel, &pa, b, c, ldc, accumulate, par);
}

/// [`gemm_packed`] for an operand `b` that changes with every call (gradients).
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, accumulate: bool, par: Par) {
    gemm_packed(a, &PackedB::pack(b), c, ldc, accumulate, par);
}

/// The micro-kernel over every `MR x NR` block: column panels outermost so a panel of `b` stays
/// in L1 while the row blocks of `a` stream from L2. With threads, panels (or, when there are
/// fewer panels than threads, row blocks) are split between workers.
fn run(
    which: Kernel,
    a: &PackedA,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    par: Par,
) {
    let (m, n) = (a.rows(), b.cols());
    let pairs = a.pairs();
    let (row_blocks, panels) = (m.div_ceil(MR), n.div_ceil(NR));
    let c_len = c.len();
    let cp = CPtr(c.as_mut_ptr());
    let block = |rb: usize, pn: usize| {
        let rows = MR.min(m - rb * MR);
        let cols = NR.min(n - pn * NR);
        let offset = rb * MR * ldc + pn * NR;
        match which {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the caller checked `native()` for this kernel; the packed blocks hold
            // `pairs` groups (PackedA/PackedB pad to whole blocks); the C block lies inside
            // `c`: rows `rb*MR .. rb*MR + rows <= m`, columns `pn*NR .. pn*NR + cols <= n <=
            // ldc`, and the last element `(m-1)*ldc + n - 1` was bounds-checked. Workers write
            // disjoint blocks.
            Kernel::Native => unsafe {
                kernel::dot_12x32(
                    pairs,
                    a.block(rb).as_ptr(),
                    b.panel(pn).as_ptr(),
                    cp.at(offset),
                    ldc,
                    rows,
                    cols,
                    accumulate,
                )
            },
            _ => {
                // The reference works on a private tile: rows of other workers' panels lie
                // between this block's rows, so no slice of `c` may span them.
                let mut tile = [0.0f32; MR * NR];
                assert!(offset + (rows - 1) * ldc + cols <= c_len);
                for r in 0..rows {
                    // SAFETY: row `r` of the block, `cols` values inside `c` (checked above),
                    // written only by this worker.
                    unsafe {
                        let row = cp.at(offset + r * ldc);
                        if accumulate {
                            std::ptr::copy_nonoverlapping(row, tile[r * NR..].as_mut_ptr(), cols);
                        }
                    }
                }
                kernel::dot_reference(
                    pairs,
                    a.block(rb),
                    b.panel(pn),
                    &mut tile,
                    NR,
                    rows,
                    cols,
                    accumulate,
                );
                for r in 0..rows {
                    // SAFETY: as above.
                    unsafe {
                        let row = cp.at(offset + r * ldc);
                        std::ptr::copy_nonoverlapping(tile[r * NR..].as_ptr(), row, cols);
                    }
                }
            }
        }
    };
    let threads = match par {
        Par::Serial => 1,
        Par::Threads(t) => t.max(1),
    };
    if threads == 1 || row_blocks * panels < 2 {
        for pn in 0..panels {
            for rb in 0..row_blocks {
                block(rb, pn);
            }
        }
    } else if panels >= threads {
        (0..panels)
            .into_par_iter()
            .for_each(|pn| (0..row_blocks).for_each(|rb| block(rb, pn)));
    } else {
        (0..row_blocks)
            .into_par_iter()
            .for_each(|rb| (0..panels).for_each(|pn| block(rb, pn)));
    }
}

/// The plain reference of [`gemm`]: operands rounded to bf16, each pair of products added to
/// the f32 sum as `vdpbf16ps` does (the `2p + 1` product first, then `2p`), scalar code. Works
/// on every processor.
pub fn reference_gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "bf16 reference gemm: inner dimensions differ");
    let at = |i: usize, j: usize| round(a.data[i * a.rs + j * a.cs]);
    let bt = |i: usize, j: usize| round(b.data[i * b.rs + j * b.cs]);
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for p in 0..k.div_ceil(2) {
                let hi = if 2 * p + 1 < k {
                    at(i, 2 * p + 1) * bt(2 * p + 1, j)
                } else {
                    0.0
                };
                s += hi;
                s += at(i, 2 * p) * bt(2 * p, j);
            }
            let dst = &mut c[i * ldc + j];
            *dst = if accumulate { *dst + s } else { s };
        }
    }
}
