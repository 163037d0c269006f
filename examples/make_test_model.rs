//! Writes a small U-Net (base 8, depth 2) with random, non-trivial BatchNorm statistics and
//! biases, through cineseg's own weights writer. `scripts/make-goldens.sh` feeds it to
//! `unet_ref.py golden`, which proves PyTorch loads what cineseg writes and gives the parity
//! tests a model whose BatchNorm folding is not the identity.

use cineseg::nn::rng::Rng;
use cineseg::nn::weights::StoreAs;
use cineseg::nn::{Model, UNetConfig, UNetParams};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: make_test_model OUT.safetensors")?,
    );
    let cfg = UNetConfig::new(8, 2);
    let mut p = UNetParams::init(&cfg, 7)?;
    let mut rng = Rng::new(11);
    for b in p.enc.iter_mut().chain(p.dec.iter_mut()) {
        for bn in [&mut b.bn1, &mut b.bn2] {
            for c in 0..bn.weight.len() {
                bn.weight[c] = rng.range(0.5, 1.5) as f32;
                bn.bias[c] = rng.range(-0.3, 0.3) as f32;
                bn.running_mean[c] = rng.range(-0.5, 0.5) as f32;
                bn.running_var[c] = rng.range(0.3, 3.0) as f32;
            }
        }
    }
    for u in p.up.iter_mut() {
        u.bias
            .iter_mut()
            .for_each(|v| *v = rng.range(-0.2, 0.2) as f32);
    }
    p.head_bias
        .iter_mut()
        .for_each(|v| *v = rng.range(-0.2, 0.2) as f32);
    Model::new(p, None).save(&out, StoreAs::F32)?;
    println!("wrote {}", out.display());
    Ok(())
}
