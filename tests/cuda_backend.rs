//! The CUDA backend against the CPU backend, on a real GPU. Prints "skipped: no CUDA device"
//! and passes where there is none (most machines, CI). Built here and run on the GPU machine by
//! scripts/gpu-check.sh; the `#[ignore]` benchmark runs only from there.
#![cfg(feature = "cuda")]

use cineseg::nn::cpu::CpuBackend;
use cineseg::nn::cuda::CudaBackend;
use cineseg::nn::rng::Rng;
use cineseg::nn::{Backend, Tensor, UNetConfig, UNetParams};
use std::time::Instant;

fn gpu() -> Option<CudaBackend> {
    match CudaBackend::open(0) {
        Ok(b) => {
            println!("{}", b.describe());
            Some(b)
        }
        Err(why) => {
            println!("skipped: no CUDA device ({why})");
            None
        }
    }
}

/// Random weights with non-trivial BatchNorm statistics, so folding is exercised.
fn params(cfg: &UNetConfig, seed: u64) -> UNetParams {
    let mut p = UNetParams::init(cfg, seed).expect("valid config");
    let mut rng = Rng::new(seed + 1);
    for b in p.enc.iter_mut().chain(p.dec.iter_mut()) {
        for bn in [&mut b.bn1, &mut b.bn2] {
            for v in bn.running_mean.iter_mut() {
                *v = (rng.normal() * 0.1) as f32;
            }
            for v in bn.running_var.iter_mut() {
                *v = 0.5 + rng.uniform() as f32;
            }
        }
    }
    p
}

fn image(n: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::from_nhwc(n, h, w, 1, (0..n * h * w).map(|_| rng.uniform() as f32).collect()).expect("shape")
}

/// Whole-network inference: fp16 activations through ~20 layers, so the tolerance is relative
/// to the logit range (2 %), and the argmax must agree on at least 99 % of the pixels.
#[test]
fn inference_matches_cpu() {
    let Some(mut g) = gpu() else { return };
    for (base, depth, n, h, w) in [(8usize, 2usize, 2usize, 36usize, 20usize), (16, 3, 3, 48, 64), (32, 4, 1, 96, 96)] {
        let cfg = UNetConfig::new(base, depth);
        let p = params(&cfg, 7);
        let x = image(n, h, w, 3);
        let mut cpu = CpuBackend::new(0).expect("cpu");
        cpu.load_inference(&p).expect("cpu load");
        g.load_inference(&p).expect("gpu load");
        let want = cpu.infer(&x).expect("cpu infer");
        for round in 0..2 {
            // The second round replays the recorded CUDA graph.
            let got = g.infer(&x).expect("gpu infer");
            let range = want.data.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let max_err = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let agree = cineseg::nn::loss::argmax(&got).iter().zip(cineseg::nn::loss::argmax(&want)).filter(|(a, b)| **a == *b).count();
            let frac = agree as f64 / (n * h * w) as f64;
            println!("base {base} depth {depth} {n}x{h}x{w} round {round}: max |err| {max_err:.4} of range {range:.3}, argmax agreement {frac:.4}");
            assert!(max_err <= 0.02 * range.max(1.0), "logits differ by {max_err} (range {range})");
            assert!(frac >= 0.99, "argmax agreement {frac}");
        }
    }
}

/// Training on the GPU must either match the CPU or say clearly that it is not available.
#[test]
fn train_step_matches_cpu_or_reports() {
    let Some(mut g) = gpu() else { return };
    let cfg = UNetConfig::new(8, 2);
    let mut p = params(&cfg, 11);
    let x = image(2, 32, 32, 5);
    let labels: Vec<u8> = (0..2 * 32 * 32).map(|i| ((i / 7) % 4) as u8).collect();
    let target = cineseg::nn::loss::Target::full(labels, 2, 4);
    match g.train_step(&mut p.clone(), &x, &target) {
        Ok(out) => {
            let mut cpu = CpuBackend::new(0).expect("cpu");
            let want = cpu.train_step(&mut p, &x, &target).expect("cpu train");
            println!("loss gpu {} cpu {}", out.loss, want.loss);
            assert!((out.loss - want.loss).abs() < 1e-2 * want.loss.abs().max(1.0));
        }
        Err(e) => {
            let msg = e.to_string();
            println!("GPU training unavailable: {msg}");
            assert!(msg.contains("not implemented"), "unexpected error {msg}");
        }
    }
}

/// Inference throughput (run by scripts/gpu-check.sh with --ignored): base 32, depth 4,
/// 192x192, batches 1, 8, 32, 128, device-resident input (as PyTorch's benchmark does).
#[test]
#[ignore]
fn bench_inference() {
    let Some(mut g) = gpu() else { return };
    let cfg = UNetConfig::new(32, 4);
    g.load_inference(&params(&cfg, 1)).expect("load");
    let flops = cfg.forward_flops(192, 192);
    for n in [1usize, 8, 32, 128] {
        g.infer(&image(n, 192, 192, 2)).expect("warm-up");
        let iters = (256 / n).clamp(10, 100);
        g.synchronize().expect("sync");
        let t = Instant::now();
        for _ in 0..iters {
            g.infer_resident(n, 192, 192).expect("infer");
        }
        g.synchronize().expect("sync");
        let s = t.elapsed().as_secs_f64();
        let ips = (iters * n) as f64 / s;
        println!("BENCH cineseg infer batch {n}: {ips:.1} img/s, {:.1} TFLOP/s", ips * flops / 1e12);
    }
}
