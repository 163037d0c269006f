//! BatchNorm folding for inference: `conv -> BN(eval)` becomes one convolution with bias,
//! `w' = w * gamma / sqrt(var + eps)`, `b' = beta - mean * gamma / sqrt(var + eps)`, so an
//! inference pass is convolutions with a fused bias + ReLU epilogue and nothing else.

use crate::nn::cpu::precision::Precision;
use crate::nn::cpu::{conv3x3, upconv};
use crate::nn::params::{BatchNorm, Block, UNetParams};

/// A block with BatchNorm folded in, weights packed for the CPU GEMM.
#[derive(Clone, Debug)]
pub struct FoldedBlock {
    pub cin: usize,
    pub cout: usize,
    pub w1: conv3x3::ConvWeights,
    pub b1: Vec<f32>,
    pub w2: conv3x3::ConvWeights,
    pub b2: Vec<f32>,
}

/// A transposed convolution with its weights packed.
#[derive(Clone, Debug)]
pub struct FoldedUp {
    pub packed: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The whole network ready for inference.
#[derive(Clone, Debug)]
pub struct FoldedUNet {
    pub depth: usize,
    pub enc: Vec<FoldedBlock>,
    pub up: Vec<FoldedUp>,
    pub dec: Vec<FoldedBlock>,
    pub head_weight: Vec<f32>,
    pub head_bias: Vec<f32>,
}

/// Folds one BatchNorm into the OIHW weights before it; returns (weights, bias).
pub fn fold_conv_bn(
    w_oihw: &[f32],
    cin: usize,
    cout: usize,
    bn: &BatchNorm,
) -> (Vec<f32>, Vec<f32>) {
    let mut w = w_oihw.to_vec();
    let mut b = vec![0.0; cout];
    for co in 0..cout {
        let s = bn.weight[co] as f64
            / (bn.running_var[co] as f64 + crate::nn::cpu::batchnorm::EPS).sqrt();
        for v in &mut w[co * cin * 9..(co + 1) * cin * 9] {
            *v = (*v as f64 * s) as f32;
        }
        b[co] = (bn.bias[co] as f64 - bn.running_mean[co] as f64 * s) as f32;
    }
    (w, b)
}

fn fold_block(b: &Block, prec: Precision) -> FoldedBlock {
    let (w1, b1) = fold_conv_bn(&b.conv1, b.cin, b.cout, &b.bn1);
    let (w2, b2) = fold_conv_bn(&b.conv2, b.cout, b.cout, &b.bn2);
    FoldedBlock {
        cin: b.cin,
        cout: b.cout,
        w1: conv3x3::ConvWeights::new_in(&w1, b.cin, b.cout, prec),
        b1,
        w2: conv3x3::ConvWeights::new_in(&w2, b.cout, b.cout, prec),
        b2,
    }
}

impl FoldedUNet {
    /// Folds and packs all weights of `p` for f32 convolutions.
    pub fn new(p: &UNetParams) -> Self {
        Self::new_in(p, Precision::F32)
    }

    /// Folds and packs all weights of `p`, the 3x3 convolutions for `prec`.
    pub fn new_in(p: &UNetParams, prec: Precision) -> Self {
        FoldedUNet {
            depth: p.cfg.depth,
            enc: p.enc.iter().map(|b| fold_block(b, prec)).collect(),
            up: p
                .up
                .iter()
                .map(|u| FoldedUp {
                    packed: upconv::pack(&u.weight, u.cin, u.cout),
                    bias: u.bias.clone(),
                })
                .collect(),
            dec: p.dec.iter().map(|b| fold_block(b, prec)).collect(),
            head_weight: p.head_weight.clone(),
            head_bias: p.head_bias.clone(),
        }
    }
}
