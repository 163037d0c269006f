//! AdamW (decoupled weight decay), exactly PyTorch's update order, with decay on 4-D weights
//! only (BatchNorm affine parameters and biases are not decayed).

use crate::nn::params::{Kind, UNetParams};

/// Optimiser state: first and second moments shaped like the parameters.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: u64,
    pub m: UNetParams,
    pub v: UNetParams,
}

impl AdamW {
    /// Fresh state for `params` with PyTorch's defaults except the given lr and weight decay.
    pub fn new(params: &UNetParams, lr: f64, weight_decay: f64) -> Self {
        AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            m: UNetParams::zeros(&params.cfg),
            v: UNetParams::zeros(&params.cfg),
        }
    }

    /// One update of every trainable tensor for which `trainable(name)` holds. Running
    /// statistics are never touched.
    pub fn update(
        &mut self,
        params: &mut UNetParams,
        grads: &UNetParams,
        trainable: &dyn Fn(&str) -> bool,
    ) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let step_size = self.lr / bc1;
        let layout = UNetParams::layout(&params.cfg);
        let (b1, b2, eps, lr, wd) = (self.beta1, self.beta2, self.eps, self.lr, self.weight_decay);
        let iter = layout
            .iter()
            .zip(params.tensors_mut())
            .zip(grads.tensors())
            .zip(self.m.tensors_mut().into_iter().zip(self.v.tensors_mut()));
        for (((info, p), g), (m, v)) in iter {
            if info.kind == Kind::RunningStat || !trainable(&info.name) {
                continue;
            }
            let decay = if info.kind == Kind::Weight4d {
                1.0 - lr * wd
            } else {
                1.0
            };
            for i in 0..p.len() {
                let gi = g[i] as f64;
                let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
                let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
                m[i] = mi as f32;
                v[i] = vi as f32;
                let denom = (vi.sqrt() / bc2.sqrt()) + eps;
                p[i] = (p[i] as f64 * decay - step_size * mi / denom) as f32;
            }
        }
    }
}
