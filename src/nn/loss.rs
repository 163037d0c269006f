//! The training loss: cross-entropy (mean over pixels) + soft Dice (1 - mean over foreground
//! classes, sums over the whole batch, eps 1e-5), and its marginal variant for partial labels.
//!
//! Marginal loss: where a sample's annotator drew only some classes (e.g. LV and MYO on
//! Sunnybrook), the probabilities of the undrawn classes are merged into background for that
//! sample, and a class enters the Dice term only through samples where it was drawn. An
//! undrawn RV is therefore never trained as "not RV".

use super::{NnError, Tensor};

/// Soft-Dice smoothing, as in the reference.
pub const DICE_EPS: f64 = 1e-5;

/// Labels of a batch: one class index per pixel, and for each sample which classes were drawn.
#[derive(Clone, Debug)]
pub struct Target {
    /// `n * h * w` class indices (0 = background).
    pub labels: Vec<u8>,
    /// Per sample, `labelled[s][c]` is true when class `c` was annotated. Background is always
    /// labelled.
    pub labelled: Vec<Vec<bool>>,
}

impl Target {
    /// Fully labelled samples (all classes drawn).
    pub fn full(labels: Vec<u8>, n: usize, classes: usize) -> Self {
        Target {
            labels,
            labelled: vec![vec![true; classes]; n],
        }
    }
}

/// Loss value, its parts, and the gradient with respect to the logits.
#[derive(Clone, Debug)]
pub struct LossOutput {
    pub loss: f64,
    pub cross_entropy: f64,
    /// Soft Dice per class (NaN where a class took no part).
    pub dice: Vec<f64>,
    pub dlogits: Tensor,
}

impl Target {
    /// Checks the target against a batch of `n` images of `pixels` pixels and `k` classes.
    pub fn check(&self, n: usize, pixels: usize, k: usize) -> Result<(), NnError> {
        if self.labels.len() != n * pixels || self.labelled.len() != n {
            return Err(NnError::Shape(format!(
                "labels for {} pixels / {} samples, batch of {n} images of {pixels} pixels",
                self.labels.len(),
                self.labelled.len()
            )));
        }
        if let Some(bad) = self.labels.iter().find(|l| **l as usize >= k) {
            return Err(NnError::Shape(format!(
                "label value {bad} for a {k}-class model"
            )));
        }
        if self.labelled.iter().any(|l| l.len() != k) {
            return Err(NnError::Shape(format!(
                "labelled-class sets must have {k} entries"
            )));
        }
        Ok(())
    }
}

/// Computes the loss and its logit gradient for NHWC logits.
pub fn loss_and_grad(logits: &Tensor, target: &Target) -> Result<LossOutput, NnError> {
    let (n, k, hw) = (logits.n, logits.c, logits.h * logits.w);
    target.check(n, hw, k)?;
    let total = (n * hw) as f64;
    // Softmax in f64 (the values are reused for Dice sums and the gradient).
    let mut prob = vec![0.0f64; logits.data.len()];
    for (pr, lr) in prob.chunks_exact_mut(k).zip(logits.data.chunks_exact(k)) {
        let m = lr.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b)) as f64;
        let mut s = 0.0;
        for (p, l) in pr.iter_mut().zip(lr) {
            *p = (*l as f64 - m).exp();
            s += *p;
        }
        for p in pr.iter_mut() {
            *p /= s;
        }
    }
    // Merged background group per sample: background plus undrawn classes.
    let in_bg = |s: usize, c: usize| c == 0 || !target.labelled[s][c];
    // Dice sums per class over samples where the class is drawn.
    let (mut inter, mut psum, mut gsum) = (vec![0.0f64; k], vec![0.0f64; k], vec![0.0f64; k]);
    let mut present = vec![false; k];
    let mut ce = 0.0;
    for s in 0..n {
        for (p, l) in present.iter_mut().zip(&target.labelled[s]).skip(1) {
            *p |= *l;
        }
        for i in s * hw..(s + 1) * hw {
            let pr = &prob[i * k..(i + 1) * k];
            let l = target.labels[i] as usize;
            let pl = if in_bg(s, l) {
                (0..k).filter(|c| in_bg(s, *c)).map(|c| pr[c]).sum::<f64>()
            } else {
                pr[l]
            };
            ce -= pl.max(1e-300).ln();
            for c in 1..k {
                if target.labelled[s][c] {
                    psum[c] += pr[c];
                    if l == c {
                        inter[c] += pr[c];
                        gsum[c] += 1.0;
                    }
                }
            }
        }
    }
    ce /= total;
    let fg: Vec<usize> = (1..k).filter(|c| present[*c]).collect();
    let mut dice = vec![f64::NAN; k];
    for &c in &fg {
        dice[c] = (2.0 * inter[c] + DICE_EPS) / (psum[c] + gsum[c] + DICE_EPS);
    }
    let dice_loss = if fg.is_empty() {
        0.0
    } else {
        1.0 - fg.iter().map(|c| dice[*c]).sum::<f64>() / fg.len() as f64
    };
    // Gradient. dL/dp_c for the Dice part, then through the softmax; CE directly on logits.
    let wdice = if fg.is_empty() {
        0.0
    } else {
        1.0 / fg.len() as f64
    };
    let mut dlogits = Tensor::zeros(logits.n, logits.h, logits.w, k);
    let mut dp = vec![0.0f64; k];
    for s in 0..n {
        for i in s * hw..(s + 1) * hw {
            let pr = &prob[i * k..(i + 1) * k];
            let l = target.labels[i] as usize;
            for c in 0..k {
                dp[c] = 0.0;
                if c > 0 && target.labelled[s][c] && present[c] {
                    let den = psum[c] + gsum[c] + DICE_EPS;
                    let num = 2.0 * inter[c] + DICE_EPS;
                    let g = if l == c { 1.0 } else { 0.0 };
                    dp[c] = -wdice * (2.0 * g * den - num) / (den * den);
                }
            }
            let dot: f64 = (0..k).map(|c| pr[c] * dp[c]).sum();
            let bg_group = in_bg(s, l);
            let pl: f64 = if bg_group {
                (0..k).filter(|c| in_bg(s, *c)).map(|c| pr[c]).sum()
            } else {
                pr[l]
            };
            let out = &mut dlogits.data[i * k..(i + 1) * k];
            for c in 0..k {
                let in_target = if bg_group { in_bg(s, c) } else { c == l };
                let dce = pr[c]
                    - if in_target {
                        pr[c] / pl.max(1e-300)
                    } else {
                        0.0
                    };
                out[c] = ((dce / total) + pr[c] * (dp[c] - dot)) as f32;
            }
        }
    }
    Ok(LossOutput {
        loss: ce + dice_loss,
        cross_entropy: ce,
        dice,
        dlogits,
    })
}

/// Argmax over classes for NHWC logits: one label per pixel.
pub fn argmax(logits: &Tensor) -> Vec<u8> {
    logits
        .data
        .chunks_exact(logits.c)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |b, (i, v)| {
                    if *v > b.1 {
                        (i, *v)
                    } else {
                        b
                    }
                })
                .0 as u8
        })
        .collect()
}
