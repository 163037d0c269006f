//! Property tests of every CPU layer (convolutions, BatchNorm + ReLU, transposed convolution,
//! pooling) against the plain f64 references in `nn::reference`
//! (random shapes, odd sizes, channel counts that are not multiples of 8, 1 and 2 threads so
//! both the chunk-parallel and the GEMM-parallel paths run), and finite-difference checks of
//! the loss gradient, including the marginal (partial-label) variant.

use cineseg::nn::cpu::precision::Precision;
use cineseg::nn::cpu::{batchnorm, conv3x3, pool, upconv};
use cineseg::nn::loss::{loss_and_grad, Target};
use cineseg::nn::params::BatchNorm;
use cineseg::nn::reference;
use cineseg::nn::rng::Rng;
use cineseg::nn::Tensor;
use proptest::prelude::*;

fn random(n: usize, seed: u64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.normal()).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|x| *x as f32).collect()
}

fn assert_close(ours: &[f32], reference: &[f64], bound: f64, what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let scale = reference.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    let err = ours
        .iter()
        .zip(reference)
        .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()))
        / scale;
    assert!(
        err < bound,
        "{what}: normwise relative error {err:.2e} >= {bound:.0e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Forward, data gradient and weight gradient of the 3x3 convolution.
    #[test]
    fn conv3x3_matches_reference(n in 1usize..3, h in 1usize..19, w in 1usize..23, cin in 1usize..13,
                                 cout in 1usize..11, threads in 1usize..3, seed in 0u64..1000) {
        let x = random(n * cin * h * w, seed);
        let wt = random(cout * cin * 9, seed + 1);
        let dy = random(n * cout * h * w, seed + 2);
        let xt = Tensor::from_nchw(n, cin, h, w, &f32s(&x)).unwrap();
        let dyt = Tensor::from_nchw(n, cout, h, w, &f32s(&dy)).unwrap();
        let wf = f32s(&wt);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (ys, dxs, dwp) = pool.install(|| {
            let methods = [conv3x3::Method::Im2col, conv3x3::Method::Winograd];
            let ys: Vec<Tensor> = methods.iter().map(|m| conv3x3::ConvWeights::with_method(&wf, cin, cout, *m).apply(&xt, conv3x3::Epilogue::None, threads)).collect();
            let dxs: Vec<Tensor> = methods.iter().map(|m| conv3x3::ConvWeights::for_dgrad_with(&wf, cin, cout, *m, Precision::F32).apply(&dyt, conv3x3::Epilogue::None, threads)).collect();
            let dwps: Vec<Vec<f32>> = methods.iter().map(|m| conv3x3::backward_weights_with(*m, Precision::F32, &xt, &dyt, threads)).collect();
            (ys, dxs, dwps)
        });

        let y_ref = reference::conv3x3_nchw(&x, n, cin, h, w, &wt, cout);
        let (dx_ref, dw_ref) = reference::conv3x3_backward_nchw(&x, n, cin, h, w, &wt, cout, &dy);
        for (y, name) in ys.iter().zip(["im2col", "winograd"]) {
            assert_close(&y.to_nchw(), &y_ref, 1e-5, &format!("forward ({name})"));
        }
        for (dx, name) in dxs.iter().zip(["im2col", "winograd"]) {
            assert_close(&dx.to_nchw(), &dx_ref, 1e-5, &format!("data gradient ({name})"));
        }
        for (dwp, name) in dwp.iter().zip(["im2col", "winograd"]) {
            let mut dw = vec![0.0f32; wt.len()];
            conv3x3::unpack_add(dwp, cin, cout, &mut dw);
            assert_close(&dw, &dw_ref, 1e-5, &format!("weight gradient ({name})"));
        }
    }

    /// BatchNorm (training mode) + ReLU: output, running statistics, and the backward's data
    /// and parameter gradients, with channel counts around the 16-value chunks of the loops.
    #[test]
    fn batchnorm_relu_matches_reference(n in 1usize..3, h in 3usize..9, w in 3usize..9, c in 1usize..40,
                                         threads in 1usize..3, seed in 0u64..1000) {
        // At least 9 values per channel: over 2 or 3 values the data gradient is almost pure
        // cancellation amplified by 1/sigma, and f32 cannot match f64 there (the U-Net's
        // smallest BatchNorm sees 1152 values).
        let hw = h * w;
        let x = random(n * c * hw, seed);
        let dy = random(n * c * hw, seed + 1);
        let gamma: Vec<f64> = random(c, seed + 2).iter().map(|g| 1.0 + 0.3 * g).collect();
        let beta = random(c, seed + 3);
        let xt = Tensor::from_nchw(n, c, h, w, &f32s(&x)).unwrap();
        let dyt = Tensor::from_nchw(n, c, h, w, &f32s(&dy)).unwrap();
        let mut bn = BatchNorm {
            weight: f32s(&gamma),
            bias: f32s(&beta),
            running_mean: vec![0.5; c],
            running_var: vec![2.0; c],
        };
        let (mut dgamma, mut dbeta) = (vec![0.0f32; c], vec![0.0f32; c]);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (y, dx) = pool.install(|| {
            let (y, cache) = batchnorm::forward_train(&xt, &mut bn, threads);
            let dx = batchnorm::backward(&dyt, &xt, &y, &bn.weight, &cache, &mut dgamma, &mut dbeta, threads);
            (y, dx)
        });
        let fwd = reference::batchnorm_relu_nchw(&x, n, c, hw, &gamma, &beta);
        let (dx_ref, dg_ref, db_ref) = reference::batchnorm_relu_backward_nchw(&x, n, c, hw, &gamma, &fwd, &dy);
        assert_close(&y.to_nchw(), &fwd.y, 1e-5, "bn+relu forward");
        assert_close(&dx.to_nchw(), &dx_ref, 1e-4, "bn+relu data gradient");
        assert_close(&dgamma, &dg_ref, 1e-5, "bn gamma gradient");
        assert_close(&dbeta, &db_ref, 1e-5, "bn beta gradient");
        let unbias = (n * hw) as f64 / (n * hw - 1) as f64;
        let rm: Vec<f64> = fwd.mean.iter().map(|m| 0.9 * 0.5 + 0.1 * m).collect();
        let rv: Vec<f64> = fwd.var.iter().map(|v| 0.9 * 2.0 + 0.1 * v * unbias).collect();
        assert_close(&bn.running_mean, &rm, 1e-5, "running mean");
        assert_close(&bn.running_var, &rv, 1e-5, "running variance");
    }

    /// The transposed convolution writes the right channels of the concat buffer, and its
    /// backward matches finite sums of the reference.
    #[test]
    fn upconv_matches_reference(n in 1usize..3, h in 1usize..9, w in 1usize..9, cin in 1usize..9,
                                cout in 1usize..7, skip in 0usize..5, seed in 0u64..1000) {
        let x = random(n * cin * h * w, seed);
        let wt = random(cin * cout * 4, seed + 1);
        let bias = random(cout, seed + 2);
        let xt = Tensor::from_nchw(n, cin, h, w, &f32s(&x)).unwrap();
        let packed = upconv::pack(&f32s(&wt), cin, cout);
        let mut cat = Tensor::zeros(n, 2 * h, 2 * w, skip + cout);
        upconv::forward_into(&xt, &packed, &f32s(&bias), &mut cat, skip, 1);
        let y_ref = reference::upconv2x2_nchw(&x, n, cin, h, w, &wt, &bias);
        let full = cat.to_nchw();
        let hw = 4 * h * w;
        let ours: Vec<f32> = (0..n).flat_map(|b| full[(b * (skip + cout) + skip) * hw..(b * (skip + cout) + skip + cout) * hw].to_vec()).collect();
        assert_close(&ours, &y_ref, 1e-5, "upconv forward");
        // Backward against the adjoint identity <up(x), g> = <x, up^T(g)> (bias excluded).
        let g = random(n * 2 * h * 2 * w * (skip + cout), seed + 3);
        let gt = Tensor::from_nhwc(n, 2 * h, 2 * w, skip + cout, f32s(&g)).unwrap();
        let mut dpacked = vec![0.0; packed.len()];
        let mut dbias = vec![0.0; cout];
        let dx = upconv::backward(&xt, &packed, &gt, skip, &mut dpacked, &mut dbias, 1);
        let lhs: f64 = cat.data.iter().zip(&gt.data).enumerate()
            .filter(|(i, _)| i % (skip + cout) >= skip)
            .map(|(i, (y, g))| (*y as f64 - bias[i % (skip + cout) - skip]) * *g as f64).sum();
        let rhs: f64 = dx.data.iter().zip(&xt.data).map(|(a, b)| *a as f64 * *b as f64).sum();
        prop_assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "adjoint {lhs} vs {rhs}");
        // Weight gradient: <dW, W> equals the same inner product.
        let wdot: f64 = dpacked.iter().zip(&packed).map(|(a, b)| *a as f64 * *b as f64).sum();
        prop_assert!((lhs - wdot).abs() <= 1e-4 * lhs.abs().max(1.0), "weight gradient {lhs} vs {wdot}");
    }

    /// Max-pool picks the window maximum and routes the gradient to it.
    #[test]
    fn maxpool_forward_backward(n in 1usize..3, h2 in 1usize..8, w2 in 1usize..8, c in 1usize..40,
                                odd_h in 0usize..2, odd_w in 0usize..2, seed in 0u64..1000) {
        // Odd sizes drop the last row/column (PyTorch's floor); values on a coarse grid make
        // ties, where the first maximum in row-major order must win.
        let (h, w) = (2 * h2 + odd_h, 2 * w2 + odd_w);
        let vals: Vec<f32> = random(n * h * w * c, seed).iter().map(|v| (v * 2.0).round() as f32).collect();
        let x = Tensor::from_nhwc(n, h, w, c, vals).unwrap();
        let (y, idx) = pool::forward(&x);
        prop_assert_eq!((y.h, y.w), (h2, w2));
        let dy = Tensor::from_nhwc(n, h2, w2, c, f32s(&random(n * h2 * w2 * c, seed + 1))).unwrap();
        let dx = pool::backward(&dy, &idx, h, w);
        prop_assert_eq!(dx.data.len(), x.data.len());
        let mut routed = vec![false; dx.data.len()];
        for b in 0..n { for yy in 0..h2 { for xx in 0..w2 { for ch in 0..c {
            let at = |py: usize, px: usize| x.data[((b * h + py) * w + px) * c + ch];
            let window = [at(2*yy, 2*xx), at(2*yy, 2*xx+1), at(2*yy+1, 2*xx), at(2*yy+1, 2*xx+1)];
            let m = window.iter().fold(f32::MIN, |a, v| a.max(*v));
            let first = window.iter().position(|v| *v == m).unwrap();
            let o = ((b * h2 + yy) * w2 + xx) * c + ch;
            prop_assert_eq!(y.data[o], m);
            let k = idx[o] as usize;
            prop_assert_eq!(k, first);
            let at_dx = ((b * h + 2 * yy + k / 2) * w + 2 * xx + k % 2) * c + ch;
            prop_assert_eq!(dx.data[at_dx], dy.data[o]);
            routed[at_dx] = true;
        }}}}
        for (i, v) in dx.data.iter().enumerate() {
            prop_assert!(routed[i] || *v == 0.0, "gradient at {} not routed from any window", i);
        }
    }
}

/// Central finite differences of the loss against its analytic logit gradient.
fn finite_difference_check(target: &Target, n: usize, h: usize, w: usize, k: usize, seed: u64) {
    let logits = Tensor::from_nhwc(
        n,
        h,
        w,
        k,
        f32s(&random(n * h * w * k, seed))
            .iter()
            .map(|v| v * 2.0)
            .collect(),
    )
    .unwrap();
    let analytic = loss_and_grad(&logits, target).unwrap().dlogits;
    let eps = 1e-2f32;
    let mut r = Rng::new(seed + 9);
    for _ in 0..40 {
        let i = r.below(logits.data.len());
        let mut plus = logits.clone();
        plus.data[i] += eps;
        let mut minus = logits.clone();
        minus.data[i] -= eps;
        let lp = loss_and_grad(&plus, target).unwrap().loss;
        let lm = loss_and_grad(&minus, target).unwrap().loss;
        let numeric = (lp - lm) / (2.0 * eps as f64);
        let a = analytic.data[i] as f64;
        assert!(
            (numeric - a).abs() <= 1e-4 + 1e-2 * a.abs(),
            "logit {i}: numeric {numeric:.6e} analytic {a:.6e}"
        );
    }
}

#[test]
fn loss_gradient_matches_finite_differences() {
    let (n, h, w, k) = (2, 5, 6, 4);
    let mut r = Rng::new(3);
    let labels: Vec<u8> = (0..n * h * w).map(|_| r.below(k) as u8).collect();
    finite_difference_check(&Target::full(labels, n, k), n, h, w, k, 5);
}

#[test]
fn marginal_loss_gradient_matches_finite_differences() {
    // Sample 0 has LV and MYO drawn only (RV merged into background); sample 1 is complete.
    let (n, h, w, k) = (2, 5, 6, 4);
    let mut r = Rng::new(4);
    let mut labels: Vec<u8> = (0..n * h * w).map(|_| r.below(k) as u8).collect();
    for l in labels[..h * w].iter_mut() {
        if *l == 3 {
            *l = 0;
        }
    }
    let target = Target {
        labels,
        labelled: vec![vec![true, true, true, false], vec![true; 4]],
    };
    finite_difference_check(&target, n, h, w, k, 6);
}

#[test]
fn marginal_loss_never_penalises_undrawn_class() {
    // With RV undrawn, moving probability from background to RV on a background pixel leaves
    // the cross-entropy unchanged (they are merged), while with RV drawn it raises it.
    let (n, h, w, k) = (1, 2, 2, 4);
    let labels = vec![0u8; 4];
    let mut logits = Tensor::zeros(n, h, w, k);
    let partial = Target {
        labels: labels.clone(),
        labelled: vec![vec![true, true, true, false]],
    };
    let full = Target::full(labels, 1, k);
    let base_p = loss_and_grad(&logits, &partial).unwrap().cross_entropy;
    let base_f = loss_and_grad(&logits, &full).unwrap().cross_entropy;
    for px in 0..4 {
        logits.data[px * k + 3] = 3.0;
        logits.data[px * k] = -1.0;
    }
    let moved_p = loss_and_grad(&logits, &partial).unwrap().cross_entropy;
    let moved_f = loss_and_grad(&logits, &full).unwrap().cross_entropy;
    assert!(
        moved_f > base_f + 0.5,
        "full labels must penalise RV on background: {base_f} -> {moved_f}"
    );
    assert!(moved_p < base_p, "merged background+RV probability rose, so the marginal CE must fall: {base_p} -> {moved_p}");
}

/// Re-runs every test of this file once per CPU path the processor supports (the child runs
/// with `CINESEG_CPU_PATH` set), so each compiled copy of the per-path loops meets the f64
/// references; unsupported paths print `skipped`. Under an emulator (the aarch64 build run by
/// qemu, scripts/test-aarch64.sh) the child runs through `CINESEG_TEST_RUNNER` too.
#[test]
fn layer_tests_pass_on_every_cpu_path_this_processor_has() {
    use cineseg::nn::cpu::isa::CpuPath;
    if std::env::var_os("CINESEG_CPU_PATH").is_some() {
        return; // the child run itself
    }
    let exe = std::env::current_exe().expect("test executable");
    for p in CpuPath::ALL {
        if !p.supported() {
            println!("skipped: CPU path {p} is not supported by this processor");
            continue;
        }
        let runner = std::env::var("CINESEG_TEST_RUNNER").unwrap_or_default();
        let mut words = runner.split_whitespace();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut c = std::process::Command::new(program);
                c.args(words).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        let out = cmd
            .env("CINESEG_CPU_PATH", p.to_string())
            .args(["--test-threads", "2"])
            .output()
            .expect("re-run the layer tests");
        let text = String::from_utf8_lossy(&out.stdout);
        let summary = text
            .lines()
            .find(|l| l.starts_with("test result"))
            .unwrap_or("no summary");
        println!("CPU path {p}: {summary}");
        assert!(
            out.status.success(),
            "layer tests fail on CPU path {p}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
