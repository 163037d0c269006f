//! 2x2 max-pool, stride 2, with argmax indices kept for the backward pass.

use crate::nn::Tensor;

/// Max over each 2x2 window; `idx` records which of the four won (0..3, row-major), first max
/// wins ties as in PyTorch.
pub fn forward(x: &Tensor) -> (Tensor, Vec<u8>) {
    let (ho, wo, c) = (x.h / 2, x.w / 2, x.c);
    let mut out = Tensor::uninit(x.n, ho, wo, c);
    let mut idx = vec![0u8; out.data.len()];
    for n in 0..x.n {
        for y in 0..ho {
            for xx in 0..wo {
                let o = ((n * ho + y) * wo + xx) * c;
                for k in 0..4 {
                    let (dy, dx) = (k / 2, k % 2);
                    let s = ((n * x.h + 2 * y + dy) * x.w + 2 * xx + dx) * c;
                    for ch in 0..c {
                        let v = x.data[s + ch];
                        if k == 0 || v > out.data[o + ch] {
                            out.data[o + ch] = v;
                            idx[o + ch] = k as u8;
                        }
                    }
                }
            }
        }
    }
    (out, idx)
}

/// Routes each output gradient to the input that won the max; `h`, `w` are the input size.
pub fn backward(dout: &Tensor, idx: &[u8], h: usize, w: usize) -> Tensor {
    let (ho, wo, c) = (dout.h, dout.w, dout.c);
    let mut dx = Tensor::zeros(dout.n, h, w, c);
    for n in 0..dout.n {
        for y in 0..ho {
            for xx in 0..wo {
                let o = ((n * ho + y) * wo + xx) * c;
                for ch in 0..c {
                    let k = idx[o + ch] as usize;
                    let s = ((n * h + 2 * y + k / 2) * w + 2 * xx + k % 2) * c;
                    dx.data[s + ch] = dout.data[o + ch];
                }
            }
        }
    }
    dx
}
