//! One training step as a sequence of kernel launches: the same graph as the CPU's
//! `unet::forward_train` / `unet::backward` (src/nn/cpu/unet.rs), written against
//! [`Device`] so the CPU simulator can run exactly this sequence too (tests/train_sim.rs).
//!
//! Forward per block: conv (raw output, BN sums in its epilogue) -> `bn_finalize` (batch
//! statistics, running-statistic update) -> BN+ReLU, twice. Backward per block, mirroring it:
//! BN backward -> conv weight gradient -> conv data gradient, twice. Gradients of activations
//! are fp16 and carry the loss scale; weight gradients accumulate in fp32.

use super::buffers::{BlockBufs, BnSlot, LevelBufs, TrainBuffers};
use super::params::DevParams;
use crate::nn::cuda::device::{Buf, Device};
use crate::nn::cuda::launch::Act;
use crate::nn::cuda::ops::*;
use crate::nn::NnError;

type Dims = (usize, usize, usize);

fn act(b: &Buf, ld: usize) -> Act {
    Act {
        p: b.at::<u16>(0),
        ld,
    }
}

/// Channels `from..` of a buffer whose rows are `ld` wide.
fn slice(b: &Buf, from: usize, ld: usize) -> Act {
    Act {
        p: b.at::<u16>(from),
        ld,
    }
}

fn need<'a>(b: &'a Option<Buf>, what: &str) -> Result<&'a Buf, NnError> {
    b.as_ref()
        .ok_or_else(|| NnError::Device(format!("training buffer {what} missing")))
}

fn need_dec(l: &LevelBufs) -> Result<&BlockBufs, NnError> {
    l.dec
        .as_ref()
        .ok_or_else(|| NnError::Device("decoder buffers missing".into()))
}

/// fp64 and fp32 addresses of one BatchNorm layer.
struct Bn {
    c: usize,
    stats: u64,
    sums: u64,
    mean: u64,
    invstd: u64,
    scale: u64,
    shift: u64,
}

fn bn(b: &TrainBuffers, s: BnSlot) -> Bn {
    let c = s.c;
    Bn {
        c,
        stats: b.f64s.at::<f64>(s.off64),
        sums: b.f64s.at::<f64>(s.off64 + 2 * c),
        mean: b.f32s.at::<f32>(s.off32),
        invstd: b.f32s.at::<f32>(s.off32 + c),
        scale: b.f32s.at::<f32>(s.off32 + 2 * c),
        shift: b.f32s.at::<f32>(s.off32 + 3 * c),
    }
}

/// What a block's passes need besides the device and the parameters.
struct BlockIo<'a> {
    /// Tensor name prefix, e.g. `enc2` or `dec0`.
    name: String,
    bn: [Bn; 2],
    input: Act,
    cin: usize,
    bufs: &'a BlockBufs,
    /// The block output `a2` (a slice of `cat` for encoder levels above the bottom).
    out: Act,
    dims: Dims,
}

impl BlockIo<'_> {
    fn t(&self, what: &str) -> String {
        format!("{}.{what}", self.name)
    }
    fn rows(&self) -> usize {
        self.dims.0 * self.dims.1 * self.dims.2
    }
}

fn bn_forward(
    dev: &dyn Device,
    p: &DevParams,
    io: &BlockIo,
    j: usize,
    z: Act,
    y: Act,
) -> Result<(), NnError> {
    let (b, name) = (&io.bn[j], io.t(&format!("bn{}", j + 1)));
    let running = (
        p.p_at(&format!("{name}.running_mean"))?,
        p.p_at(&format!("{name}.running_var"))?,
    );
    let g = p.p_at(&format!("{name}.weight"))?;
    let beta = p.p_at(&format!("{name}.bias"))?;
    dev.bn_finalize(
        b.stats,
        io.rows(),
        g,
        beta,
        Some(running),
        [b.mean, b.invstd, b.scale, b.shift],
        b.c,
    )?;
    dev.bn_apply_relu(z, y, b.scale, b.shift, io.rows(), b.c)
}

fn block_forward(dev: &dyn Device, p: &DevParams, io: &BlockIo) -> Result<(), NnError> {
    let c = io.bn[0].c;
    let (z1, a1, z2) = (
        act(&io.bufs.z1, c),
        act(&io.bufs.a1, c),
        act(&io.bufs.z2, c),
    );
    dev.conv3x3(
        io.input,
        p.fwd(&io.t("conv1.weight"))?,
        z1,
        0,
        false,
        io.bn[0].stats,
        io.dims,
        io.cin,
        c,
    )?;
    bn_forward(dev, p, io, 0, z1, a1)?;
    dev.conv3x3(
        a1,
        p.fwd(&io.t("conv2.weight"))?,
        z2,
        0,
        false,
        io.bn[1].stats,
        io.dims,
        c,
        c,
    )?;
    bn_forward(dev, p, io, 1, z2, io.out)
}

#[allow(clippy::too_many_arguments)]
fn bn_backward(
    dev: &dyn Device,
    p: &DevParams,
    io: &BlockIo,
    j: usize,
    dy: Act,
    z: Act,
    y: Act,
    dz: Act,
) -> Result<(), NnError> {
    let (b, name) = (&io.bn[j], io.t(&format!("bn{}", j + 1)));
    let w = format!("{name}.weight");
    let bias = format!("{name}.bias");
    dev.bn_backward(
        dy,
        z,
        y,
        p.p_at(&w)?,
        b.mean,
        b.invstd,
        b.sums,
        dz,
        p.g_at(&w)?,
        p.g_at(&bias)?,
        io.rows(),
        b.c,
    )
}

/// Backward through one block from the gradient in `lv.ga`; writes the input gradient to `dx`.
fn block_backward(
    dev: &dyn Device,
    p: &DevParams,
    io: &BlockIo,
    lv: &LevelBufs,
    dx: Option<Act>,
) -> Result<(), NnError> {
    let c = lv.c;
    let (ga, gz, ga1) = (act(&lv.ga, c), act(&lv.gz, c), act(&lv.ga1, c));
    let (z1, a1, z2) = (
        act(&io.bufs.z1, c),
        act(&io.bufs.a1, c),
        act(&io.bufs.z2, c),
    );
    bn_backward(dev, p, io, 1, ga, z2, io.out, gz)?;
    dev.conv3x3_wgrad(a1, gz, p.g_at(&io.t("conv2.weight"))?, io.dims, c, c)?;
    dev.conv3x3(
        gz,
        p.dgrad(&io.t("conv2.weight"))?,
        ga1,
        0,
        false,
        0,
        io.dims,
        c,
        c,
    )?;
    bn_backward(dev, p, io, 0, ga1, z1, a1, gz)?;
    dev.conv3x3_wgrad(
        io.input,
        gz,
        p.g_at(&io.t("conv1.weight"))?,
        io.dims,
        io.cin,
        c,
    )?;
    if let Some(dx) = dx {
        dev.conv3x3(
            gz,
            p.dgrad(&io.t("conv1.weight"))?,
            dx,
            0,
            false,
            0,
            io.dims,
            c,
            io.cin,
        )?;
    }
    Ok(())
}

/// The block descriptions of a step, built once per call from the buffers.
struct Graph<'a> {
    b: &'a TrainBuffers,
    depth: usize,
    in_c: usize,
}

impl<'a> Graph<'a> {
    fn dims(&self, l: usize) -> Dims {
        (self.b.n, self.b.h >> l, self.b.w >> l)
    }

    fn enc(&self, l: usize) -> Result<BlockIo<'a>, NnError> {
        let b = self.b;
        let lv = &b.levels[l];
        let (input, cin) = if l == 0 {
            (act(&b.x, self.in_c), self.in_c)
        } else {
            (
                act(need(&b.levels[l - 1].pooled, "pooled")?, b.levels[l - 1].c),
                b.levels[l - 1].c,
            )
        };
        let out = if l < self.depth {
            act(need(&lv.cat, "cat")?, 2 * lv.c)
        } else {
            act(&b.bottom, lv.c)
        };
        let bn = [
            bn(b, b.bn_slot(self.depth, false, l, 0)),
            bn(b, b.bn_slot(self.depth, false, l, 1)),
        ];
        Ok(BlockIo {
            name: format!("enc{l}"),
            bn,
            input,
            cin,
            bufs: &lv.enc,
            out,
            dims: self.dims(l),
        })
    }

    fn dec(&self, l: usize) -> Result<BlockIo<'a>, NnError> {
        let b = self.b;
        let lv = &b.levels[l];
        let d = need_dec(lv)?;
        let bn = [
            bn(b, b.bn_slot(self.depth, true, l, 0)),
            bn(b, b.bn_slot(self.depth, true, l, 1)),
        ];
        let out = act(need(&d.a2, "decoder output")?, lv.c);
        Ok(BlockIo {
            name: format!("dec{l}"),
            bn,
            input: act(need(&lv.cat, "cat")?, 2 * lv.c),
            cin: 2 * lv.c,
            bufs: d,
            out,
            dims: self.dims(l),
        })
    }

    /// The output of the decoder level `l` (or the bottom when `l == depth`): input of `up{l-1}`.
    fn level_out(&self, l: usize) -> Result<Act, NnError> {
        let lv = &self.b.levels[l];
        if l == self.depth {
            Ok(act(&self.b.bottom, lv.c))
        } else {
            Ok(act(need(&need_dec(lv)?.a2, "decoder output")?, lv.c))
        }
    }
}

/// Training-mode forward: input already in `b.x`; logits left in `b.logits`, the BatchNorm
/// running statistics in `p.p` updated.
pub fn forward(dev: &dyn Device, p: &DevParams, b: &TrainBuffers) -> Result<(), NnError> {
    let cfg = &p.cfg;
    let g = Graph {
        b,
        depth: cfg.depth,
        in_c: cfg.in_channels,
    };
    for l in 0..=cfg.depth {
        let io = g.enc(l)?;
        block_forward(dev, p, &io)?;
        if l < cfg.depth {
            let lv = &b.levels[l];
            dev.maxpool(
                io.out,
                need(&lv.pooled, "pooled")?.at::<u16>(0),
                need(&lv.idx, "idx")?.at::<u8>(0),
                g.dims(l),
                lv.c,
            )?;
        }
    }
    for l in (0..cfg.depth).rev() {
        let lv = &b.levels[l];
        let up_in = g.level_out(l + 1)?;
        let cat_up = slice(need(&lv.cat, "cat")?, lv.c, 2 * lv.c);
        dev.upconv(
            up_in,
            p.fwd(&format!("up{l}.weight"))?,
            p.p_at(&format!("up{l}.bias"))?,
            cat_up,
            g.dims(l + 1),
            b.levels[l + 1].c,
            lv.c,
        )?;
        block_forward(dev, p, &g.dec(l)?)?;
    }
    let top = g.level_out(0)?;
    dev.head(
        top,
        p.p_at("head.weight")?,
        p.p_at("head.bias")?,
        b.logits.at::<f32>(0),
        b.n * b.h * b.w,
        cfg.base,
        cfg.classes,
    )
}

/// Fused loss on `b.logits` with labels in `b.labels`/`b.labelled`; `b.dlogits` = scale * dL/dlogits.
pub fn loss(dev: &dyn Device, p: &DevParams, b: &TrainBuffers, scale: f32) -> Result<(), NnError> {
    let k = p.cfg.classes;
    dev.loss(
        b.logits.at::<f32>(0),
        b.labels.at::<u8>(0),
        b.labelled.at::<u8>(0),
        b.f64s.at::<f64>(b.loss_acc),
        b.loss_out.at::<f64>(0),
        b.dlogits.at::<f32>(0),
        b.n,
        b.h * b.w,
        k,
        scale,
    )
}

/// Backward from `b.dlogits`: every gradient added into `p.g` (which must be zeroed first).
pub fn backward(dev: &dyn Device, p: &DevParams, b: &TrainBuffers) -> Result<(), NnError> {
    let cfg = &p.cfg;
    let d = cfg.depth;
    let g = Graph {
        b,
        depth: d,
        in_c: cfg.in_channels,
    };
    let top = g.level_out(0)?;
    let rows = b.n * b.h * b.w;
    let (hw, hb) = (
        p.p_at("head.weight")?,
        (p.g_at("head.weight")?, p.g_at("head.bias")?),
    );
    dev.head_bwd(
        top,
        b.dlogits.at::<f32>(0),
        hw,
        b.levels[0].ga.at::<u16>(0),
        hb.0,
        hb.1,
        rows,
        cfg.base,
        cfg.classes,
    )?;
    for l in 0..d {
        let lv = &b.levels[l];
        let gcat = need(&lv.gcat, "gcat")?;
        block_backward(dev, p, &g.dec(l)?, lv, Some(act(gcat, 2 * lv.c)))?;
        let below = &b.levels[l + 1];
        let (w, gw, gb) = (
            p.fwd(&format!("up{l}.weight"))?,
            p.g_at(&format!("up{l}.weight"))?,
            p.g_at(&format!("up{l}.bias"))?,
        );
        dev.upconv_bwd(
            g.level_out(l + 1)?,
            slice(gcat, lv.c, 2 * lv.c),
            w,
            below.ga.at::<u16>(0),
            gw,
            gb,
            g.dims(l + 1),
            below.c,
            lv.c,
        )?;
    }
    for l in (0..=d).rev() {
        let dx = if l > 0 {
            Some(act(
                need(&b.levels[l - 1].gpooled, "gpooled")?,
                b.levels[l - 1].c,
            ))
        } else {
            None
        };
        block_backward(dev, p, &g.enc(l)?, &b.levels[l], dx)?;
        if l > 0 {
            let up = &b.levels[l - 1];
            let skip = slice(need(&up.gcat, "gcat")?, 0, 2 * up.c);
            let (gp, idx) = (
                need(&up.gpooled, "gpooled")?.at::<u16>(0),
                need(&up.idx, "idx")?.at::<u8>(0),
            );
            dev.maxpool_bwd(gp, idx, Some(skip), up.ga.at::<u16>(0), g.dims(l - 1), up.c)?;
        }
    }
    Ok(())
}
