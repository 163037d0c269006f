//! The speed benchmark (`cineseg bench`, `cargo bench`): cineseg's CPU forward and training
//! throughput next to PyTorch and ONNX Runtime run in the same session through
//! `../shared/bench/unet_ref.py`, printed as ratios, plus the fraction of the FMA peak.

use crate::nn::cpu::precision::Precision;
use crate::nn::cpu::CpuBackend;
use crate::nn::loss::Target;
use crate::nn::{Backend, NnError, Tensor, UNetConfig, UNetParams};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub cfg: UNetConfig,
    pub size: usize,
    pub threads: usize,
    pub infer_batches: Vec<usize>,
    pub train_batch: usize,
    /// Timed repeats per measurement (the median is reported).
    pub repeats: usize,
    /// Python interpreter with torch + onnxruntime, and the reference script; anchors are
    /// skipped (and the report says so) when either is missing.
    pub python: Option<PathBuf>,
    pub reference: Option<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            cfg: UNetConfig::default(),
            size: 192,
            threads: 2,
            infer_batches: vec![1, 8],
            train_batch: 8,
            repeats: 5,
            python: None,
            reference: None,
        }
    }
}

/// One measured row.
#[derive(Clone, Debug)]
pub struct Row {
    pub engine: String,
    pub mode: &'static str,
    pub batch: usize,
    pub images_per_s: f64,
}

/// Median of per-repeat throughputs: each repeat runs `f` enough times to last ~1 s.
fn measure(repeats: usize, images: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up (allocations, page faults, thread start)
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-6);
    let inner = ((1.0 / once).ceil() as usize).clamp(1, 50);
    let mut rates: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..inner {
                f();
            }
            (images * inner) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}

/// The precisions to measure: f32 always, bf16 where the processor multiplies it natively.
pub fn precisions() -> Vec<Precision> {
    let mut p = vec![Precision::F32];
    if crate::nn::cpu::bf16::native() {
        p.push(Precision::Bf16);
    }
    p
}

/// Measures cineseg's CPU backend in `precision`.
pub fn measure_cineseg(o: &BenchOptions, precision: Precision) -> Result<Vec<Row>, NnError> {
    let mut params = UNetParams::init(&o.cfg, 1)?;
    let mut cpu = CpuBackend::with_precision(o.threads, precision)?;
    let engine = format!("cineseg-{}-{precision}", crate::nn::cpu::isa::selected());
    cpu.load_inference(&params)?;
    let mut rows = Vec::new();
    for &b in &o.infer_batches {
        let x = Tensor::zeros(b, o.size, o.size, 1);
        let mut err = None;
        let r = measure(o.repeats, b, || {
            if let Err(e) = cpu.infer(&x) {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        rows.push(Row {
            engine: engine.clone(),
            mode: "infer",
            batch: b,
            images_per_s: r,
        });
    }
    let b = o.train_batch;
    let mut rng = crate::nn::rng::Rng::new(3);
    let x = Tensor {
        n: b,
        h: o.size,
        w: o.size,
        c: 1,
        data: (0..b * o.size * o.size)
            .map(|_| rng.normal() as f32)
            .collect(),
    };
    let labels = (0..b * o.size * o.size)
        .map(|_| rng.below(o.cfg.classes) as u8)
        .collect();
    let target = Target::full(labels, b, o.cfg.classes);
    let mut err = None;
    // Only the training step is attributed (`CINESEG_PROFILE=1`): inference above is reset away.
    let _ = crate::nn::profile::take_report();
    let r = measure(o.repeats.min(3), b, || {
        if let Err(e) = cpu.train_step(&mut params, &x, &target) {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let report = crate::nn::profile::take_report();
    if !report.is_empty() {
        eprintln!(
            "# time per operation over the {engine} training steps (CINESEG_PROFILE):\n{report}"
        );
    }
    rows.push(Row {
        engine,
        mode: "train",
        batch: b,
        images_per_s: r,
    });
    Ok(rows)
}

/// Runs the PyTorch and ONNX Runtime anchors; returns rows and a note on anything skipped.
pub fn measure_anchors(o: &BenchOptions) -> (Vec<Row>, Vec<String>) {
    let (Some(py), Some(script)) = (&o.python, &o.reference) else {
        return (vec![], vec!["anchors skipped: no Python venv or unet_ref.py found (bash ../shared/bench/setup-venv.sh)".into()]);
    };
    let batches = o
        .infer_batches
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let common = |cmd: &str| {
        let mut c = Command::new(py);
        c.arg(script).arg(cmd).args([
            "--size",
            &o.size.to_string(),
            "--threads",
            &o.threads.to_string(),
        ]);
        c.args([
            "--base",
            &o.cfg.base.to_string(),
            "--depth",
            &o.cfg.depth.to_string(),
        ]);
        c
    };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    // PyTorch: train batch included in the batch list so one run gives both.
    let mut all = o.infer_batches.clone();
    if !all.contains(&o.train_batch) {
        all.push(o.train_batch);
    }
    let pt_batches = all
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    // Every CPU mode the reference offers: the fastest is what a user here would pick instead.
    match common("bench")
        .args(["--batch", &pt_batches, "--modes", "fp32,fp32-cl,bf16-cl"])
        .output()
    {
        Ok(out) if out.status.success() => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() >= 5 && f[0] == "pytorch" {
                    let engine = format!("pytorch-{}", f[1]);
                    if let (Ok(b), Ok(inf), Ok(tr)) = (
                        f[2].parse::<usize>(),
                        f[3].parse::<f64>(),
                        f[4].parse::<f64>(),
                    ) {
                        if o.infer_batches.contains(&b) {
                            rows.push(Row {
                                engine: engine.clone(),
                                mode: "infer",
                                batch: b,
                                images_per_s: inf,
                            });
                        }
                        if b == o.train_batch {
                            rows.push(Row {
                                engine: engine.clone(),
                                mode: "train",
                                batch: b,
                                images_per_s: tr,
                            });
                        }
                    }
                }
            }
        }
        Ok(out) => notes.push(format!(
            "pytorch anchor failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => notes.push(format!("pytorch anchor not run: {e}")),
    }
    match common("bench-ort").args(["--batch", &batches]).output() {
        Ok(out) if out.status.success() => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() == 3 && f[0] == "onnxruntime-cpu" {
                    if let (Ok(b), Ok(r)) = (f[1].parse::<usize>(), f[2].parse::<f64>()) {
                        rows.push(Row {
                            engine: "onnxruntime".into(),
                            mode: "infer",
                            batch: b,
                            images_per_s: r,
                        });
                    }
                }
            }
        }
        Ok(out) => notes.push(format!(
            "onnxruntime anchor failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => notes.push(format!("onnxruntime anchor not run: {e}")),
    }
    (rows, notes)
}

/// Nominal f32 FMA peak in GFLOP/s: 2 FMA units x 8 lanes (16 with AVX-512) x 2 flops per
/// cycle per core; the clock is the highest `cpu MHz` in /proc/cpuinfo.
pub fn fma_peak_gflops(threads: usize) -> Option<f64> {
    let lanes = if crate::nn::cpu::isa::CpuInfo::get()
        .features
        .contains(&"avx512f")
    {
        16.0
    } else {
        8.0
    };
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz = info
        .lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .fold(0.0, f64::max);
    (mhz > 0.0).then(|| mhz / 1000.0 * 4.0 * lanes * threads as f64)
}

/// Measured FMA peak in GFLOP/s: the best of a few 1024^3 GEMMs in `precision` on `threads`
/// threads (the `gemm` crate for f32, cineseg's kernel for bf16). The nominal figure from
/// /proc/cpuinfo is the base clock; boost clocks make real code beat it, so ratios are given
/// against this measured ceiling.
pub fn measured_gemm_peak(threads: usize, precision: Precision) -> f64 {
    use crate::nn::gemm::{gemm_in, MatRef, Par};
    let n = 1024;
    let a = vec![0.5f32; n * n];
    let b = vec![0.25f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(p) => p,
        Err(_) => return f64::NAN,
    };
    pool.install(|| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                gemm_in(
                    precision,
                    MatRef::row_major(&a, n, n),
                    MatRef::row_major(&b, n, n),
                    &mut c,
                    n,
                    false,
                    Par::Threads(threads),
                );
                2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    })
}

/// Finds the anchors beside a checkout: `../shared-venv/bin/python`, `../shared/bench/unet_ref.py`.
pub fn default_anchor_paths(root: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let py = root.join("../shared-venv/bin/python");
    let script = root.join("../shared/bench/unet_ref.py");
    (
        py.is_file().then_some(py),
        script.is_file().then_some(script),
    )
}

/// Runs everything and returns the printed report.
pub fn run(o: &BenchOptions) -> Result<String, NnError> {
    let mut ours = Vec::new();
    for p in precisions() {
        ours.extend(measure_cineseg(o, p)?);
    }
    let (anchors, notes) = measure_anchors(o);
    let gflop = o.cfg.forward_flops(o.size, o.size) / 1e9;
    let nominal = fma_peak_gflops(o.threads);
    let measured = measured_gemm_peak(o.threads, Precision::F32);
    let measured_bf16 =
        crate::nn::cpu::bf16::native().then(|| measured_gemm_peak(o.threads, Precision::Bf16));
    let peak = Some(measured)
        .filter(|m| m.is_finite() && *m > 0.0)
        .or(nominal);
    let path = crate::nn::cpu::isa::selected();
    let mut s = format!(
        "# CPU: {}\n# U-Net base {} depth {}, {}x{}, {} threads: {:.2} GFLOP/image forward as direct convolution (~3x for a training step)\n",
        crate::nn::cpu::isa::CpuInfo::get().describe(path),
        o.cfg.base, o.cfg.depth, o.size, o.size, o.threads, gflop
    );
    if let Some(p) = nominal {
        s += &format!(
            "# nominal f32 FMA peak of {} cores at the base clock: {:.0} GFLOP/s\n",
            o.threads, p
        );
    }
    s += &format!(
        "# measured peak (best 1024^3 f32 GEMM, {} threads): {:.0} GFLOP/s = the % peak column\n",
        o.threads, measured
    );
    if crate::nn::cpu::bf16::native() {
        s += &format!(
            "# bf16: native (AVX512-BF16); its multiply rate is {:.2}x the f32 FMA rate on one core, so --precision auto picks {}\n",
            crate::nn::cpu::bf16::calibrate::speedup_over_f32(),
            crate::nn::cpu::precision::PrecisionChoice::Auto
                .resolve()
                .unwrap_or(Precision::F32)
        );
    }
    if let Some(b) = measured_bf16 {
        s += &format!(
            "# measured bf16 peak (best 1024^3 bf16 GEMM, cineseg's AVX512-BF16 kernel): {b:.0} GFLOP/s = % peak of the bf16 rows; bf16-cl anchors use the f32 figure\n"
        );
    }
    s += "# GFLOP/s counts direct-convolution FLOPs; cineseg's Winograd convolutions do fewer, so it can exceed the peak\n";
    s += &format!(
        "{:<22} {:<6} {:>5} {:>10} {:>9} {:>10} {:>12}  {}\n",
        "engine", "mode", "batch", "img/s", "GFLOP/s", "% peak", "vs fastest", "fastest anchor"
    );
    // The fastest anchor of this machine for a mode and batch.
    let fastest = |m: &str, b: usize| {
        anchors
            .iter()
            .filter(|r| r.mode == m && r.batch == b)
            .max_by(|x, y| x.images_per_s.total_cmp(&y.images_per_s))
    };
    for r in ours.iter().chain(anchors.iter()) {
        let gf = r.images_per_s * gflop * if r.mode == "train" { 3.0 } else { 1.0 };
        let row_peak = if r.engine.ends_with("-bf16") {
            measured_bf16.or(peak)
        } else {
            peak
        };
        let pct = row_peak
            .map(|p| format!("{:.0}%", 100.0 * gf / p))
            .unwrap_or_else(|| "-".into());
        let ratio = |x: Option<f64>| {
            x.map(|a| format!("{:.2}x", r.images_per_s / a))
                .unwrap_or_else(|| "-".into())
        };
        let (vs, which) = match (r.engine.starts_with("cineseg"), fastest(r.mode, r.batch)) {
            (true, Some(f)) => (ratio(Some(f.images_per_s)), f.engine.clone()),
            _ => ("-".into(), String::new()),
        };
        s += &format!(
            "{:<22} {:<6} {:>5} {:>10.2} {:>9.1} {:>10} {:>12}  {}\n",
            r.engine, r.mode, r.batch, r.images_per_s, gf, pct, vs, which
        );
    }
    for n in notes {
        s += &format!("# {n}\n");
    }
    Ok(s)
}
