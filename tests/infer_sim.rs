//! The CUDA backend's inference run on the CPU: the real folding, packing, buffer layout and
//! launch sequence of src/nn/cuda/infer.rs drive the kernel simulator (tests/sim_support), and
//! the logits are compared with the CPU backend's f32 inference on the same weights.
//!
//! The weights get non-trivial BatchNorm statistics, so the fold is exercised; the shapes
//! include a non-square image and a batch of 3. Tolerance: fp16 activations and weights give
//! |err| <= 1e-2 * max|logit| (the training comparison's bound for the forward pass), and the
//! argmax labels agree on at least 99 % of pixels. A wiring error (a wrong channel slice, a
//! skip read from the wrong level) moves logits by the order of the logits themselves.
//!
//! Skips (prints "skipped: ...") when no C++ compiler is installed.
#![cfg(feature = "gpu")]

#[macro_use]
mod sim_support;

use cineseg::nn::cpu::CpuBackend;
use cineseg::nn::cuda::infer::{enqueue_forward, Arena, InferWeights};
use cineseg::nn::params::Kind;
use cineseg::nn::rng::Rng;
use cineseg::nn::{Backend, Tensor, UNetConfig, UNetParams};
use sim_support::sim;

/// Initialised weights with running statistics moved away from (0, 1).
fn params(seed: u64) -> UNetParams {
    let cfg = UNetConfig::new(8, 2);
    let mut p = UNetParams::init(&cfg, seed).expect("params");
    let layout = UNetParams::layout(&cfg);
    let mut rng = Rng::new(seed ^ 0xB7);
    for (info, t) in layout.iter().zip(p.tensors_mut()) {
        if info.kind != Kind::RunningStat {
            continue;
        }
        let var = info.name.ends_with("running_var");
        for v in t.iter_mut() {
            *v = if var {
                (0.5 + rng.uniform()) as f32
            } else {
                (0.2 * rng.normal()) as f32
            };
        }
    }
    p
}

fn image(n: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let data = (0..n * h * w)
        .map(|i| {
            let (y, x) = ((i / w) % h, i % w);
            let r2 = (y as f64 - h as f64 / 2.0).powi(2) + (x as f64 - w as f64 / 2.0).powi(2);
            ((-r2 / 40.0).exp() + 0.1 * rng.normal()) as f32
        })
        .collect();
    Tensor::from_nhwc(n, h, w, 1, data).expect("image")
}

fn argmax(t: &Tensor, px: usize) -> usize {
    let k = t.c;
    let row = &t.data[px * k..(px + 1) * k];
    (0..k)
        .max_by(|a, b| row[*a].total_cmp(&row[*b]))
        .unwrap_or(0)
}

#[test]
fn inference_matches_cpu_f32() {
    let s = need_sim!();
    let p = params(5);
    let names: Vec<String> = UNetParams::layout(&p.cfg)
        .iter()
        .filter(|i| i.kind == Kind::RunningStat)
        .map(|i| i.name.clone())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("running_var")),
        "running variances are named *.running_var: {names:?}"
    );
    let mut cpu = CpuBackend::new(1).expect("cpu");
    cpu.load_inference(&p).expect("cpu weights");
    let wts = InferWeights::new(s, &p).expect("simulated weights");
    let mut arena = Arena::default();
    for (n, h, w) in [(1, 16, 16), (3, 16, 32)] {
        let x = image(n, h, w, 9 + n as u64);
        let want = cpu.infer(&x).expect("cpu inference");
        let bufs = arena.get(s, &p.cfg, n, h, w).expect("buffers");
        bufs.upload_input(s, &x.data).expect("upload");
        let t0 = std::time::Instant::now();
        enqueue_forward(s, &wts, bufs).expect("simulated forward");
        let got = bufs.download_logits(s, p.cfg.classes).expect("logits");
        assert_eq!(
            (got.n, got.h, got.w, got.c),
            (want.n, want.h, want.w, want.c)
        );
        let lmax = want.data.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let lerr = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let pixels = n * h * w;
        let same = (0..pixels)
            .filter(|&i| argmax(&got, i) == argmax(&want, i))
            .count();
        println!(
            "{n}x{h}x{w}: simulated forward {:.2} s; max |err| {lerr:.2e} of max |logit| {lmax:.3}; labels agree on {same}/{pixels}",
            t0.elapsed().as_secs_f64()
        );
        assert!(lerr <= 1e-2 * lmax, "{n}x{h}x{w}: logits differ by {lerr}");
        assert!(
            same * 100 >= pixels * 99,
            "{n}x{h}x{w}: labels agree on only {same} of {pixels} pixels"
        );
    }
}
