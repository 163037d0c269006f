//! fp16 training on the GPU with fp32 master weights and dynamic loss scaling.
//!
//! Two ways to use it:
//! - [`GpuTrainer::step`], behind [`Backend::train_step`](crate::nn::Backend::train_step): the
//!   host's parameters are uploaded, one step runs on the device, and the fp32 gradients
//!   (unscaled) and updated running statistics come back, so the trainer applies AdamW on the
//!   CPU exactly as with the CPU backend. A step whose gradients overflow is not returned: the
//!   scale is halved and the step repeated from the same parameters and running statistics, so
//!   the caller never sees a skipped step.
//! - [`GpuTrainer::adamw_begin`] / [`adamw_step`](GpuTrainer::adamw_step) /
//!   [`adamw_params`](GpuTrainer::adamw_params): weights and AdamW moments stay on the device
//!   (kernels/adamw.cu); only the batch goes up and the loss comes down. An overflowing step is
//!   skipped on the device (no weight or moment changes, step count unchanged) and the scale
//!   halved, as PyTorch's GradScaler does; the running statistics keep that step's update, as
//!   in PyTorch.
//!
//! Loss scale: starts at 2^16, halves on overflow (not below 1), doubles after 2000 clean steps
//! (at most 2^24): GradScaler's defaults.

pub mod buffers;
pub mod params;
pub mod step;

use super::device::Device;
use super::ops::*;
use crate::nn::backend::TrainOutput;
use crate::nn::loss::Target;
use crate::nn::params::Kind;
use crate::nn::{NnError, Tensor, UNetConfig, UNetParams};
use buffers::TrainBuffers;
use params::DevParams;

/// Most classes the fused loss kernel handles (LOSS_MAXK in kernels/loss.cu).
pub const MAX_CLASSES: usize = 16;

/// Dynamic loss scale (host side; the device only sees the current value).
#[derive(Clone, Debug)]
pub struct LossScale {
    pub scale: f32,
    /// Clean steps since the last change.
    pub good_steps: u32,
    /// Clean steps before the scale doubles.
    pub interval: u32,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale {
            scale: 65536.0,
            good_steps: 0,
            interval: 2000,
        }
    }
}

impl LossScale {
    /// Largest scale (as kernels/adamw.cu's `loss_scale_update`).
    pub const MAX: f32 = 16_777_216.0;

    /// Records one step's outcome.
    pub fn update(&mut self, overflow: bool) {
        if overflow {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps >= self.interval {
                self.scale = (self.scale * 2.0).min(Self::MAX);
                self.good_steps = 0;
            }
        }
    }
}

/// AdamW hyper-parameters of the device-resident path (same meaning as src/train/adamw.rs).
#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
        }
    }
}

struct AdamWState {
    cfg: AdamWConfig,
    step: u64,
    m: super::device::Buf,
    v: super::device::Buf,
}

/// Outcome of one device-resident step.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub loss: f64,
    pub cross_entropy: f64,
    /// Soft Dice per class (NaN where the class took no part).
    pub dice: Vec<f64>,
    /// True when the gradients overflowed and the update was skipped.
    pub skipped: bool,
    /// The loss scale this step used.
    pub scale: f32,
}

/// Device state for training one model configuration.
pub struct GpuTrainer {
    pub params: DevParams,
    arena: Vec<((usize, usize, usize), TrainBuffers)>,
    pub scale: LossScale,
    adamw: Option<AdamWState>,
}

fn check_batch(cfg: &UNetConfig, x: &Tensor, target: &Target) -> Result<(), NnError> {
    cfg.check_input(x.h, x.w, x.c)?;
    if x.n < 1 {
        return Err(NnError::Shape("empty batch".into()));
    }
    if cfg.classes > MAX_CLASSES {
        return Err(NnError::Config(format!(
            "{} classes; the GPU loss kernel handles at most {MAX_CLASSES}",
            cfg.classes
        )));
    }
    target.check(x.n, x.h * x.w, cfg.classes)
}

impl GpuTrainer {
    /// Allocates the parameter buffers for `cfg` (activation buffers come per batch shape).
    pub fn new(dev: &dyn Device, cfg: &UNetConfig) -> Result<Self, NnError> {
        Ok(GpuTrainer {
            params: DevParams::new(dev, cfg)?,
            arena: Vec::new(),
            scale: LossScale::default(),
            adamw: None,
        })
    }

    /// The buffers of this batch shape, allocated on first use. At most two shapes are kept
    /// (training buffers are large: ~1.3 GB at batch 32, 192x192, base 32).
    fn buffers(
        &mut self,
        dev: &dyn Device,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<usize, NnError> {
        if let Some(i) = self.arena.iter().position(|(k, _)| *k == (n, h, w)) {
            return Ok(i);
        }
        if self.arena.len() >= 2 {
            self.arena.remove(0);
        }
        self.arena.push((
            (n, h, w),
            TrainBuffers::new(dev, &self.params.cfg, n, h, w)?,
        ));
        Ok(self.arena.len() - 1)
    }

    /// Uploads images and labels, returning the arena slot.
    fn upload_batch(
        &mut self,
        dev: &dyn Device,
        x: &Tensor,
        target: &Target,
    ) -> Result<usize, NnError> {
        let slot = self.buffers(dev, x.n, x.h, x.w)?;
        let b = &self.arena[slot].1;
        let xh: Vec<u16> = x
            .data
            .iter()
            .map(|v| half::f16::from_f32(*v).to_bits())
            .collect();
        dev.upload(b.x.at::<u16>(0), bytemuck::cast_slice(&xh))?;
        dev.upload(b.labels.at::<u8>(0), &target.labels)?;
        let lab: Vec<u8> = target.labelled.iter().flatten().map(|l| *l as u8).collect();
        dev.upload(b.labelled.at::<u8>(0), &lab)?;
        Ok(slot)
    }

    /// Queues pack, forward, loss, backward and the overflow check for the batch in `slot`.
    fn enqueue(&self, dev: &dyn Device, slot: usize, scale: f32) -> Result<(), NnError> {
        let (p, b) = (&self.params, &self.arena[slot].1);
        p.zero_grads(dev)?;
        dev.zero(b.f64s.at::<f64>(0), 8 * b.f64_len)?;
        dev.zero(b.flag.at::<i32>(0), 4)?;
        p.pack(dev)?;
        step::forward(dev, p, b)?;
        step::loss(dev, p, b, scale)?;
        step::backward(dev, p, b)?;
        dev.overflow_check(p.g.at::<f32>(0), p.total, b.flag.at::<i32>(0))
    }

    /// Loss outputs (see `loss_finalize`) and the overflow flag; waits for the device.
    fn results(&self, dev: &dyn Device, slot: usize) -> Result<(Vec<f64>, bool), NnError> {
        let b = &self.arena[slot].1;
        let k = self.params.cfg.classes;
        let mut out = vec![0.0f64; 3 + 2 * k];
        dev.download(b.loss_out.at::<f64>(0), bytemuck::cast_slice_mut(&mut out))?;
        let mut flag = [0i32; 1];
        dev.download(b.flag.at::<i32>(0), bytemuck::cast_slice_mut(&mut flag))?;
        Ok((out, flag[0] != 0))
    }

    fn logits(&self, dev: &dyn Device, slot: usize) -> Result<Tensor, NnError> {
        let b = &self.arena[slot].1;
        let k = self.params.cfg.classes;
        let mut v = vec![0.0f32; b.n * b.h * b.w * k];
        dev.download(b.logits.at::<f32>(0), bytemuck::cast_slice_mut(&mut v))?;
        Tensor::from_nhwc(b.n, b.h, b.w, k, v)
    }

    /// One step for [`Backend::train_step`](crate::nn::Backend::train_step): gradients of the
    /// host's `params` on `x`, running statistics in `params` updated. Overflowing steps are
    /// repeated at half the scale (see the module doc).
    pub fn step(
        &mut self,
        dev: &dyn Device,
        params: &mut UNetParams,
        x: &Tensor,
        target: &Target,
    ) -> Result<TrainOutput, NnError> {
        check_batch(&self.params.cfg, x, target)?;
        let k = self.params.cfg.classes;
        let slot = self.upload_batch(dev, x, target)?;
        loop {
            let scale = self.scale.scale;
            self.params.upload(dev, params)?;
            self.enqueue(dev, slot, scale)?;
            let (out, overflow) = self.results(dev, slot)?;
            let dice = out[2..2 + k].to_vec();
            if !out[0].is_finite() {
                // Diverged: report it (the trainer stops) without touching `params`.
                let grads = UNetParams::zeros(&self.params.cfg);
                return Ok(TrainOutput {
                    loss: out[0],
                    cross_entropy: out[1],
                    dice,
                    logits: self.logits(dev, slot)?,
                    grads,
                });
            }
            if overflow {
                if scale <= 1.0 {
                    return Err(NnError::Device(
                        "fp16 gradients overflow even at loss scale 1".into(),
                    ));
                }
                log::debug!(
                    "fp16 gradient overflow at loss scale {scale}; repeating the step at {}",
                    scale / 2.0
                );
                self.scale.update(true);
                continue;
            }
            self.scale.update(false);
            let grads = self.params.download_grads(dev, scale)?;
            self.params.download_running(dev, params)?;
            return Ok(TrainOutput {
                loss: out[0],
                cross_entropy: out[1],
                dice,
                logits: self.logits(dev, slot)?,
                grads,
            });
        }
    }

    /// Starts device-resident training from `params` with fresh AdamW moments.
    pub fn adamw_begin(
        &mut self,
        dev: &dyn Device,
        params: &UNetParams,
        cfg: AdamWConfig,
    ) -> Result<(), NnError> {
        self.params.upload(dev, params)?;
        let bytes = 4 * self.params.total;
        self.adamw = Some(AdamWState {
            cfg,
            step: 0,
            m: dev.alloc(bytes)?,
            v: dev.alloc(bytes)?,
        });
        Ok(())
    }

    /// One device-resident step at learning rate `lr`, updating the tensors for which
    /// `trainable(name)` holds (running statistics never).
    pub fn adamw_step(
        &mut self,
        dev: &dyn Device,
        x: &Tensor,
        target: &Target,
        lr: f64,
        trainable: &dyn Fn(&str) -> bool,
    ) -> Result<StepReport, NnError> {
        check_batch(&self.params.cfg, x, target)?;
        if self.adamw.is_none() {
            return Err(NnError::Config("adamw_step before adamw_begin".into()));
        }
        let slot = self.upload_batch(dev, x, target)?;
        let scale = self.scale.scale;
        self.enqueue(dev, slot, scale)?;
        let st = self
            .adamw
            .as_ref()
            .ok_or_else(|| NnError::Config("adamw_step before adamw_begin".into()))?;
        let t = (st.step + 1) as i32;
        let c = st.cfg;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        let flag = self.arena[slot].1.flag.at::<i32>(0);
        let mut off = 0;
        for info in self.params.layout() {
            let len = info.len();
            if info.kind != Kind::RunningStat && trainable(&info.name) {
                let decay = if info.kind == Kind::Weight4d {
                    1.0 - lr * c.weight_decay
                } else {
                    1.0
                };
                let h = AdamWStep {
                    beta1: c.beta1 as f32,
                    beta2: c.beta2 as f32,
                    eps: c.eps as f32,
                    decay: decay as f32,
                    step_size: (lr / bc1) as f32,
                    inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
                    inv_scale: 1.0 / scale,
                };
                let p = &self.params;
                dev.adamw(
                    p.p.at::<f32>(off),
                    p.g.at::<f32>(off),
                    st.m.at::<f32>(off),
                    st.v.at::<f32>(off),
                    len,
                    h,
                    flag,
                )?;
            }
            off += len;
        }
        let (out, overflow) = self.results(dev, slot)?;
        self.scale.update(overflow);
        if let (false, Some(st)) = (overflow, self.adamw.as_mut()) {
            st.step += 1;
        }
        let k = self.params.cfg.classes;
        Ok(StepReport {
            loss: out[0],
            cross_entropy: out[1],
            dice: out[2..2 + k].to_vec(),
            skipped: overflow,
            scale,
        })
    }

    /// The device's weights and running statistics (e.g. to save a checkpoint).
    pub fn adamw_params(&self, dev: &dyn Device) -> Result<UNetParams, NnError> {
        self.params.download_params(dev)
    }

    /// Optimiser steps taken on the device (skipped steps do not count).
    pub fn adamw_steps(&self) -> u64 {
        self.adamw.as_ref().map_or(0, |s| s.step)
    }
}

#[cfg(test)]
mod tests {
    use super::LossScale;

    #[test]
    fn loss_scale_halves_on_overflow_and_grows_after_clean_interval() {
        let mut s = LossScale {
            interval: 3,
            ..Default::default()
        };
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (32768.0, 0));
        s.update(false);
        s.update(false);
        assert_eq!(s.scale, 32768.0, "not yet a full interval");
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        let mut low = LossScale {
            scale: 1.0,
            ..Default::default()
        };
        low.update(true);
        assert_eq!(low.scale, 1.0, "never below 1");
        let mut high = LossScale {
            scale: LossScale::MAX,
            interval: 1,
            good_steps: 0,
        };
        high.update(false);
        assert_eq!(high.scale, LossScale::MAX, "never above the maximum");
    }
}
