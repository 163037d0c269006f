//! Inference on the GPU: BatchNorm-folded fp16 weights, one buffer set per (batch, height,
//! width) allocated on first use and reused, and the whole forward pass recorded once into a
//! CUDA graph and replayed (a U-Net forward is ~60 launches; replaying them as one graph removes
//! the per-launch CPU cost that dominates at small batches).
//!
//! Data flow per level i (c = base * 2^i), as in src/nn/cpu/unet.rs `forward_eval`:
//! encoder conv1 -> `t[i]`; conv2 writes straight into channels 0..c of `cat[i]` (the decoder's
//! `[skip, up]` buffer); pool reads that slice; the decoder's transposed conv writes channels
//! c..2c of `cat[i]`; no concatenation copy exists.

use super::device::{Buf, Device};
use super::launch::Act;
use super::ops::*;
use crate::nn::fold::fold_conv_bn;
use crate::nn::{NnError, UNetConfig, UNetParams};
use half::f16;
use std::collections::HashMap;

/// Uploads fp32 values as fp16.
pub fn upload_f16(dev: &dyn Device, v: &[f32]) -> Result<Buf, NnError> {
    let h: Vec<u16> = v.iter().map(|x| f16::from_f32(*x).to_bits()).collect();
    let b = dev.alloc(2 * h.len())?;
    dev.upload(b.at::<u16>(0), bytemuck::cast_slice(&h))?;
    Ok(b)
}

/// Uploads fp32 values.
pub fn upload_f32(dev: &dyn Device, v: &[f32]) -> Result<Buf, NnError> {
    let b = dev.alloc(4 * v.len())?;
    dev.upload(b.at::<f32>(0), bytemuck::cast_slice(v))?;
    Ok(b)
}

/// A folded conv: packed fp16 weights and fp32 bias.
struct FoldedConv {
    w: Buf,
    b: Buf,
}

/// Folded, packed, uploaded inference weights.
pub struct InferWeights {
    pub cfg: UNetConfig,
    enc: Vec<[FoldedConv; 2]>,
    dec: Vec<[FoldedConv; 2]>,
    up: Vec<(Buf, Buf)>,
    head_w: Buf,
    head_b: Buf,
}

fn fold(dev: &dyn Device, b: &crate::nn::params::Block) -> Result<[FoldedConv; 2], NnError> {
    use crate::nn::cpu::conv3x3::pack;
    let (w1, b1) = fold_conv_bn(&b.conv1, b.cin, b.cout, &b.bn1);
    let (w2, b2) = fold_conv_bn(&b.conv2, b.cout, b.cout, &b.bn2);
    Ok([
        FoldedConv {
            w: upload_f16(dev, &pack(&w1, b.cin, b.cout))?,
            b: upload_f32(dev, &b1)?,
        },
        FoldedConv {
            w: upload_f16(dev, &pack(&w2, b.cout, b.cout))?,
            b: upload_f32(dev, &b2)?,
        },
    ])
}

impl InferWeights {
    /// Folds BatchNorm into the convolutions (in f64 on the host, as the CPU backend does),
    /// packs and uploads everything.
    pub fn new(dev: &dyn Device, p: &UNetParams) -> Result<Self, NnError> {
        use crate::nn::cpu::upconv::pack as up_pack;
        Ok(InferWeights {
            cfg: p.cfg.clone(),
            enc: p
                .enc
                .iter()
                .map(|b| fold(dev, b))
                .collect::<Result<_, _>>()?,
            dec: p
                .dec
                .iter()
                .map(|b| fold(dev, b))
                .collect::<Result<_, _>>()?,
            up: p
                .up
                .iter()
                .map(|u| {
                    Ok((
                        upload_f16(dev, &up_pack(&u.weight, u.cin, u.cout))?,
                        upload_f32(dev, &u.bias)?,
                    ))
                })
                .collect::<Result<_, NnError>>()?,
            head_w: upload_f32(dev, &p.head_weight)?,
            head_b: upload_f32(dev, &p.head_bias)?,
        })
    }
}

/// Activations of one (batch, height, width), allocated once.
pub struct InferBuffers {
    /// The input, NHWC fp16.
    pub x: Buf,
    t: Vec<Buf>,
    cat: Vec<Buf>,
    pooled: Vec<Buf>,
    idx: Vec<Buf>,
    dout: Vec<Buf>,
    /// The output, NHWC fp32.
    pub logits: Buf,
    /// The recorded forward pass, when graph capture worked (the CUDA backend's; the
    /// simulator never records one).
    pub graph: Option<SendGraph>,
    n: usize,
    h: usize,
    w: usize,
}

impl InferBuffers {
    fn new(
        dev: &dyn Device,
        cfg: &UNetConfig,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<Self, NnError> {
        let a = |len: usize| dev.alloc(2 * len.max(1));
        let px = |l: usize| n * (h >> l) * (w >> l);
        let d = cfg.depth;
        Ok(InferBuffers {
            x: a(n * h * w * cfg.in_channels)?,
            t: (0..=d)
                .map(|l| a(px(l) * cfg.channels(l)))
                .collect::<Result<_, _>>()?,
            cat: (0..d)
                .map(|l| a(px(l) * 2 * cfg.channels(l)))
                .collect::<Result<_, _>>()?,
            pooled: (0..d)
                .map(|l| a(px(l + 1) * cfg.channels(l)))
                .collect::<Result<_, _>>()?,
            idx: (0..d)
                .map(|l| dev.alloc((px(l + 1) * cfg.channels(l)).max(1)))
                .collect::<Result<_, _>>()?,
            dout: (0..=d)
                .map(|l| a(px(l) * cfg.channels(l)))
                .collect::<Result<_, _>>()?,
            logits: dev.alloc(4 * (n * h * w * cfg.classes).max(1))?,
            graph: None,
            n,
            h,
            w,
        })
    }

    /// Copies an NHWC fp32 input of this set's shape to the device as fp16.
    pub fn upload_input(&self, dev: &dyn Device, x: &[f32]) -> Result<(), NnError> {
        let hx: Vec<u16> = x.iter().map(|v| f16::from_f32(*v).to_bits()).collect();
        if 2 * hx.len() > self.x.bytes() {
            return Err(NnError::Shape(format!(
                "input of {} values for a {}-byte buffer",
                hx.len(),
                self.x.bytes()
            )));
        }
        dev.upload(self.x.at::<u16>(0), bytemuck::cast_slice(&hx))
    }

    /// Waits for the queued forward pass and copies the logits back.
    pub fn download_logits(
        &self,
        dev: &dyn Device,
        classes: usize,
    ) -> Result<crate::nn::Tensor, NnError> {
        let mut v = vec![0.0f32; self.n * self.h * self.w * classes];
        dev.download(self.logits.at::<f32>(0), bytemuck::cast_slice_mut(&mut v))?;
        crate::nn::Tensor::from_nhwc(self.n, self.h, self.w, classes, v)
    }
}

/// A recorded graph that may move to another thread with its backend.
pub struct SendGraph(pub cudarc::driver::CudaGraph);

// SAFETY: cudarc's CudaGraph holds raw CUgraph handles and so is not Send. CUDA requires only
// that a graph is not used from two threads at once; it is reachable solely through
// `&mut CudaBackend`, so every use is serialised, and `launch` binds the context to the calling
// thread first.
unsafe impl Send for SendGraph {}

/// Buffer sets by (batch, height, width).
#[derive(Default)]
pub struct Arena {
    pub sets: HashMap<(usize, usize, usize), InferBuffers>,
}

impl Arena {
    /// The buffers for this shape, allocated on first use.
    pub fn get(
        &mut self,
        dev: &dyn Device,
        cfg: &UNetConfig,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<&mut InferBuffers, NnError> {
        if !self.sets.contains_key(&(n, h, w)) {
            // Bound memory: one shape at a time besides the current one is plenty for a scanner.
            if self.sets.len() >= 4 {
                self.sets.clear();
            }
            self.sets
                .insert((n, h, w), InferBuffers::new(dev, cfg, n, h, w)?);
        }
        self.sets
            .get_mut(&(n, h, w))
            .ok_or_else(|| NnError::Device("arena lookup failed".into()))
    }
}

/// Enqueues the whole forward pass (input already in `b.x`, logits left in `b.logits`).
pub fn enqueue_forward(
    l: &dyn Device,
    wts: &InferWeights,
    b: &InferBuffers,
) -> Result<(), NnError> {
    let (n, h, w) = (b.n, b.h, b.w);
    let cfg = &wts.cfg;
    let d = cfg.depth;
    let dims = |lv: usize| (n, h >> lv, w >> lv);
    let mut cur = Act {
        p: b.x.at::<u16>(0),
        ld: cfg.in_channels,
    };
    let mut cin = cfg.in_channels;
    for lv in 0..=d {
        let c = cfg.channels(lv);
        let [c1, c2] = &wts.enc[lv];
        let t = Act {
            p: b.t[lv].at::<u16>(0),
            ld: c,
        };
        l.conv3x3(
            cur,
            c1.w.at::<u16>(0),
            t,
            c1.b.at::<f32>(0),
            true,
            0,
            dims(lv),
            cin,
            c,
        )?;
        let out = if lv < d {
            Act {
                p: b.cat[lv].at::<u16>(0),
                ld: 2 * c,
            }
        } else {
            Act {
                p: b.dout[lv].at::<u16>(0),
                ld: c,
            }
        };
        l.conv3x3(
            t,
            c2.w.at::<u16>(0),
            out,
            c2.b.at::<f32>(0),
            true,
            0,
            dims(lv),
            c,
            c,
        )?;
        if lv < d {
            l.maxpool(
                out,
                b.pooled[lv].at::<u16>(0),
                b.idx[lv].at::<u8>(0),
                dims(lv),
                c,
            )?;
            cur = Act {
                p: b.pooled[lv].at::<u16>(0),
                ld: c,
            };
        } else {
            cur = out;
        }
        cin = c;
    }
    for lv in (0..d).rev() {
        let c = cfg.channels(lv);
        let (uw, ub) = &wts.up[lv];
        let cat_up = Act {
            p: b.cat[lv].at::<u16>(c),
            ld: 2 * c,
        };
        l.upconv(
            cur,
            uw.at::<u16>(0),
            ub.at::<f32>(0),
            cat_up,
            dims(lv + 1),
            cfg.channels(lv + 1),
            c,
        )?;
        let [c1, c2] = &wts.dec[lv];
        let t = Act {
            p: b.t[lv].at::<u16>(0),
            ld: c,
        };
        l.conv3x3(
            Act {
                p: b.cat[lv].at::<u16>(0),
                ld: 2 * c,
            },
            c1.w.at::<u16>(0),
            t,
            c1.b.at::<f32>(0),
            true,
            0,
            dims(lv),
            2 * c,
            c,
        )?;
        let out = Act {
            p: b.dout[lv].at::<u16>(0),
            ld: c,
        };
        l.conv3x3(
            t,
            c2.w.at::<u16>(0),
            out,
            c2.b.at::<f32>(0),
            true,
            0,
            dims(lv),
            c,
            c,
        )?;
        cur = out;
    }
    l.head(
        cur,
        wts.head_w.at::<f32>(0),
        wts.head_b.at::<f32>(0),
        b.logits.at::<f32>(0),
        n * h * w,
        cfg.base,
        cfg.classes,
    )
}
