//! Every buffer of one training step at one (batch, height, width), allocated once and reused:
//! the activations the backward pass needs, the gradient scratch, BatchNorm statistics, the
//! loss inputs and outputs.
//!
//! Per level `l` (c = base * 2^l channels, px = n * (h >> l) * (w >> l) pixels):
//! - encoder block: `z1` (raw conv1 output), `a1` (BN+ReLU), `z2`; its output `a2` is written
//!   into channels `0..c` of `cat[l]` (the decoder's `[skip, up]` buffer), or into `bottom` at
//!   the deepest level; `pooled[l]`, `idx[l]` (max-pool output and winners);
//! - decoder block: `z1`, `a1`, `z2`, `a2`;
//! - gradients: `ga` (of a block output), `gz`, `ga1` (scratch inside a block), `gcat[l]` (of
//!   the concatenation: channels `0..c` are the skip gradient, kept until the encoder's
//!   backward adds it in the max-pool backward), `gpooled[l]`.

use crate::nn::cuda::device::{Buf, Device};
use crate::nn::{NnError, UNetConfig};

/// The activations of one `[conv -> BN -> ReLU] x 2` block.
pub struct BlockBufs {
    pub z1: Buf,
    pub a1: Buf,
    pub z2: Buf,
    /// The block output when it is not a slice of a concatenation buffer.
    pub a2: Option<Buf>,
}

/// Buffers of one resolution level.
pub struct LevelBufs {
    pub c: usize,
    pub px: usize,
    pub enc: BlockBufs,
    pub dec: Option<BlockBufs>,
    pub cat: Option<Buf>,
    pub pooled: Option<Buf>,
    pub idx: Option<Buf>,
    pub ga: Buf,
    pub gz: Buf,
    pub ga1: Buf,
    pub gcat: Option<Buf>,
    pub gpooled: Option<Buf>,
}

/// Where one BatchNorm layer's values live in [`TrainBuffers::f64s`] and [`TrainBuffers::f32s`].
#[derive(Clone, Copy, Debug)]
pub struct BnSlot {
    pub c: usize,
    /// `[sum, sum of squares]` of the forward (2c f64), then the backward sums (2c f64).
    pub off64: usize,
    /// mean, invstd, scale, shift (4c f32).
    pub off32: usize,
}

/// All buffers of one (batch, height, width).
pub struct TrainBuffers {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub x: Buf,
    pub levels: Vec<LevelBufs>,
    pub bottom: Buf,
    pub logits: Buf,
    pub dlogits: Buf,
    pub labels: Buf,
    pub labelled: Buf,
    /// fp64 accumulators zeroed by one memset per step: every BN slot, then the loss sums.
    pub f64s: Buf,
    pub f64_len: usize,
    /// Offset of the loss accumulators (3k+1) in `f64s`.
    pub loss_acc: usize,
    /// Loss results (3+2k f64), written by `loss_finalize`.
    pub loss_out: Buf,
    pub f32s: Buf,
    /// `grad_overflow` flag (one i32).
    pub flag: Buf,
    /// BatchNorm slots: encoder level l uses 2l and 2l+1, decoder level l 2(depth+1)+2l and +1.
    pub bn: Vec<BnSlot>,
}

impl TrainBuffers {
    /// Allocates everything for a batch of `n` images of `h` x `w`.
    pub fn new(
        dev: &dyn Device,
        cfg: &UNetConfig,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<Self, NnError> {
        let d = cfg.depth;
        let k = cfg.classes;
        let half = |len: usize| dev.alloc(2 * len);
        let block = |px: usize, c: usize, own_a2: bool| -> Result<BlockBufs, NnError> {
            Ok(BlockBufs {
                z1: half(px * c)?,
                a1: half(px * c)?,
                z2: half(px * c)?,
                a2: if own_a2 { Some(half(px * c)?) } else { None },
            })
        };
        let mut levels = Vec::with_capacity(d + 1);
        for l in 0..=d {
            let c = cfg.channels(l);
            let px = n * (h >> l) * (w >> l);
            let inner = l < d;
            let px_below = n * (h >> (l + 1)) * (w >> (l + 1));
            levels.push(LevelBufs {
                c,
                px,
                enc: block(px, c, false)?,
                dec: if inner {
                    Some(block(px, c, true)?)
                } else {
                    None
                },
                cat: if inner { Some(half(px * 2 * c)?) } else { None },
                pooled: if inner {
                    Some(half(px_below * c)?)
                } else {
                    None
                },
                idx: if inner {
                    Some(dev.alloc(px_below * c)?)
                } else {
                    None
                },
                ga: half(px * c)?,
                gz: half(px * c)?,
                ga1: half(px * c)?,
                gcat: if inner { Some(half(px * 2 * c)?) } else { None },
                gpooled: if inner {
                    Some(half(px_below * c)?)
                } else {
                    None
                },
            });
        }
        let mut bn = Vec::new();
        let (mut off64, mut off32) = (0, 0);
        for l in (0..=d).chain(0..d) {
            let c = cfg.channels(l);
            for _ in 0..2 {
                bn.push(BnSlot { c, off64, off32 });
                off64 += 4 * c;
                off32 += 4 * c;
            }
        }
        let loss_acc = off64;
        let f64_len = off64 + 3 * k + 1;
        let pixels = n * h * w;
        Ok(TrainBuffers {
            n,
            h,
            w,
            x: half(pixels * cfg.in_channels)?,
            bottom: half(n * (h >> d) * (w >> d) * cfg.channels(d))?,
            levels,
            logits: dev.alloc(4 * pixels * k)?,
            dlogits: dev.alloc(4 * pixels * k)?,
            labels: dev.alloc(pixels)?,
            labelled: dev.alloc(n * k)?,
            f64s: dev.alloc(8 * f64_len)?,
            f64_len,
            loss_acc,
            loss_out: dev.alloc(8 * (3 + 2 * k))?,
            f32s: dev.alloc(4 * off32)?,
            flag: dev.alloc(4)?,
            bn,
        })
    }

    /// Slot of encoder (`dec == false`) or decoder BatchNorm `j` (0 or 1) at level `l`.
    pub fn bn_slot(&self, depth: usize, dec: bool, l: usize, j: usize) -> BnSlot {
        self.bn[if dec {
            2 * (depth + 1) + 2 * l + j
        } else {
            2 * l + j
        }]
    }

    /// Bytes allocated (for logs and the memory estimate in the report).
    pub fn bytes(&self) -> usize {
        let lv: usize = self
            .levels
            .iter()
            .map(|l| {
                let blk = |b: &BlockBufs| {
                    b.z1.bytes() + b.a1.bytes() + b.z2.bytes() + b.a2.as_ref().map_or(0, Buf::bytes)
                };
                let opt = |b: &Option<Buf>| b.as_ref().map_or(0, Buf::bytes);
                blk(&l.enc)
                    + l.dec.as_ref().map_or(0, blk)
                    + opt(&l.cat)
                    + opt(&l.pooled)
                    + opt(&l.idx)
                    + l.ga.bytes()
                    + l.gz.bytes()
                    + l.ga1.bytes()
                    + opt(&l.gcat)
                    + opt(&l.gpooled)
            })
            .sum();
        lv + self.x.bytes()
            + self.bottom.bytes()
            + self.logits.bytes()
            + self.dlogits.bytes()
            + self.f64s.bytes()
            + self.f32s.bytes()
    }
}
