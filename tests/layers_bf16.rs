//! The bf16 path against its references: the AVX512-BF16 micro-kernel against the scalar
//! kernel on the same packed operands and against the plain rounding reference
//! (`bf16::reference_gemm`), over odd shapes, transposed operands, accumulation and 1-2
//! threads; then every 3x3 convolution (forward, data and weight gradient, both methods) in
//! bf16 against the f64 reference, exactly (to f32 sums) where the rounding points are the
//! inputs, within bf16 rounding where Winograd rounds transformed values. The scalar-kernel
//! tests run on every processor; the native ones print `skipped` where AVX512-BF16 is absent.

use cineseg::nn::cpu::bf16::{self, Kernel, PackedB};
use cineseg::nn::cpu::conv3x3::{self, ConvWeights, Epilogue, Method};
use cineseg::nn::cpu::precision::Precision;
use cineseg::nn::gemm::{MatRef, Par};
use cineseg::nn::reference;
use cineseg::nn::rng::Rng;
use cineseg::nn::Tensor;
use proptest::prelude::*;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.normal() as f32).collect()
}

/// Largest difference relative to the largest reference magnitude.
fn normwise(ours: &[f32], want: &[f64]) -> f64 {
    assert_eq!(ours.len(), want.len());
    let scale = want.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    ours.iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()))
        / scale
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| *x as f64).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// One GEMM through the packed driver with a given kernel.
#[allow(clippy::too_many_arguments)]
fn packed_gemm(
    kernel: Kernel,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c0: &[f32],
    ldc: usize,
    accumulate: bool,
    threads: usize,
) -> Vec<f32> {
    let mut c = c0.to_vec();
    let par = if threads > 1 {
        Par::Threads(threads)
    } else {
        Par::Serial
    };
    pool(threads).install(|| {
        bf16::gemm_packed_with(kernel, a, &PackedB::pack(b), &mut c, ldc, accumulate, par)
    });
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Packing, blocking, tails and accumulation: the scalar kernel equals the plain reference
    /// (same rounding, same order of sums), and the native kernel equals both.
    #[test]
    fn bf16_gemm_matches_its_references(m in 1usize..40, k in 1usize..75, n in 1usize..75,
                                        transposed in any::<bool>(), accumulate in any::<bool>(),
                                        pad in 0usize..3, threads in 1usize..3, seed in 0u64..10_000) {
        let ad = random(m * k, seed);
        let bd = random(k * n, seed + 1);
        let ldc = n + pad;
        let c0 = random(m * ldc, seed + 2);
        // `a` stored as k x m and viewed transposed when asked (weight-gradient GEMMs).
        let a = if transposed {
            MatRef::row_major(&ad, k, m).t()
        } else {
            MatRef::row_major(&ad, m, k)
        };
        let b = MatRef::row_major(&bd, k, n);
        let mut want = c0.clone();
        bf16::reference_gemm(a, b, &mut want, ldc, accumulate);
        let scalar = packed_gemm(Kernel::Reference, a, b, &c0, ldc, accumulate, threads);
        let err = normwise(&scalar, &widen(&want));
        prop_assert!(err < 1e-6, "scalar kernel vs reference: {err:.2e}");
        if bf16::native() {
            let fast = packed_gemm(Kernel::Native, a, b, &c0, ldc, accumulate, threads);
            let err = normwise(&fast, &widen(&want));
            prop_assert!(err < 1e-6, "native kernel vs reference: {err:.2e}");
        }
        // Padding columns of C beyond n are never written.
        for r in 0..m {
            for j in n..ldc {
                prop_assert_eq!(scalar[r * ldc + j].to_bits(), c0[r * ldc + j].to_bits());
            }
        }
    }

    /// The bf16 convolutions against the f64 reference. im2col rounds exactly the inputs and
    /// weights, so against the reference on rounded operands it agrees to f32 summation;
    /// Winograd rounds the transformed tiles, so it agrees within bf16 rounding (and both do
    /// against the unrounded reference). Gradients likewise.
    #[test]
    fn bf16_conv3x3_matches_reference(n in 1usize..3, h in 1usize..15, w in 1usize..17,
                                      cin in 1usize..13, cout in 1usize..11,
                                      threads in 1usize..3, seed in 0u64..1000) {
        let x = random(n * cin * h * w, seed);
        let wt = random(cout * cin * 9, seed + 1);
        let dy = random(n * cout * h * w, seed + 2);
        let xt = Tensor::from_nchw(n, cin, h, w, &x).unwrap();
        let dyt = Tensor::from_nchw(n, cout, h, w, &dy).unwrap();
        let methods = [Method::Im2col, Method::Winograd];
        let bf = Precision::Bf16;
        let (ys, dxs, dws) = pool(threads).install(|| {
            let ys: Vec<Tensor> = methods.iter().map(|m| ConvWeights::prepare(&wt, cin, cout, *m, bf).apply(&xt, Epilogue::None, threads)).collect();
            let dxs: Vec<Tensor> = methods.iter().map(|m| ConvWeights::for_dgrad_with(&wt, cin, cout, *m, bf).apply(&dyt, Epilogue::None, threads)).collect();
            let dws: Vec<Vec<f32>> = methods.iter().map(|m| conv3x3::backward_weights_with(*m, bf, &xt, &dyt, threads)).collect();
            (ys, dxs, dws)
        });
        let r = |v: &[f32]| -> Vec<f64> { v.iter().map(|x| bf16::round(*x) as f64).collect() };
        let (x64, w64, dy64) = (widen(&x), widen(&wt), widen(&dy));
        let y_exact = reference::conv3x3_nchw(&x64, n, cin, h, w, &w64, cout);
        let y_rounded = reference::conv3x3_nchw(&r(&x), n, cin, h, w, &r(&wt), cout);
        let (dx_exact, dw_exact) = reference::conv3x3_backward_nchw(&x64, n, cin, h, w, &w64, cout, &dy64);
        let (dx_rounded, _) = reference::conv3x3_backward_nchw(&x64, n, cin, h, w, &r(&wt), cout, &r(&dy));
        let (_, dw_rounded) = reference::conv3x3_backward_nchw(&r(&x), n, cin, h, w, &w64, cout, &r(&dy));
        // bf16 keeps 8 significant bits: unit roundoff 2^-9; a sum of products of two rounded
        // values stays within a few units of it, normwise.
        const BF16_BOUND: f64 = 3e-2;
        for (i, name) in ["im2col", "winograd"].iter().enumerate() {
            let y = ys[i].to_nchw();
            let dx = dxs[i].to_nchw();
            let mut dw = vec![0.0f32; wt.len()];
            conv3x3::unpack_add(&dws[i], cin, cout, &mut dw);
            prop_assert!(normwise(&y, &y_exact) < BF16_BOUND, "forward ({name}) vs exact");
            prop_assert!(normwise(&dx, &dx_exact) < BF16_BOUND, "data gradient ({name}) vs exact");
            prop_assert!(normwise(&dw, &dw_exact) < BF16_BOUND, "weight gradient ({name}) vs exact");
            if *name == "im2col" {
                let e = normwise(&y, &y_rounded);
                prop_assert!(e < 1e-5, "forward (im2col) vs rounded operands: {e:.2e}");
                let e = normwise(&dx, &dx_rounded);
                prop_assert!(e < 1e-5, "data gradient (im2col) vs rounded operands: {e:.2e}");
                let e = normwise(&dw, &dw_rounded);
                prop_assert!(e < 1e-5, "weight gradient (im2col) vs rounded operands: {e:.2e}");
            }
        }
    }
}

#[test]
fn native_kernel_presence_is_reported() {
    if bf16::native() {
        println!("AVX512-BF16 present: the native kernel ran in every case above");
    } else {
        println!(
            "skipped: native bf16 kernel (no AVX512-BF16 on this processor); the scalar kernel ran"
        );
    }
}
