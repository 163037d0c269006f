//! Plain, obviously-correct reference implementations in f64 that every fast kernel (CPU GEMM
//! path, CUDA) is tested against. Slow on purpose: loops written straight from the definition.

/// 3x3 convolution, padding 1, NCHW input `n x cin x h x w`, OIHW weights, NCHW output.
pub fn conv3x3_nchw(
    x: &[f64],
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    wt: &[f64],
    cout: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; n * cout * h * w];
    for b in 0..n {
        for co in 0..cout {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = 0.0;
                    for ci in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (yy, xs) =
                                    (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                if yy >= 0 && yy < h as isize && xs >= 0 && xs < w as isize {
                                    s += x[((b * cin + ci) * h + yy as usize) * w + xs as usize]
                                        * wt[((co * cin + ci) * 3 + ky) * 3 + kx];
                                }
                            }
                        }
                    }
                    out[((b * cout + co) * h + y) * w + xx] = s;
                }
            }
        }
    }
    out
}

/// Gradients of `sum(conv3x3(x, w) * dy)` with respect to `x` and `w` (NCHW / OIHW).
// The plain reference keeps every dimension an explicit argument, like the kernel it checks.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_backward_nchw(
    x: &[f64],
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    wt: &[f64],
    cout: usize,
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; wt.len()];
    for b in 0..n {
        for co in 0..cout {
            for y in 0..h {
                for xx in 0..w {
                    let g = dy[((b * cout + co) * h + y) * w + xx];
                    for ci in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (yy, xs) =
                                    (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                if yy >= 0 && yy < h as isize && xs >= 0 && xs < w as isize {
                                    let xi = ((b * cin + ci) * h + yy as usize) * w + xs as usize;
                                    let wi = ((co * cin + ci) * 3 + ky) * 3 + kx;
                                    dx[xi] += g * wt[wi];
                                    dw[wi] += g * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw)
}

/// 2x2 stride-2 transposed convolution with bias: NCHW input, IOHW weights.
pub fn upconv2x2_nchw(
    x: &[f64],
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    wt: &[f64],
    bias: &[f64],
) -> Vec<f64> {
    let cout = bias.len();
    let (ho, wo) = (2 * h, 2 * w);
    let mut out = vec![0.0; n * cout * ho * wo];
    for b in 0..n {
        for co in 0..cout {
            for y in 0..ho {
                for xx in 0..wo {
                    let mut s = bias[co];
                    for ci in 0..cin {
                        s += x[((b * cin + ci) * h + y / 2) * w + xx / 2]
                            * wt[((ci * cout + co) * 2 + y % 2) * 2 + xx % 2];
                    }
                    out[((b * cout + co) * ho + y) * wo + xx] = s;
                }
            }
        }
    }
    out
}

/// What [`batchnorm_relu_nchw`] returns: the output and what the backward needs.
pub struct BatchNormRelu {
    /// `relu(gamma * xhat + beta)`, NCHW.
    pub y: Vec<f64>,
    /// Batch mean and biased variance per channel.
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

/// BatchNorm in training mode (batch statistics, PyTorch's eps 1e-5) followed by ReLU, NCHW.
pub fn batchnorm_relu_nchw(
    x: &[f64],
    n: usize,
    c: usize,
    hw: usize,
    gamma: &[f64],
    beta: &[f64],
) -> BatchNormRelu {
    let count = (n * hw) as f64;
    let at = |b: usize, ch: usize, p: usize| (b * c + ch) * hw + p;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals = (0..n).flat_map(|b| (0..hw).map(move |p| (b, p)));
        mean[ch] = vals.clone().map(|(b, p)| x[at(b, ch, p)]).sum::<f64>() / count;
        var[ch] = vals
            .map(|(b, p)| (x[at(b, ch, p)] - mean[ch]).powi(2))
            .sum::<f64>()
            / count;
    }
    let mut y = vec![0.0; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for p in 0..hw {
                let xhat = (x[at(b, ch, p)] - mean[ch]) / (var[ch] + 1e-5).sqrt();
                y[at(b, ch, p)] = (gamma[ch] * xhat + beta[ch]).max(0.0);
            }
        }
    }
    BatchNormRelu { y, mean, var }
}

/// Gradients of `sum(batchnorm_relu(x) * dy)` with respect to `x`, `gamma` and `beta`, from
/// the definition: `dz = dy` where the output is positive, `dbeta = sum dz`,
/// `dgamma = sum dz * xhat`, `dx = gamma / sigma * (dz - mean(dz) - xhat * mean(dz * xhat))`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_relu_backward_nchw(
    x: &[f64],
    n: usize,
    c: usize,
    hw: usize,
    gamma: &[f64],
    fwd: &BatchNormRelu,
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let count = (n * hw) as f64;
    let at = |b: usize, ch: usize, p: usize| (b * c + ch) * hw + p;
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let sigma = (fwd.var[ch] + 1e-5).sqrt();
        let xhat = |i: usize| (x[i] - fwd.mean[ch]) / sigma;
        let dz = |i: usize| if fwd.y[i] > 0.0 { dy[i] } else { 0.0 };
        for b in 0..n {
            for p in 0..hw {
                let i = at(b, ch, p);
                dbeta[ch] += dz(i);
                dgamma[ch] += dz(i) * xhat(i);
            }
        }
        for b in 0..n {
            for p in 0..hw {
                let i = at(b, ch, p);
                dx[i] =
                    gamma[ch] / sigma * (dz(i) - dbeta[ch] / count - xhat(i) * dgamma[ch] / count);
            }
        }
    }
    (dx, dgamma, dbeta)
}
