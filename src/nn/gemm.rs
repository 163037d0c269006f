//! The one place that calls the GEMM crate, behind a bounds-checked safe function.
//!
//! `gemm` 0.19 was chosen from the measurements in docs/CRATES.md 4 (pixels-as-rows shapes, the
//! NHWC convolution layout, run at 60-70 GFLOP/s per Zen 3 core) and from `benches/`.

/// A read-only matrix view: element (i, j) is `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(
                last < self.data.len(),
                "gemm: {what} view exceeds its buffer"
            );
        }
    }
}

/// Threads a GEMM may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// Run on the calling thread (the caller parallelises over independent GEMMs).
    Serial,
    /// Split the GEMM over this many rayon threads.
    Threads(usize),
}

/// `c = (accumulate ? c : 0) + a · b`, with `c` row-major (`rows(a) x cols(b)`, row stride `ldc`).
///
/// # Panics
/// On inconsistent shapes or views that exceed their buffers: those are programming errors,
/// never data-dependent.
pub fn sgemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, accumulate: bool, par: Par) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert!(ldc >= n, "gemm: ldc smaller than n");
    a.check("lhs");
    b.check("rhs");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ldc + n <= c.len(),
        "gemm: dst view exceeds its buffer"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = match par {
        Par::Serial | Par::Threads(0) | Par::Threads(1) => gemm::Parallelism::None,
        Par::Threads(t) => gemm::Parallelism::Rayon(t),
    };
    // SAFETY: every index the GEMM touches was bounds-checked above against the slices, which
    // stay borrowed (c mutably, a and b shared) for the duration of the call.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The right operand of a convolution GEMM in the form its precision wants: an f32 view, or
/// bf16 panels packed once (weights prepared for [`Precision::Bf16`]).
///
/// [`Precision::Bf16`]: crate::nn::cpu::precision::Precision::Bf16
#[derive(Clone, Copy, Debug)]
pub enum Rhs<'a> {
    F32(MatRef<'a>),
    Bf16(&'a crate::nn::cpu::bf16::PackedB),
}

impl Rhs<'_> {
    /// `c = (accumulate ? c : 0) + a · self`, in the operand's precision.
    pub fn gemm(&self, a: MatRef<'_>, c: &mut [f32], ldc: usize, accumulate: bool, par: Par) {
        match self {
            Rhs::F32(b) => sgemm(a, *b, c, ldc, accumulate, par),
            Rhs::Bf16(b) => crate::nn::cpu::bf16::gemm_packed(a, b, c, ldc, accumulate, par),
        }
    }
}

/// `c = (accumulate ? c : 0) + a · b` in `precision`, for operands that change every call
/// (gradient GEMMs).
pub fn gemm_in(
    precision: crate::nn::cpu::precision::Precision,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    par: Par,
) {
    match precision {
        crate::nn::cpu::precision::Precision::F32 => sgemm(a, b, c, ldc, accumulate, par),
        crate::nn::cpu::precision::Precision::Bf16 => {
            crate::nn::cpu::bf16::gemm(a, b, c, ldc, accumulate, par)
        }
    }
}
