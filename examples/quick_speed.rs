use cineseg::nn::cpu::CpuBackend;
use cineseg::nn::loss::Target;
use cineseg::nn::{Backend, Tensor, UNetConfig, UNetParams};
use std::time::Instant;
fn main() {
    let cfg = UNetConfig::default();
    let mut p = UNetParams::init(&cfg, 1).unwrap();
    let mut cpu = CpuBackend::new(2).unwrap();
    cpu.load_inference(&p).unwrap();
    for &b in &[1usize, 8] {
        let x = Tensor::zeros(b, 192, 192, 1);
        cpu.infer(&x).unwrap();
        let t = Instant::now();
        let reps = if b == 1 { 8 } else { 2 };
        for _ in 0..reps {
            cpu.infer(&x).unwrap();
        }
        let dt = t.elapsed().as_secs_f64() / reps as f64;
        println!("infer batch {b}: {:.2} img/s", b as f64 / dt);
    }
    let b = 8;
    let x = Tensor::zeros(b, 192, 192, 1);
    let tgt = Target::full(vec![0; b * 192 * 192], b, 4);
    cpu.train_step(&mut p, &x, &tgt).unwrap();
    let t = Instant::now();
    for _ in 0..2 {
        cpu.train_step(&mut p, &x, &tgt).unwrap();
    }
    println!(
        "train batch 8: {:.2} img/s",
        2.0 * b as f64 / t.elapsed().as_secs_f64()
    );
}
