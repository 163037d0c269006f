//! The model's tensors on the device for training: one flat fp32 buffer of master weights (in
//! [`UNetParams::layout`] order, so upload and download are one copy each), one flat fp32
//! gradient buffer of the same layout (kernels add into it with atomics; one memset clears it),
//! and the fp16 copies the kernels read, packed from the masters on the device each step
//! (forward GEMM layout and the flipped data-gradient layout of every 3x3 conv, the packed
//! layout of every transposed conv).

use crate::nn::cuda::device::{Buf, Device};
use crate::nn::cuda::ops::*;
use crate::nn::params::{Kind, TensorInfo};
use crate::nn::{NnError, UNetConfig, UNetParams};
use std::collections::HashMap;

/// fp16 packed weights of one layer.
struct Packed {
    fwd: Buf,
    /// Data-gradient layout (3x3 convs only).
    dgrad: Option<Buf>,
}

/// Master weights, gradients and packed fp16 weights of one model configuration.
pub struct DevParams {
    pub cfg: UNetConfig,
    layout: Vec<TensorInfo>,
    offsets: Vec<usize>,
    index: HashMap<String, usize>,
    /// Values in all tensors together.
    pub total: usize,
    /// fp32 master weights and running statistics, flat.
    pub p: Buf,
    /// fp32 gradients (times the loss scale while a step runs), flat.
    pub g: Buf,
    packed: HashMap<String, Packed>,
}

fn missing(name: &str) -> NnError {
    NnError::Config(format!("no tensor {name} in this model"))
}

impl DevParams {
    /// Allocates everything for `cfg` (contents undefined until [`upload`](Self::upload)).
    pub fn new(dev: &dyn Device, cfg: &UNetConfig) -> Result<Self, NnError> {
        cfg.validate()?;
        let layout = UNetParams::layout(cfg);
        let mut offsets = Vec::with_capacity(layout.len());
        let mut total = 0;
        for t in &layout {
            offsets.push(total);
            total += t.len();
        }
        let index = layout
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let mut packed = HashMap::new();
        for t in layout
            .iter()
            .filter(|t| t.kind == Kind::Weight4d && t.name != "head.weight")
        {
            let is_conv = t.shape.get(2) == Some(&3);
            let fwd = dev.alloc(2 * t.len())?;
            let dgrad = if is_conv {
                Some(dev.alloc(2 * t.len())?)
            } else {
                None
            };
            packed.insert(t.name.clone(), Packed { fwd, dgrad });
        }
        Ok(DevParams {
            cfg: cfg.clone(),
            p: dev.alloc(4 * total)?,
            g: dev.alloc(4 * total)?,
            layout,
            offsets,
            index,
            total,
            packed,
        })
    }

    /// The tensor layout (names, shapes, kinds) in buffer order.
    pub fn layout(&self) -> &[TensorInfo] {
        &self.layout
    }

    /// Offset of tensor `name` in the flat buffers.
    pub fn offset(&self, name: &str) -> Result<usize, NnError> {
        self.index
            .get(name)
            .map(|i| self.offsets[*i])
            .ok_or_else(|| missing(name))
    }

    /// Device address of the master tensor `name`.
    pub fn p_at(&self, name: &str) -> Result<u64, NnError> {
        Ok(self.p.at::<f32>(self.offset(name)?))
    }

    /// Device address of the gradient of tensor `name`.
    pub fn g_at(&self, name: &str) -> Result<u64, NnError> {
        Ok(self.g.at::<f32>(self.offset(name)?))
    }

    /// fp16 forward weights of the layer whose weight tensor is `name`.
    pub fn fwd(&self, name: &str) -> Result<u64, NnError> {
        Ok(self
            .packed
            .get(name)
            .ok_or_else(|| missing(name))?
            .fwd
            .at::<u16>(0))
    }

    /// fp16 data-gradient weights of the 3x3 conv whose weight tensor is `name`.
    pub fn dgrad(&self, name: &str) -> Result<u64, NnError> {
        self.packed
            .get(name)
            .and_then(|p| p.dgrad.as_ref())
            .map(|b| b.at::<u16>(0))
            .ok_or_else(|| missing(name))
    }

    /// Copies all of `params` (weights and running statistics) to the master buffer.
    pub fn upload(&self, dev: &dyn Device, params: &UNetParams) -> Result<(), NnError> {
        if params.cfg != self.cfg {
            return Err(NnError::Config(
                "parameters of another model configuration".into(),
            ));
        }
        let mut flat = Vec::with_capacity(self.total);
        for t in params.tensors() {
            flat.extend_from_slice(t);
        }
        if flat.len() != self.total {
            return Err(NnError::Shape(format!(
                "parameters hold {} values, the layout {}",
                flat.len(),
                self.total
            )));
        }
        dev.upload(self.p.at::<f32>(0), bytemuck::cast_slice(&flat))
    }

    /// Packs the fp16 weights from the masters (after an upload or an optimiser step).
    pub fn pack(&self, dev: &dyn Device) -> Result<(), NnError> {
        for (t, off) in self.layout.iter().zip(&self.offsets) {
            let Some(pk) = self.packed.get(&t.name) else {
                continue;
            };
            let w = self.p.at::<f32>(*off);
            match (&pk.dgrad, t.shape.as_slice()) {
                (Some(dg), [cout, cin, 3, 3]) => {
                    dev.conv3x3_pack(w, pk.fwd.at::<u16>(0), dg.at::<u16>(0), *cin, *cout)?
                }
                (None, [cin, cout, 2, 2]) => {
                    dev.upconv_pack(w, pk.fwd.at::<u16>(0), *cin, *cout)?
                }
                _ => {
                    return Err(NnError::Config(format!(
                        "{}: unexpected shape {:?}",
                        t.name, t.shape
                    )))
                }
            }
        }
        Ok(())
    }

    /// Clears the gradient buffer (queued).
    pub fn zero_grads(&self, dev: &dyn Device) -> Result<(), NnError> {
        dev.zero(self.g.at::<f32>(0), 4 * self.total)
    }

    fn download_flat(&self, dev: &dyn Device, b: &Buf) -> Result<Vec<f32>, NnError> {
        let mut flat = vec![0.0f32; self.total];
        dev.download(b.at::<f32>(0), bytemuck::cast_slice_mut(&mut flat))?;
        Ok(flat)
    }

    fn unflatten(
        &self,
        flat: &[f32],
        into: &mut UNetParams,
        pick: impl Fn(Kind) -> bool,
        mul: f32,
    ) {
        for ((t, off), dst) in self
            .layout
            .iter()
            .zip(&self.offsets)
            .zip(into.tensors_mut())
        {
            if pick(t.kind) {
                for (d, s) in dst.iter_mut().zip(&flat[*off..*off + t.len()]) {
                    *d = s * mul;
                }
            }
        }
    }

    /// The gradients divided by `scale`, with running-statistic entries zero (the
    /// [`Backend`](crate::nn::Backend) contract).
    pub fn download_grads(&self, dev: &dyn Device, scale: f32) -> Result<UNetParams, NnError> {
        let flat = self.download_flat(dev, &self.g)?;
        let mut g = UNetParams::zeros(&self.cfg);
        self.unflatten(&flat, &mut g, |k| k != Kind::RunningStat, 1.0 / scale);
        Ok(g)
    }

    /// Copies the device's running statistics into `params` (the training forward updates them).
    pub fn download_running(
        &self,
        dev: &dyn Device,
        params: &mut UNetParams,
    ) -> Result<(), NnError> {
        let flat = self.download_flat(dev, &self.p)?;
        self.unflatten(&flat, params, |k| k == Kind::RunningStat, 1.0);
        Ok(())
    }

    /// Every master tensor (weights and running statistics).
    pub fn download_params(&self, dev: &dyn Device) -> Result<UNetParams, NnError> {
        let flat = self.download_flat(dev, &self.p)?;
        let mut p = UNetParams::zeros(&self.cfg);
        self.unflatten(&flat, &mut p, |_| true, 1.0);
        Ok(p)
    }
}
