//! Where inference time goes for the shipped model's shape (base 16, depth 4, 160 px) at the
//! daemon's batch size: run with `CINESEG_PROFILE=1 cargo run --release --example infer_profile`.
use cineseg::nn::cpu::CpuBackend;
use cineseg::nn::{Backend, Tensor, UNetConfig, UNetParams};
use std::time::Instant;
fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2);
    let p = UNetParams::init(&UNetConfig::new(16, 4), 1).expect("params");
    let mut cpu = CpuBackend::new(threads).expect("backend");
    cpu.load_inference(&p).expect("load");
    let x = Tensor::zeros(8, 160, 160, 1);
    cpu.infer(&x).expect("warm-up");
    let _ = cineseg::nn::profile::take_report();
    let reps = 10;
    let t = Instant::now();
    for _ in 0..reps {
        cpu.infer(&x).expect("infer");
    }
    let dt = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "base 16, 160 px, batch 8, {threads} threads: {:.1} img/s ({:.1} ms per image)",
        8.0 / dt,
        1000.0 * dt / 8.0
    );
    print!("{}", cineseg::nn::profile::take_report());
}
