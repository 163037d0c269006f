//! The CUDA backend's training step run on the CPU: the real launch code
//! (src/nn/cuda/launch.rs) and training composition (src/nn/cuda/train/) drive the kernel
//! simulator (kernels/sim/lib.cpp, loaded as a shared library), with host memory standing in
//! for device memory. So the order of the ~150 launches, every buffer offset, channel slice and
//! argument list of a GPU training step is checked here without a GPU; the simulator also
//! checks each launch's arguments against the kernel's C++ signature.
//!
//! Compared with the CPU backend (f32) on a small U-Net (base 8, depth 2, 2 x 16 x 16, one
//! sample with partial labels). Tolerances, from fp16 activations and activation gradients:
//! - loss: relative 2e-3; logits: |err| <= 1e-2 * max|logit|;
//! - every trained tensor's gradient: relative L2 error ||g - g_cpu|| / ||g_cpu|| <= 0.12 and
//!   cosine similarity >= 0.993; all gradients together: relative L2 <= 0.08 (4.4e-2 measured). The error grows
//!   with depth into the backward pass (head 2e-3, last decoder 1e-2, encoder 4-7e-2 measured
//!   here), fp16 rounding amplified by each BatchNorm backward, most at the bottleneck where a
//!   channel's statistics come from only 2 x 4 x 4 = 32 values; a wiring error (a missing skip
//!   gradient, a wrong slice) gives cosines far below 0.99. That this is rounding and not a bug
//!   is shown by `fp16_gradient_differences_are_rounding`: the f32 CPU step rounded to fp16
//!   where the CUDA backend stores values reproduces each difference, and the simulator is
//!   ~40x closer to it than to f32;
//! - running statistics: |err| <= 2e-3 (1 + |value|).
//!
//! Skips (prints "skipped: ...") when no C++ compiler is installed.
#![cfg(feature = "gpu")]

mod compare_support;
#[macro_use]
mod sim_support;
use compare_support::{flat, rel_l2};

use cineseg::nn::cpu::numerics::{Numerics, Storage};
use cineseg::nn::cpu::precision::Precision;
use cineseg::nn::cpu::CpuBackend;
use cineseg::nn::cuda::train::{AdamWConfig, GpuTrainer};
use cineseg::nn::loss::Target;
use cineseg::nn::params::Kind;
use cineseg::nn::rng::Rng;
use cineseg::nn::{Backend, Tensor, UNetConfig, UNetParams};
use sim_support::sim;

fn setup(seed: u64) -> (UNetParams, Tensor, Target) {
    let cfg = UNetConfig::new(8, 2);
    let p = UNetParams::init(&cfg, seed).expect("params");
    let (n, h, w) = (2usize, 16usize, 16usize);
    let mut rng = Rng::new(seed + 1);
    let mut labels = Vec::with_capacity(n * h * w);
    let mut img = Vec::with_capacity(n * h * w);
    for s in 0..n {
        for y in 0..h {
            for x in 0..w {
                let r2 = (y as f64 - 7.5 - s as f64).powi(2) + (x as f64 - 8.0).powi(2);
                let l: u8 = if r2 < 9.0 {
                    3
                } else if r2 < 25.0 {
                    2
                } else if x < 3 {
                    1
                } else {
                    0
                };
                labels.push(l);
                img.push((0.25 * l as f64 + 0.1 * rng.normal()) as f32);
            }
        }
    }
    let x = Tensor::from_nhwc(n, h, w, 1, img).expect("x");
    // Sample 1 has no RV drawn (class 1): the marginal loss.
    let labels: Vec<u8> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| if i >= h * w && *l == 1 { 0 } else { *l })
        .collect();
    let target = Target {
        labels,
        labelled: vec![vec![true; 4], vec![true, false, true, true]],
    };
    (p, x, target)
}

const GRAD_REL_L2: f64 = 0.12;
const GRAD_COS: f64 = 0.993;
const GRAD_REL_L2_ALL: f64 = 0.08;

#[test]
fn training_step_matches_cpu() {
    let s = need_sim!();
    let (p0, x, target) = setup(21);
    let mut p_cpu = p0.clone();
    let want = CpuBackend::new(1)
        .expect("cpu")
        .train_step(&mut p_cpu, &x, &target)
        .expect("cpu step");
    let mut p_gpu = p0.clone();
    let mut t = GpuTrainer::new(s, &p0.cfg).expect("trainer");
    let t0 = std::time::Instant::now();
    let got = t.step(s, &mut p_gpu, &x, &target).expect("simulated step");
    println!(
        "simulated step: {:.1} s, loss {} (cpu {}), loss scale {}",
        t0.elapsed().as_secs_f64(),
        got.loss,
        want.loss,
        t.scale.scale
    );
    assert!(
        (got.loss - want.loss).abs() <= 2e-3 * want.loss.abs(),
        "loss {} vs {}",
        got.loss,
        want.loss
    );
    assert!((got.cross_entropy - want.cross_entropy).abs() <= 2e-3 * want.cross_entropy.abs());
    for (c, (g, w)) in got.dice.iter().zip(&want.dice).enumerate() {
        assert!(
            g.is_nan() == w.is_nan() && (w.is_nan() || (g - w).abs() < 5e-3),
            "dice {c}: {g} vs {w}"
        );
    }
    let lmax = want.logits.data.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let lerr = got
        .logits
        .data
        .iter()
        .zip(&want.logits.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("logits: max |err| {lerr:.2e} of max |logit| {lmax:.3}");
    assert!(lerr <= 1e-2 * lmax, "logits differ by {lerr}");
    let layout = UNetParams::layout(&p0.cfg);
    let mut bad = Vec::new();
    for ((info, g), w) in layout
        .iter()
        .zip(got.grads.tensors())
        .zip(want.grads.tensors())
    {
        if info.kind == Kind::RunningStat {
            assert!(
                g.iter().all(|v| *v == 0.0),
                "{}: running-stat gradient must be zero",
                info.name
            );
            continue;
        }
        let (rel, cos) = rel_l2(g, w);
        println!("{:<22} rel L2 {rel:.2e} cos {cos:.6}", info.name);
        if rel > GRAD_REL_L2 || cos < GRAD_COS {
            bad.push(format!("{}: rel L2 {rel:.3e}, cos {cos:.6}", info.name));
        }
    }
    assert!(bad.is_empty(), "gradients out of tolerance: {bad:#?}");
    let (all, _) = rel_l2(&flat(&got.grads), &flat(&want.grads));
    println!("all gradients: rel L2 {all:.2e}");
    assert!(
        all <= GRAD_REL_L2_ALL,
        "all gradients: relative L2 error {all}"
    );
    for ((info, g), w) in layout.iter().zip(p_gpu.tensors()).zip(p_cpu.tensors()) {
        for (a, b) in g.iter().zip(w.iter()) {
            let tol = if info.kind == Kind::RunningStat {
                2e-3 * (1.0 + b.abs())
            } else {
                0.0
            };
            assert!(
                (a - b).abs() <= tol,
                "{}: {a} vs {b} (the step must change only running statistics)",
                info.name
            );
        }
    }
}

/// The device-resident AdamW step equals src/train/adamw.rs applied to the same device's
/// gradients (the simulator is deterministic, so both paths see identical gradients), and an
/// overflowing step is skipped: weights unchanged, scale halved, step count unchanged.
#[test]
fn resident_adamw_matches_host_adamw_and_skips_overflow() {
    let s = need_sim!();
    let (p0, x, target) = setup(22);
    let mut t = GpuTrainer::new(s, &p0.cfg).expect("trainer");
    let mut p_host = p0.clone();
    let out = t.step(s, &mut p_host, &x, &target).expect("gradients");
    let (lr, wd) = (3e-3, 1e-2);
    let mut opt = cineseg::train::adamw::AdamW::new(&p0, lr, wd);
    let frozen = |n: &str| !n.starts_with("enc0.");
    opt.update(&mut p_host, &out.grads, &frozen);

    t.adamw_begin(
        s,
        &p0,
        AdamWConfig {
            weight_decay: wd,
            ..Default::default()
        },
    )
    .expect("begin");
    let rep = t
        .adamw_step(s, &x, &target, lr, &frozen)
        .expect("resident step");
    assert!(!rep.skipped);
    assert!(
        (rep.loss - out.loss).abs() < 1e-9,
        "same device, same loss: {} vs {}",
        rep.loss,
        out.loss
    );
    let p_dev = t.adamw_params(s).expect("params");
    for ((info, a), b) in UNetParams::layout(&p0.cfg)
        .iter()
        .zip(p_dev.tensors())
        .zip(p_host.tensors())
    {
        for (u, v) in a.iter().zip(b.iter()) {
            assert!(
                (u - v).abs() <= 1e-6 * (1.0 + v.abs()),
                "{}: device {u} vs host {v}",
                info.name
            );
        }
    }
    assert_eq!(t.adamw_steps(), 1);

    // A scale of 2^40 overflows the fp16 activation gradients: the step must be skipped.
    t.scale.scale = 2f32.powi(40);
    let before = t.adamw_params(s).expect("params");
    let rep = t
        .adamw_step(s, &x, &target, lr, &|_| true)
        .expect("overflowing step");
    assert!(rep.skipped, "a 2^40 loss scale must overflow fp16");
    assert_eq!(t.scale.scale, 2f32.powi(39));
    assert_eq!(t.adamw_steps(), 1);
    let after = t.adamw_params(s).expect("params");
    for ((info, a), b) in UNetParams::layout(&p0.cfg)
        .iter()
        .zip(after.tensors())
        .zip(before.tensors())
    {
        if info.kind != Kind::RunningStat {
            assert_eq!(
                a, b,
                "{}: a skipped step must not change weights",
                info.name
            );
        }
    }
}

/// One CPU training step with the given storage rounding: the f32 step, or the
/// reduced-precision reference of the CUDA step (weights packed to fp16, activations and
/// loss-scaled activation gradients stored as fp16, sums in f32).
fn cpu_reference_step(
    p0: &UNetParams,
    x: &Tensor,
    target: &Target,
    storage: Storage,
) -> (f64, UNetParams) {
    use cineseg::nn::cpu::unet;
    let num = Numerics {
        gemm: Precision::F32,
        storage,
    };
    let mut p = p0.clone();
    if let Storage::F16 { .. } = storage {
        for (info, t) in UNetParams::layout(&p.cfg).iter().zip(p.tensors_mut()) {
            if info.kind == Kind::Weight4d {
                for v in t.iter_mut() {
                    *v = half::f16::from_f32(*v).to_f32();
                }
            }
        }
    }
    let (logits, cache) = unet::forward_train(&mut p, x, num, 1);
    let l = cineseg::nn::loss::loss_and_grad(&logits, target).expect("loss");
    let dlogits = num.stored_grad(l.dlogits);
    (l.loss, unet::backward(&p, &cache, &dlogits, num, 1))
}

/// The 7 % question (issue 12, item 5): the deep-encoder gradients of the simulated fp16 CUDA
/// step differ from the f32 CPU step by up to 7 % (relative L2). Rounding, or a bug? The
/// reduced-precision reference rounds the f32 CPU step to fp16 where the CUDA backend stores
/// values. If rounding explains the difference, (1) the reference differs from f32 by as much
/// as the simulator does, tensor by tensor, and (2) the simulator is much closer to the
/// reference than to f32. A wiring bug would leave the simulator as far from the reference as
/// from f32.
#[test]
fn fp16_gradient_differences_are_rounding() {
    let s = need_sim!();
    let (p0, x, target) = setup(21);
    let mut t = GpuTrainer::new(s, &p0.cfg).expect("trainer");
    let loss_scale = t.scale.scale;
    let mut p_gpu = p0.clone();
    let sim = t.step(s, &mut p_gpu, &x, &target).expect("simulated step");
    let (_, f32_grads) = cpu_reference_step(&p0, &x, &target, Storage::F32);
    let (_, f16_grads) = cpu_reference_step(&p0, &x, &target, Storage::F16 { loss_scale });
    let layout = UNetParams::layout(&p0.cfg);
    println!("loss scale {loss_scale}");
    println!(
        "{:<22} {:>12} {:>12} {:>12}",
        "tensor", "sim vs f32", "f16ref vs f32", "sim vs f16ref"
    );
    let mut rows = Vec::new();
    for (((info, g), w), r) in layout
        .iter()
        .zip(sim.grads.tensors())
        .zip(f32_grads.tensors())
        .zip(f16_grads.tensors())
    {
        if info.kind == Kind::RunningStat {
            continue;
        }
        let (a, _) = rel_l2(g, w);
        let (b, _) = rel_l2(r, w);
        let (c, _) = rel_l2(g, r);
        println!("{:<22} {a:>12.2e} {b:>12.2e} {c:>12.2e}", info.name);
        rows.push((info.name.clone(), a, b, c));
    }
    let (a, _) = rel_l2(&flat(&sim.grads), &flat(&f32_grads));
    let (b, _) = rel_l2(&flat(&f16_grads), &flat(&f32_grads));
    let (c, _) = rel_l2(&flat(&sim.grads), &flat(&f16_grads));
    println!("{:<22} {a:>12.2e} {b:>12.2e} {c:>12.2e}", "all gradients");
    // Measured (2026-12-03): all gradients 4.43e-2 / 4.44e-2 / 1.04e-3; the worst tensor,
    // enc1.bn2.bias, 7.26e-2 / 7.28e-2 / 1.41e-3. Where the difference is more than 1 %, the
    // reference reproduces it within 20 % and the simulator sits 10x closer to the reference.
    for (name, a, b, c) in &rows {
        if *a >= 1e-2 {
            assert!(
                *b >= 0.8 * a && *b <= 1.25 * a,
                "{name}: fp16 rounding moves it by {b:.2e}, the simulator by {a:.2e}"
            );
            assert!(
                *c <= 0.1 * a,
                "{name}: the simulator is {c:.2e} from the fp16 reference, {a:.2e} from f32"
            );
        }
    }
    assert!(
        b >= 0.8 * a && c <= 0.1 * a,
        "all gradients: {a:.2e} / {b:.2e} / {c:.2e}"
    );
}
