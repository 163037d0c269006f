//! Times the parts of one CPU training step (forward, loss, backward) at the benchmark shape.
use cineseg::nn::cpu::unet;
use cineseg::nn::loss::{loss_and_grad, Target};
use cineseg::nn::{Tensor, UNetConfig, UNetParams};
use std::time::Instant;
fn main() {
    let threads = 2;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let b = 8;
    let cfg = UNetConfig::default();
    let mut p = UNetParams::init(&cfg, 1).expect("init");
    let x = Tensor {
        n: b,
        h: 192,
        w: 192,
        c: 1,
        data: vec![0.3; b * 192 * 192],
    };
    let t = Target::full(vec![1; b * 192 * 192], b, 4);
    pool.install(|| {
        for _ in 0..3 {
            let t0 = Instant::now();
            let (logits, cache) = unet::forward_train(
                &mut p,
                &x,
                cineseg::nn::cpu::precision::selected().into(),
                threads,
            );
            let t1 = Instant::now();
            let l = loss_and_grad(&logits, &t).expect("loss");
            let t2 = Instant::now();
            let g = unet::backward(
                &p,
                &cache,
                &l.dlogits,
                cineseg::nn::cpu::precision::selected().into(),
                threads,
            );
            let t3 = Instant::now();
            drop((g, cache, logits));
            print!("{}", cineseg::nn::profile::take_report());
            println!(
                "forward {:.0} ms, loss {:.0} ms, backward {:.0} ms, free {:.0} ms",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                (t3 - t2).as_secs_f64() * 1e3,
                t3.elapsed().as_secs_f64() * 1e3
            );
        }
    });
}
