//! Inference on the GPU: BatchNorm-folded fp16 weights, one buffer set per (batch, height,
//! width) allocated on first use and reused, and the whole forward pass recorded once into a
//! CUDA graph and replayed (a U-Net forward is ~60 launches; replaying them as one graph removes
//! the per-launch CPU cost that dominates at small batches).
//!
//! Data flow per level i (c = base * 2^i), as in src/nn/cpu/unet.rs `forward_eval`:
//! encoder conv1 -> `t[i]`; conv2 writes straight into channels 0..c of `cat[i]` (the decoder's
//! `[skip, up]` buffer); pool reads that slice; the decoder's transposed conv writes channels
//! c..2c of `cat[i]`; no concatenation copy exists.

use super::launch::{addr, Act, Launcher, Ops};
use crate::nn::fold::fold_conv_bn;
use crate::nn::{NnError, UNetConfig, UNetParams};
use cudarc::driver::{CudaGraph, CudaSlice, CudaStream};
use half::f16;
use std::collections::HashMap;

fn dev_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> NnError + '_ {
    move |e| NnError::Device(format!("{what}: {e}"))
}

/// Uploads fp32 values as fp16.
pub fn upload_f16(
    stream: &std::sync::Arc<CudaStream>,
    v: &[f32],
) -> Result<CudaSlice<f16>, NnError> {
    let h: Vec<f16> = v.iter().map(|x| f16::from_f32(*x)).collect();
    stream
        .clone_htod(&h)
        .map_err(dev_err("uploading fp16 weights"))
}

/// Uploads fp32 values.
pub fn upload_f32(
    stream: &std::sync::Arc<CudaStream>,
    v: &[f32],
) -> Result<CudaSlice<f32>, NnError> {
    stream
        .clone_htod(v)
        .map_err(dev_err("uploading fp32 weights"))
}

/// A folded conv: packed fp16 weights and fp32 bias.
struct FoldedConv {
    w: CudaSlice<f16>,
    b: CudaSlice<f32>,
}

/// Folded, packed, uploaded inference weights.
pub struct InferWeights {
    pub cfg: UNetConfig,
    enc: Vec<[FoldedConv; 2]>,
    dec: Vec<[FoldedConv; 2]>,
    up: Vec<(CudaSlice<f16>, CudaSlice<f32>)>,
    head_w: CudaSlice<f32>,
    head_b: CudaSlice<f32>,
}

fn fold(
    stream: &std::sync::Arc<CudaStream>,
    b: &crate::nn::params::Block,
) -> Result<[FoldedConv; 2], NnError> {
    use crate::nn::cpu::conv3x3::pack;
    let (w1, b1) = fold_conv_bn(&b.conv1, b.cin, b.cout, &b.bn1);
    let (w2, b2) = fold_conv_bn(&b.conv2, b.cout, b.cout, &b.bn2);
    Ok([
        FoldedConv {
            w: upload_f16(stream, &pack(&w1, b.cin, b.cout))?,
            b: upload_f32(stream, &b1)?,
        },
        FoldedConv {
            w: upload_f16(stream, &pack(&w2, b.cout, b.cout))?,
            b: upload_f32(stream, &b2)?,
        },
    ])
}

impl InferWeights {
    /// Folds BatchNorm into the convolutions (in f64 on the host, as the CPU backend does),
    /// packs and uploads everything.
    pub fn new(stream: &std::sync::Arc<CudaStream>, p: &UNetParams) -> Result<Self, NnError> {
        use crate::nn::cpu::upconv::pack as up_pack;
        Ok(InferWeights {
            cfg: p.cfg.clone(),
            enc: p
                .enc
                .iter()
                .map(|b| fold(stream, b))
                .collect::<Result<_, _>>()?,
            dec: p
                .dec
                .iter()
                .map(|b| fold(stream, b))
                .collect::<Result<_, _>>()?,
            up: p
                .up
                .iter()
                .map(|u| {
                    Ok((
                        upload_f16(stream, &up_pack(&u.weight, u.cin, u.cout))?,
                        upload_f32(stream, &u.bias)?,
                    ))
                })
                .collect::<Result<_, NnError>>()?,
            head_w: upload_f32(stream, &p.head_weight)?,
            head_b: upload_f32(stream, &p.head_bias)?,
        })
    }
}

/// Activations of one (batch, height, width), allocated once.
pub struct InferBuffers {
    pub x: CudaSlice<f16>,
    t: Vec<CudaSlice<f16>>,
    cat: Vec<CudaSlice<f16>>,
    pooled: Vec<CudaSlice<f16>>,
    idx: Vec<CudaSlice<u8>>,
    dout: Vec<CudaSlice<f16>>,
    pub logits: CudaSlice<f32>,
    /// The recorded forward pass, when graph capture worked.
    pub graph: Option<SendGraph>,
}

impl InferBuffers {
    fn new(
        stream: &std::sync::Arc<CudaStream>,
        cfg: &UNetConfig,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<Self, NnError> {
        let a = |len: usize| {
            stream
                .alloc_zeros::<f16>(len.max(1))
                .map_err(dev_err("allocating activations"))
        };
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
                .map(|l| {
                    stream
                        .alloc_zeros::<u8>(px(l + 1) * cfg.channels(l))
                        .map_err(dev_err("allocating pool indices"))
                })
                .collect::<Result<_, _>>()?,
            dout: (0..=d)
                .map(|l| a(px(l) * cfg.channels(l)))
                .collect::<Result<_, _>>()?,
            logits: stream
                .alloc_zeros::<f32>(n * h * w * cfg.classes)
                .map_err(dev_err("allocating logits"))?,
            graph: None,
        })
    }
}

/// A recorded graph that may move to another thread with its backend.
pub struct SendGraph(pub CudaGraph);

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
        stream: &std::sync::Arc<CudaStream>,
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
                .insert((n, h, w), InferBuffers::new(stream, cfg, n, h, w)?);
        }
        self.sets
            .get_mut(&(n, h, w))
            .ok_or_else(|| NnError::Device("arena lookup failed".into()))
    }
}

/// Enqueues the whole forward pass (input already in `b.x`, logits left in `b.logits`).
pub fn enqueue_forward(
    l: &Launcher,
    wts: &InferWeights,
    b: &InferBuffers,
    n: usize,
    h: usize,
    w: usize,
) -> Result<(), NnError> {
    let s = &l.stream;
    let cfg = &wts.cfg;
    let d = cfg.depth;
    let dims = |lv: usize| (n, h >> lv, w >> lv);
    let mut cur = Act {
        p: addr(&b.x, s, 0),
        ld: cfg.in_channels,
    };
    let mut cin = cfg.in_channels;
    for lv in 0..=d {
        let c = cfg.channels(lv);
        let [c1, c2] = &wts.enc[lv];
        let t = Act {
            p: addr(&b.t[lv], s, 0),
            ld: c,
        };
        l.conv3x3(
            cur,
            addr(&c1.w, s, 0),
            t,
            addr(&c1.b, s, 0),
            true,
            0,
            dims(lv),
            cin,
            c,
        )?;
        let out = if lv < d {
            Act {
                p: addr(&b.cat[lv], s, 0),
                ld: 2 * c,
            }
        } else {
            Act {
                p: addr(&b.dout[lv], s, 0),
                ld: c,
            }
        };
        l.conv3x3(
            t,
            addr(&c2.w, s, 0),
            out,
            addr(&c2.b, s, 0),
            true,
            0,
            dims(lv),
            c,
            c,
        )?;
        if lv < d {
            l.maxpool(
                out,
                addr(&b.pooled[lv], s, 0),
                addr(&b.idx[lv], s, 0),
                dims(lv),
                c,
            )?;
            cur = Act {
                p: addr(&b.pooled[lv], s, 0),
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
            p: addr(&b.cat[lv], s, c),
            ld: 2 * c,
        };
        l.upconv(
            cur,
            addr(uw, s, 0),
            addr(ub, s, 0),
            cat_up,
            dims(lv + 1),
            cfg.channels(lv + 1),
            c,
        )?;
        let [c1, c2] = &wts.dec[lv];
        let t = Act {
            p: addr(&b.t[lv], s, 0),
            ld: c,
        };
        l.conv3x3(
            Act {
                p: addr(&b.cat[lv], s, 0),
                ld: 2 * c,
            },
            addr(&c1.w, s, 0),
            t,
            addr(&c1.b, s, 0),
            true,
            0,
            dims(lv),
            2 * c,
            c,
        )?;
        let out = Act {
            p: addr(&b.dout[lv], s, 0),
            ld: c,
        };
        l.conv3x3(
            t,
            addr(&c2.w, s, 0),
            out,
            addr(&c2.b, s, 0),
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
        addr(&wts.head_w, s, 0),
        addr(&wts.head_b, s, 0),
        addr(&b.logits, s, 0),
        n * h * w,
        cfg.base,
        cfg.classes,
    )
}
