//! Time per 3x3 convolution layer of the shipped model's shape (base 16, depth 4, 160 px,
//! batch 8), both methods, to see which layers are far from the machine's GEMM rate:
//! `cargo run --release --example layer_profile`.
use cineseg::nn::cpu::conv3x3::{ConvWeights, Epilogue, Method};
use cineseg::nn::Tensor;
use std::time::Instant;
fn main() {
    let threads = 2;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let layers = [
        (160, 1, 16),
        (160, 16, 16),
        (160, 32, 16),
        (80, 16, 32),
        (80, 32, 32),
        (80, 64, 32),
        (40, 32, 64),
        (40, 64, 64),
        (40, 128, 64),
        (20, 64, 128),
        (20, 128, 128),
        (20, 256, 128),
        (10, 128, 256),
        (10, 256, 256),
    ];
    let mut total = 0.0;
    for (hw, cin, cout) in layers {
        let x = Tensor {
            n: 8,
            h: hw,
            w: hw,
            c: cin,
            data: (0..8 * hw * hw * cin)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
                .collect(),
        };
        let w: Vec<f32> = (0..cin * cout * 9)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let bias = vec![0.1f32; cout];
        let flops = 2.0 * 9.0 * (cin * cout * hw * hw * 8) as f64;
        let mut line = format!("{hw:>3}px {cin:>3}->{cout:<3}");
        let mut best = f64::MAX;
        for m in [Method::Im2col, Method::Winograd] {
            let cw = ConvWeights::with_method(&w, cin, cout, m);
            let run = || cw.apply(&x, Epilogue::BiasRelu(&bias), threads);
            pool.install(run);
            let reps = 5;
            let t = Instant::now();
            for _ in 0..reps {
                pool.install(run);
            }
            let dt = t.elapsed().as_secs_f64() / reps as f64;
            best = best.min(dt);
            line += &format!("  {m:?} {:6.2} ms {:5.0} GF/s", dt * 1e3, flops / dt / 1e9);
        }
        total += best;
        println!("{line}");
    }
    println!(
        "sum of best per layer (decoder layers counted once): {:.1} ms per batch of 8",
        total * 1e3
    );
}
