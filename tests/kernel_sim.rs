//! The CUDA kernels, run on the CPU through `kernels/sim/cuda_sim.h` (the same `.cu` sources,
//! compiled by the system C++ compiler), compared with the CPU backend on odd shapes: sizes that
//! are not tile multiples, channel counts that are not multiples of 8 (scalar load path) and
//! that are (vector path), channel slices of wider buffers (concatenation without copies).
//!
//! Inputs are rounded to fp16 before both sides see them, so differences come only from the
//! kernels' fp16 outputs and fp32 accumulation order. Tolerances (per value):
//! - fp16 outputs: |got - want| <= 2e-3 |want| + 2e-3 max|want| (fp16 has an 11-bit mantissa:
//!   rounding alone is up to 4.9e-4 relative; the rest covers fp32 summation order);
//! - fp32 gradient sums (weight/bias gradients): 1e-4 |want| + 1e-4 max|want|;
//! - exact where the kernel only moves values (max-pool, indices, packing).
//!
//! Skips (prints "skipped: ...") when no C++ compiler is installed.

use cineseg::nn::cpu::{batchnorm, conv3x3, head, pool, upconv};
use cineseg::nn::loss::{loss_and_grad, Target};
use cineseg::nn::params::BatchNorm;
use cineseg::nn::rng::Rng;
use cineseg::nn::Tensor;
use half::f16;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn kernels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels")
}

/// Builds the simulator driver once per test binary; Err says why it cannot be built.
fn driver() -> Result<&'static Path, String> {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    EXE.get_or_init(|| {
        let cxx = std::env::var("CXX")
            .ok()
            .into_iter()
            .chain(["g++".to_string(), "clang++".to_string()])
            .find(|c| {
                Command::new(c)
                    .arg("--version")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            });
        let cxx = cxx.ok_or("no C++ compiler (CXX, g++, clang++)")?;
        let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cineseg_kernel_sim");
        let out = Command::new(&cxx)
            .args(["-std=c++17", "-O2", "-Wall", "-Wno-unused-function", "-o"])
            .arg(&exe)
            .arg(kernels_dir().join("sim").join("driver.cpp"))
            .output()
            .map_err(|e| format!("{cxx}: {e}"))?;
        if !out.status.success() {
            // A compile error in a kernel is a failure, not a skip.
            panic!(
                "kernel simulator does not compile:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(exe)
    })
    .as_ref()
    .map(|p| p.as_path())
    .map_err(|e| e.clone())
}

macro_rules! need_driver {
    () => {
        match driver() {
            Ok(d) => d,
            Err(why) => {
                println!("skipped: {why}");
                return;
            }
        }
    };
}

/// Outputs of one driver run.
struct Out(tempfile::TempDir);

impl Out {
    fn f32(&self, name: &str) -> Vec<f32> {
        let b =
            std::fs::read(self.0.path().join(format!("out_{name}.bin"))).expect("driver output");
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
    fn f64(&self, name: &str) -> Vec<f64> {
        let b =
            std::fs::read(self.0.path().join(format!("out_{name}.bin"))).expect("driver output");
        b.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }
}

fn run(exe: &Path, op: &str, args: &[(&str, f64)], inputs: &[(&str, &[f32])]) -> Out {
    let dir = tempfile::tempdir().expect("temp dir");
    let text: String = args.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    std::fs::write(dir.path().join("args.txt"), text).expect("args");
    for (name, data) in inputs {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join(format!("{name}.bin")), bytes).expect("input");
    }
    let o = Command::new(exe)
        .arg(op)
        .arg(dir.path())
        .output()
        .expect("run driver");
    assert!(
        o.status.success(),
        "driver {op} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Out(dir)
}

fn h(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

fn rand_f16(rng: &mut Rng, n: usize, scale: f64) -> Vec<f32> {
    (0..n).map(|_| h((rng.normal() * scale) as f32)).collect()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |a, b| a.max(b.abs()))
}

fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32, abs_of_max: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let atol = abs_of_max * max_abs(want).max(1e-30);
    let mut worst = (0usize, 0.0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let tol = rel * w.abs() + atol;
        assert!(
            err <= tol,
            "{what}: index {i}: got {g}, want {w} (tolerance {tol})"
        );
        if err > worst.1 {
            worst = (i, err);
        }
    }
    println!(
        "{what}: {} values, max error {:.3e} at {} (max |want| {:.3e})",
        want.len(),
        worst.1,
        worst.0,
        max_abs(want)
    );
}

const F16_REL: f32 = 2e-3;
const F32_SUM_REL: f32 = 1e-4;

/// A slice of `c` channels at offset 0 of rows `ld` wide (the other channels are noise, to
/// catch a kernel that reads outside its slice).
fn embed(rng: &mut Rng, dense: &[f32], c: usize, ld: usize) -> Vec<f32> {
    let rows = dense.len() / c;
    let mut out = rand_f16(rng, rows * ld, 3.0);
    for r in 0..rows {
        out[r * ld..r * ld + c].copy_from_slice(&dense[r * c..(r + 1) * c]);
    }
    out
}

/// (n, h, w, cin, cout, ldx): odd sizes, channel counts on both load paths, tiles partly filled.
const CONV_SHAPES: &[(usize, usize, usize, usize, usize, usize)] = &[
    (2, 5, 7, 3, 11, 3),
    (1, 9, 6, 16, 24, 16),
    (1, 4, 6, 13, 70, 20),
    (3, 6, 5, 8, 8, 24),
    (1, 3, 3, 1, 5, 1),
];

#[test]
fn conv3x3_forward_both_epilogues() {
    let exe = need_driver!();
    let mut rng = Rng::new(1);
    for &(n, hh, ww, cin, cout, ldx) in CONV_SHAPES {
        let x = rand_f16(&mut rng, n * hh * ww * cin, 1.0);
        let w = rand_f16(&mut rng, cout * cin * 9, (2.0 / (9 * cin) as f64).sqrt());
        let b = rand_f16(&mut rng, cout, 0.3);
        let xt = Tensor::from_nhwc(n, hh, ww, cin, x.clone()).expect("x");
        let xs = embed(&mut rng, &x, cin, ldx);
        let packed = conv3x3::pack(&w, cin, cout);
        for (relu, bias, stats) in [(0, 0, 1), (1, 1, 0)] {
            let ldy = cout + 3;
            let args = [
                ("n", n as f64),
                ("h", hh as f64),
                ("w", ww as f64),
                ("cin", cin as f64),
                ("cout", cout as f64),
                ("ldx", ldx as f64),
                ("ldy", ldy as f64),
                ("relu", relu as f64),
                ("bias", bias as f64),
                ("stats", stats as f64),
            ];
            let o = run(exe, "conv_fwd", &args, &[("x", &xs), ("w", &w), ("b", &b)]);
            let epi = if bias == 1 {
                conv3x3::Epilogue::BiasRelu(&b)
            } else {
                conv3x3::Epilogue::None
            };
            let want = conv3x3::forward(&xt, &packed, cout, epi, 1);
            let y = o.f32("y");
            let got: Vec<f32> = y
                .chunks_exact(ldy)
                .flat_map(|r| r[..cout].to_vec())
                .collect();
            assert!(
                y.chunks_exact(ldy)
                    .all(|r| r[cout..].iter().all(|v| *v == 0.0)),
                "wrote outside its channel slice"
            );
            assert_close(
                &format!("conv fwd {n}x{hh}x{ww} {cin}->{cout} relu {relu}"),
                &got,
                &want.data,
                F16_REL,
                F16_REL,
            );
            if stats == 1 {
                let st = o.f64("stats");
                for co in 0..cout {
                    let s: f64 = got.iter().skip(co).step_by(cout).map(|v| *v as f64).sum();
                    let q: f64 = got
                        .iter()
                        .skip(co)
                        .step_by(cout)
                        .map(|v| (*v as f64).powi(2))
                        .sum();
                    assert!(
                        (st[co] - s).abs() <= 1e-4 * (1.0 + s.abs()),
                        "sum ch {co}: {} vs {s}",
                        st[co]
                    );
                    assert!(
                        (st[cout + co] - q).abs() <= 1e-4 * (1.0 + q),
                        "sumsq ch {co}: {} vs {q}",
                        st[cout + co]
                    );
                }
            }
            // The dgrad packing produced on the way must equal the CPU's exactly.
            let want_dg: Vec<f32> =
                conv3x3::pack(&conv3x3::flip_for_dgrad(&w, cin, cout), cout, cin);
            assert_eq!(o.f32("wdgrad"), want_dg, "conv3x3_pack dgrad layout");
        }
    }
}

#[test]
fn conv3x3_data_gradient() {
    let exe = need_driver!();
    let mut rng = Rng::new(2);
    for &(n, hh, ww, cin, cout, _) in CONV_SHAPES {
        let dy = rand_f16(&mut rng, n * hh * ww * cout, 1.0);
        let w = rand_f16(&mut rng, cout * cin * 9, 0.2);
        let args = [
            ("n", n as f64),
            ("h", hh as f64),
            ("w", ww as f64),
            ("cin", cin as f64),
            ("cout", cout as f64),
        ];
        let o = run(exe, "conv_dgrad", &args, &[("dy", &dy), ("w", &w)]);
        let dyt = Tensor::from_nhwc(n, hh, ww, cout, dy).expect("dy");
        let want = conv3x3::backward_data(&dyt, &conv3x3::ConvWeights::for_dgrad(&w, cin, cout), 1);
        assert_close(
            &format!("conv dgrad {n}x{hh}x{ww} {cin}<-{cout}"),
            &o.f32("dx"),
            &want.data,
            F16_REL,
            F16_REL,
        );
    }
}

#[test]
fn conv3x3_weight_gradient() {
    let exe = need_driver!();
    let mut rng = Rng::new(3);
    for (i, &(n, hh, ww, cin, cout, ldx)) in CONV_SHAPES.iter().enumerate() {
        let x = rand_f16(&mut rng, n * hh * ww * cin, 1.0);
        let dy = rand_f16(&mut rng, n * hh * ww * cout, 1.0);
        let xs = embed(&mut rng, &x, cin, ldx);
        let splits = 1 + i % 3;
        let args = [
            ("n", n as f64),
            ("h", hh as f64),
            ("w", ww as f64),
            ("cin", cin as f64),
            ("cout", cout as f64),
            ("ldx", ldx as f64),
            ("splits", splits as f64),
        ];
        let o = run(exe, "conv_wgrad", &args, &[("x", &xs), ("dy", &dy)]);
        let xt = Tensor::from_nhwc(n, hh, ww, cin, x).expect("x");
        let dyt = Tensor::from_nhwc(n, hh, ww, cout, dy).expect("dy");
        let mut want = vec![0.0; cout * cin * 9];
        conv3x3::unpack_add(
            &conv3x3::backward_weights(&xt, &dyt, 1),
            cin,
            cout,
            &mut want,
        );
        assert_close(
            &format!("conv wgrad {n}x{hh}x{ww} {cin}->{cout} splits {splits}"),
            &o.f32("dw"),
            &want,
            F32_SUM_REL,
            F32_SUM_REL,
        );
    }
}

#[test]
fn maxpool_forward_backward_with_skip_gradient() {
    let exe = need_driver!();
    let mut rng = Rng::new(4);
    for &(n, hh, ww, c, ldx, add) in &[
        (2usize, 6usize, 10usize, 3usize, 3usize, 0),
        (1, 8, 4, 13, 26, 1),
        (2, 7, 5, 8, 16, 1),
    ] {
        let x = rand_f16(&mut rng, n * hh * ww * c, 1.0);
        let xs = embed(&mut rng, &x, c, ldx);
        let (ho, wo) = (hh / 2, ww / 2);
        let dout = rand_f16(&mut rng, n * ho * wo * c, 1.0);
        let skip = rand_f16(&mut rng, n * hh * ww * ldx, 1.0);
        let args = [
            ("n", n as f64),
            ("h", hh as f64),
            ("w", ww as f64),
            ("c", c as f64),
            ("ldx", ldx as f64),
            ("add", add as f64),
        ];
        let o = run(
            exe,
            "pool",
            &args,
            &[("x", &xs), ("dout", &dout), ("skip", &skip)],
        );
        // The CPU pool needs even sizes: compare on the even part (odd edges are ignored by both).
        let (he, we) = (2 * ho, 2 * wo);
        let mut xe = Tensor::zeros(n, he, we, c);
        for b in 0..n {
            for y in 0..he {
                for xx in 0..we {
                    let s = ((b * hh + y) * ww + xx) * c;
                    let d = ((b * he + y) * we + xx) * c;
                    xe.data[d..d + c].copy_from_slice(&x[s..s + c]);
                }
            }
        }
        let (want_y, want_idx) = pool::forward(&xe);
        assert_eq!(o.f32("y"), want_y.data, "pool forward values");
        let idx: Vec<u8> = o.f32("idx").iter().map(|v| *v as u8).collect();
        assert_eq!(idx, want_idx, "pool indices");
        let dt = Tensor::from_nhwc(n, ho, wo, c, dout.clone()).expect("dout");
        let dxe = pool::backward(&dt, &want_idx, he, we);
        let dx = o.f32("dx");
        for b in 0..n {
            for y in 0..hh {
                for xx in 0..ww {
                    for ch in 0..c {
                        let routed = if y < he && xx < we {
                            dxe.data[((b * he + y) * we + xx) * c + ch]
                        } else {
                            0.0
                        };
                        let p = (b * hh + y) * ww + xx;
                        let want = if add == 1 {
                            h(routed + skip[p * ldx + ch])
                        } else {
                            routed
                        };
                        assert_eq!(
                            dx[p * c + ch],
                            want,
                            "pool backward at pixel {p} channel {ch}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn upconv_into_concat_slice_and_gradients() {
    let exe = need_driver!();
    let mut rng = Rng::new(5);
    for (i, &(n, hh, ww, cin, cout)) in [
        (1usize, 3usize, 5usize, 6usize, 3usize),
        (2, 4, 4, 16, 8),
        (1, 5, 3, 9, 13),
    ]
    .iter()
    .enumerate()
    {
        let x = rand_f16(&mut rng, n * hh * ww * cin, 1.0);
        let w = rand_f16(&mut rng, cin * cout * 4, 0.3);
        let b = rand_f16(&mut rng, cout, 0.3);
        let (offset, ld) = (5usize, 5 + cout + 2);
        let dcat = rand_f16(&mut rng, n * 4 * hh * ww * ld, 1.0);
        let splits = 1 + i;
        let args = [
            ("n", n as f64),
            ("h", hh as f64),
            ("w", ww as f64),
            ("cin", cin as f64),
            ("cout", cout as f64),
            ("ldy", ld as f64),
            ("offset", offset as f64),
            ("splits", splits as f64),
        ];
        let o = run(
            exe,
            "upconv",
            &args,
            &[("x", &x), ("w", &w), ("b", &b), ("dcat", &dcat)],
        );
        let xt = Tensor::from_nhwc(n, hh, ww, cin, x).expect("x");
        let packed = upconv::pack(&w, cin, cout);
        let mut cat = Tensor::zeros(n, 2 * hh, 2 * ww, ld);
        upconv::forward_into(&xt, &packed, &b, &mut cat, offset, 1);
        assert_close(
            &format!("upconv fwd {cin}->{cout}"),
            &o.f32("y"),
            &cat.data,
            F16_REL,
            F16_REL,
        );
        let dct = Tensor::from_nhwc(n, 2 * hh, 2 * ww, ld, dcat).expect("dcat");
        let (mut dpacked, mut dbias) = (vec![0.0; packed.len()], vec![0.0; cout]);
        let dx = upconv::backward(&xt, &packed, &dct, offset, &mut dpacked, &mut dbias, 1);
        let mut dw = vec![0.0; w.len()];
        upconv::unpack_add(&dpacked, cin, cout, &mut dw);
        assert_close("upconv dx", &o.f32("dx"), &dx.data, F16_REL, F16_REL);
        assert_close("upconv dw", &o.f32("dw"), &dw, F32_SUM_REL, F32_SUM_REL);
        assert_close(
            "upconv dbias",
            &o.f32("db"),
            &dbias,
            F32_SUM_REL,
            F32_SUM_REL,
        );
    }
}

#[test]
fn batchnorm_relu_forward_backward() {
    let exe = need_driver!();
    let mut rng = Rng::new(6);
    for &(n, hh, ww, c) in &[(2usize, 5usize, 3usize, 7usize), (1, 8, 8, 40)] {
        let rows = n * hh * ww;
        let z: Vec<f32> = (0..rows * c)
            .map(|i| h((rng.normal() * 2.0 + (i % c) as f64 * 0.1) as f32))
            .collect();
        let mut bn = BatchNorm {
            weight: rand_f16(&mut rng, c, 1.0),
            bias: rand_f16(&mut rng, c, 0.5),
            running_mean: rand_f16(&mut rng, c, 0.1),
            running_var: (0..c).map(|_| 1.0 + rng.uniform() as f32).collect(),
        };
        let dy = rand_f16(&mut rng, rows * c, 1.0);
        let ldy = c + 1;
        let args = [("rows", rows as f64), ("c", c as f64), ("ldy", ldy as f64)];
        let o = run(
            exe,
            "bn",
            &args,
            &[
                ("z", &z),
                ("gamma", &bn.weight),
                ("beta", &bn.bias),
                ("rmean", &bn.running_mean),
                ("rvar", &bn.running_var),
                ("dy", &dy),
            ],
        );
        let zt = Tensor::from_nhwc(n, hh, ww, c, z).expect("z");
        let (y, cache) = batchnorm::forward_train(&zt, &mut bn, 1);
        let got_y: Vec<f32> = o
            .f32("y")
            .chunks_exact(ldy)
            .flat_map(|r| r[..c].to_vec())
            .collect();
        assert_close("bn y", &got_y, &y.data, F16_REL, F16_REL);
        assert_close(
            "bn running mean",
            &o.f32("rmean"),
            &bn.running_mean,
            1e-5,
            1e-5,
        );
        assert_close(
            "bn running var",
            &o.f32("rvar"),
            &bn.running_var,
            1e-5,
            1e-5,
        );
        // Backward from the GPU's own y (ReLU mask from the same rounded values).
        let yt = Tensor::from_nhwc(n, hh, ww, c, got_y).expect("y");
        let dyt = Tensor::from_nhwc(n, hh, ww, c, dy).expect("dy");
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        let dx = batchnorm::backward(&dyt, &zt, &yt, &bn.weight, &cache, &mut dg, &mut db, 1);
        assert_close("bn dx", &o.f32("dx"), &dx.data, 5e-3, 5e-3);
        assert_close("bn dgamma", &o.f32("dgamma"), &dg, 1e-3, 1e-3);
        assert_close("bn dbeta", &o.f32("dbeta"), &db, 1e-3, 1e-3);
    }
}

#[test]
fn fused_loss_full_and_marginal() {
    let exe = need_driver!();
    let mut rng = Rng::new(7);
    for &(n, hh, ww, k, partial) in &[
        (2usize, 5usize, 7usize, 4usize, false),
        (3, 4, 6, 4, true),
        (2, 3, 3, 3, true),
    ] {
        let hw = hh * ww;
        let logits: Vec<f32> = (0..n * hw * k)
            .map(|_| (rng.normal() * 2.0) as f32)
            .collect();
        let labelled: Vec<Vec<bool>> = (0..n)
            .map(|s| {
                (0..k)
                    .map(|c| !partial || c == 0 || (c + s) % 3 != 0)
                    .collect()
            })
            .collect();
        let labels: Vec<u8> = (0..n * hw).map(|_| rng.below(k) as u8).collect();
        let scale = 1024.0f32;
        let lab_f: Vec<f32> = labels.iter().map(|v| *v as f32).collect();
        let lbd_f: Vec<f32> = labelled
            .iter()
            .flatten()
            .map(|b| if *b { 1.0 } else { 0.0 })
            .collect();
        let args = [
            ("n", n as f64),
            ("hw", hw as f64),
            ("k", k as f64),
            ("scale", scale as f64),
        ];
        let o = run(
            exe,
            "loss",
            &args,
            &[
                ("logits", &logits),
                ("labels", &lab_f),
                ("labelled", &lbd_f),
            ],
        );
        let target = Target { labels, labelled };
        let want = loss_and_grad(
            &Tensor::from_nhwc(n, hh, ww, k, logits).expect("logits"),
            &target,
        )
        .expect("loss");
        let out = o.f64("out");
        assert!(
            (out[0] - want.loss).abs() < 1e-5 * (1.0 + want.loss),
            "loss {} vs {}",
            out[0],
            want.loss
        );
        assert!(
            (out[1] - want.cross_entropy).abs() < 1e-5 * (1.0 + want.cross_entropy),
            "ce {} vs {}",
            out[1],
            want.cross_entropy
        );
        for c in 0..k {
            let (g, w) = (out[2 + c], want.dice[c]);
            assert!(
                g.is_nan() == w.is_nan() && (w.is_nan() || (g - w).abs() < 1e-5),
                "dice {c}: {g} vs {w}"
            );
        }
        let want_dl: Vec<f32> = want.dlogits.data.iter().map(|v| v * scale).collect();
        assert_close(
            &format!("loss dlogits partial={partial}"),
            &o.f32("dlogits"),
            &want_dl,
            1e-4,
            1e-4,
        );
    }
}

#[test]
fn head_forward_backward() {
    let exe = need_driver!();
    let mut rng = Rng::new(8);
    let (n, hh, ww, c, k, ldx) = (2usize, 5usize, 3usize, 12usize, 4usize, 20usize);
    let rows = n * hh * ww;
    let x = rand_f16(&mut rng, rows * c, 1.0);
    let xs = embed(&mut rng, &x, c, ldx);
    let w: Vec<f32> = (0..k * c).map(|_| rng.normal() as f32 * 0.3).collect();
    let b: Vec<f32> = (0..k).map(|_| rng.normal() as f32).collect();
    let dl: Vec<f32> = (0..rows * k).map(|_| rng.normal() as f32).collect();
    let args = [
        ("rows", rows as f64),
        ("c", c as f64),
        ("k", k as f64),
        ("ldx", ldx as f64),
        ("splits", 3.0),
    ];
    let o = run(
        exe,
        "head",
        &args,
        &[("x", &xs), ("w", &w), ("b", &b), ("dl", &dl)],
    );
    let xt = Tensor::from_nhwc(n, hh, ww, c, x).expect("x");
    let logits = head::forward(&xt, &w, &b, 1);
    assert_close("head logits", &o.f32("logits"), &logits.data, 1e-5, 1e-5);
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; k]);
    let dx = head::backward(
        &xt,
        &w,
        &Tensor::from_nhwc(n, hh, ww, k, dl).expect("dl"),
        &mut dw,
        &mut db,
        1,
    );
    assert_close("head dx", &o.f32("dx"), &dx.data, F16_REL, F16_REL);
    assert_close("head dw", &o.f32("dw"), &dw, F32_SUM_REL, F32_SUM_REL);
    assert_close("head db", &o.f32("db"), &db, F32_SUM_REL, F32_SUM_REL);
}

/// AdamW against the update of src/train/adamw.rs (same formula, f64 there, f32 here), and the
/// loss-scale logic: a clean step updates and counts, an overflowing one is skipped and halves.
#[test]
fn adamw_and_loss_scaling() {
    let exe = need_driver!();
    let mut rng = Rng::new(9);
    let len = 300;
    let p: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
    let m: Vec<f32> = (0..len).map(|_| rng.normal() as f32 * 0.01).collect();
    let v: Vec<f32> = (0..len).map(|_| rng.uniform() as f32 * 1e-4).collect();
    let scale = 4096.0f64;
    let g: Vec<f32> = (0..len)
        .map(|_| (rng.normal() * scale * 0.1) as f32)
        .collect();
    let (lr, wd, b1, b2, eps, t) = (1e-3f64, 1e-2f64, 0.9f64, 0.999f64, 1e-8f64, 3i32);
    let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    let args = [
        ("len", len as f64),
        ("beta1", b1),
        ("beta2", b2),
        ("eps", eps),
        ("decay", 1.0 - lr * wd),
        ("step_size", lr / bc1),
        ("inv_sqrt_bc2", 1.0 / bc2.sqrt()),
        ("inv_scale", 1.0 / scale),
        ("scale", scale),
        ("good", 1.0),
        ("interval", 2.0),
    ];
    let o = run(
        exe,
        "adamw",
        &args,
        &[("p", &p), ("g", &g), ("m", &m), ("v", &v)],
    );
    let mut want_p = vec![0.0f32; len];
    for i in 0..len {
        let gi = g[i] as f64 / scale;
        let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
        let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
        want_p[i] = (p[i] as f64 * (1.0 - lr * wd)
            - (lr / bc1) * mi / (vi.sqrt() / bc2.sqrt() + eps)) as f32;
    }
    assert_close("adamw p", &o.f32("p"), &want_p, 1e-5, 1e-6);
    let p16: Vec<f32> = want_p.iter().map(|v| h(*v)).collect();
    assert_close("adamw fp16 copy", &o.f32("p16"), &p16, 1e-3, 1e-6);
    assert_eq!(
        o.f32("meta"),
        vec![0.0, 2.0 * scale as f32, 0.0, 0.0],
        "clean step: interval reached, scale doubles"
    );

    let mut bad = g.clone();
    bad[17] = f32::INFINITY;
    let o = run(
        exe,
        "adamw",
        &args,
        &[("p", &p), ("g", &bad), ("m", &m), ("v", &v)],
    );
    assert_eq!(
        o.f32("p"),
        p,
        "an overflowing step must not touch the weights"
    );
    assert_eq!(o.f32("m"), m, "nor the moments");
    assert_eq!(
        o.f32("meta"),
        vec![1.0, scale as f32 / 2.0, 0.0, 0.0],
        "overflow: scale halves, counter resets, flag cleared"
    );
}
