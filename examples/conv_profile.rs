//! Times 3x3 convolutions per U-Net level with both methods (im2col, Winograd), to set
//! `WINOGRAD_MIN_TILES`. Usage: conv_profile [batch]
use cineseg::nn::cpu::conv3x3::{self, ConvWeights, Epilogue, Method};
use cineseg::nn::cpu::precision::Precision;
use cineseg::nn::Tensor;
use std::time::Instant;
fn main() {
    let threads = 2;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let batch: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    for (lvl, c) in [32usize, 64, 128, 256, 512].iter().enumerate() {
        let (cin, cout) = (*c, *c);
        let s = 192 >> lvl;
        let x = Tensor {
            n: batch,
            h: s,
            w: s,
            c: cin,
            data: vec![0.5; batch * s * s * cin],
        };
        let wt = vec![0.01; cin * cout * 9];
        let (wim, wwi) = (
            ConvWeights::with_method(&wt, cin, cout, Method::Im2col),
            ConvWeights::with_method(&wt, cin, cout, Method::Winograd),
        );
        let dy = Tensor {
            n: batch,
            h: s,
            w: s,
            c: cout,
            data: vec![0.5; batch * s * s * cout],
        };

        pool.install(|| {
            let time = |f: &dyn Fn()| (0..3).map(|_| { let t = Instant::now(); f(); t.elapsed().as_secs_f64() }).fold(f64::MAX, f64::min);
            let im = time(&|| { wim.apply(&x, Epilogue::None, threads); });
            let wi = time(&|| { wwi.apply(&x, Epilogue::None, threads); });
            let wg = time(&|| { conv3x3::backward_weights_with(Method::Im2col, Precision::F32, &x, &dy, threads); });
            let ww = time(&|| { conv3x3::backward_weights_with(Method::Winograd, Precision::F32, &x, &dy, threads); });
            println!("level {lvl} {s}x{s} {cin}->{cout} batch {batch}: fwd im2col {:.1} ms, winograd {:.1} ms; wgrad im2col {:.1} ms, winograd {:.1} ms",
                im * 1e3, wi * 1e3, wg * 1e3, ww * 1e3);
        });
    }
}
