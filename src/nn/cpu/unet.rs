//! The U-Net graph on the CPU layers: training forward (keeping what backward needs),
//! backward, and the folded inference forward.

use super::numerics::Numerics;
use super::{batchnorm, conv3x3, head, pool, upconv};
use crate::nn::fold::FoldedUNet;
use crate::nn::params::{Block, UNetParams};
use crate::nn::profile::{span, Op};
use crate::nn::Tensor;

/// Forward state of one block, kept for its backward pass.
struct BlockCache {
    input: Tensor,
    z1: Tensor,
    bn1: batchnorm::BnCache,
    a1: Tensor,
    z2: Tensor,
    bn2: batchnorm::BnCache,
    a2: Tensor,
}

/// Everything the backward pass needs from a training forward pass.
pub struct TrainCache {
    enc: Vec<BlockCache>,
    pool_idx: Vec<Vec<u8>>,
    dec: Vec<BlockCache>,
}

fn block_forward(b: &mut Block, input: Tensor, num: Numerics, threads: usize) -> BlockCache {
    let prec = num.gemm;
    let z1 = {
        let _s = span(Op::ConvForward);
        conv3x3::ConvWeights::new_in(&b.conv1, b.cin, b.cout, prec).apply(
            &input,
            conv3x3::Epilogue::None,
            threads,
        )
    };
    let z1 = num.stored(z1);
    let (a1, bn1) = {
        let _s = span(Op::BatchNormForward);
        batchnorm::forward_train(&z1, &mut b.bn1, threads)
    };
    let a1 = num.stored(a1);
    let z2 = {
        let _s = span(Op::ConvForward);
        conv3x3::ConvWeights::new_in(&b.conv2, b.cout, b.cout, prec).apply(
            &a1,
            conv3x3::Epilogue::None,
            threads,
        )
    };
    let z2 = num.stored(z2);
    let (a2, bn2) = {
        let _s = span(Op::BatchNormForward);
        batchnorm::forward_train(&z2, &mut b.bn2, threads)
    };
    let a2 = num.stored(a2);
    BlockCache {
        input,
        z1,
        bn1,
        a1,
        z2,
        bn2,
        a2,
    }
}

/// Backward through one block; returns the gradient of its input (unless `need_dx` is false).
fn block_backward(
    b: &Block,
    c: &BlockCache,
    da2: &Tensor,
    g: &mut Block,
    need_dx: bool,
    num: Numerics,
    threads: usize,
) -> Option<Tensor> {
    let prec = num.gemm;
    let dz2 = {
        let _s = span(Op::BatchNormBackward);
        batchnorm::backward(
            da2,
            &c.z2,
            &c.a2,
            &b.bn2.weight,
            &c.bn2,
            &mut g.bn2.weight,
            &mut g.bn2.bias,
            threads,
        )
    };
    let dz2 = num.stored_grad(dz2);
    {
        let _s = span(Op::ConvWeightGrad);
        conv3x3::unpack_add(
            &conv3x3::backward_weights_in(prec, &c.a1, &dz2, threads),
            b.cout,
            b.cout,
            &mut g.conv2,
        );
    }
    let da1 = {
        let _s = span(Op::ConvDataGrad);
        conv3x3::backward_data(
            &dz2,
            &conv3x3::ConvWeights::for_dgrad_in(&b.conv2, b.cout, b.cout, prec),
            threads,
        )
    };
    let da1 = num.stored_grad(da1);
    let dz1 = {
        let _s = span(Op::BatchNormBackward);
        batchnorm::backward(
            &da1,
            &c.z1,
            &c.a1,
            &b.bn1.weight,
            &c.bn1,
            &mut g.bn1.weight,
            &mut g.bn1.bias,
            threads,
        )
    };
    let dz1 = num.stored_grad(dz1);
    {
        let _s = span(Op::ConvWeightGrad);
        conv3x3::unpack_add(
            &conv3x3::backward_weights_in(prec, &c.input, &dz1, threads),
            b.cin,
            b.cout,
            &mut g.conv1,
        );
    }
    need_dx.then(|| {
        let _s = span(Op::ConvDataGrad);
        num.stored_grad(conv3x3::backward_data(
            &dz1,
            &conv3x3::ConvWeights::for_dgrad_in(&b.conv1, b.cin, b.cout, prec),
            threads,
        ))
    })
}

/// Training-mode forward: batch statistics (running statistics in `p` are updated), returns
/// the logits and the cache for [`backward`]. `num` says what is rounded (see [`Numerics`]).
pub fn forward_train(
    p: &mut UNetParams,
    x: &Tensor,
    num: Numerics,
    threads: usize,
) -> (Tensor, TrainCache) {
    let depth = p.cfg.depth;
    let mut enc: Vec<BlockCache> = Vec::with_capacity(depth + 1);
    let mut pool_idx = Vec::with_capacity(depth);
    let mut cur = num.stored(x.clone());
    for i in 0..=depth {
        let c = block_forward(&mut p.enc[i], cur, num, threads);
        cur = if i < depth {
            let _s = span(Op::Pool);
            let (pooled, idx) = pool::forward(&c.a2);
            pool_idx.push(idx);
            pooled
        } else {
            Tensor::zeros(0, 0, 0, 0)
        };
        enc.push(c);
    }
    // Decoder caches are built deepest first, then put in level order.
    let mut dec: Vec<BlockCache> = Vec::with_capacity(depth);
    for i in (0..depth).rev() {
        let below = dec.last().map(|c| &c.a2).unwrap_or(&enc[depth].a2);
        let skip = &enc[i].a2;
        let u = &p.up[i];
        let _s = span(Op::UpConv);
        let cat = upconv::concat_upsampled(
            skip,
            below,
            &upconv::pack(&u.weight, u.cin, u.cout),
            &u.bias,
            threads,
        );
        drop(_s);
        let c = block_forward(&mut p.dec[i], num.stored(cat), num, threads);
        dec.push(c);
    }
    dec.reverse();
    let _s = span(Op::Head);
    let logits = num.stored(head::forward(
        &dec[0].a2,
        &p.head_weight,
        &p.head_bias,
        threads,
    ));
    (logits, TrainCache { enc, pool_idx, dec })
}

/// Backward pass from the logit gradient; returns all parameter gradients (running-statistic
/// entries stay zero).
pub fn backward(
    p: &UNetParams,
    cache: &TrainCache,
    dlogits: &Tensor,
    num: Numerics,
    threads: usize,
) -> UNetParams {
    let depth = p.cfg.depth;
    let mut g = UNetParams::zeros(&p.cfg);
    let (enc, dec) = (&cache.enc, &cache.dec);
    let mut dcur = num.stored_grad(head::backward(
        &dec[0].a2,
        &p.head_weight,
        dlogits,
        &mut g.head_weight,
        &mut g.head_bias,
        threads,
    ));
    let mut dskips: Vec<Option<Tensor>> = (0..depth).map(|_| None).collect();
    for i in 0..depth {
        let dcat = block_backward(&p.dec[i], &dec[i], &dcur, &mut g.dec[i], true, num, threads)
            .unwrap_or_else(|| Tensor::zeros(0, 0, 0, 0));
        let _s = span(Op::UpConv);
        let skip = &enc[i].a2;
        dskips[i] = Some(upconv::extract_channels(&dcat, 0, skip.c));
        let below = if i + 1 == depth {
            &enc[depth].a2
        } else {
            &dec[i + 1].a2
        };
        let u = &p.up[i];
        let packed = upconv::pack(&u.weight, u.cin, u.cout);
        let mut dpacked = vec![0.0; packed.len()];
        dcur = upconv::backward(
            below,
            &packed,
            &dcat,
            skip.c,
            &mut dpacked,
            &mut g.up[i].bias,
            threads,
        );
        num.store_grad(&mut dcur);
        upconv::unpack_add(&dpacked, u.cin, u.cout, &mut g.up[i].weight);
    }
    // dcur is now the gradient of the bottleneck output.
    for i in (0..=depth).rev() {
        let dx = block_backward(
            &p.enc[i],
            &enc[i],
            &dcur,
            &mut g.enc[i],
            i > 0,
            num,
            threads,
        );
        if i > 0 {
            let _s = span(Op::Pool);
            let dpooled = dx.unwrap_or_else(|| Tensor::zeros(0, 0, 0, 0));
            let a = &enc[i - 1].a2;
            let mut d = pool::backward(&dpooled, &cache.pool_idx[i - 1], a.h, a.w);
            if let Some(s) = &dskips[i - 1] {
                for (x, y) in d.data.iter_mut().zip(&s.data) {
                    *x += y;
                }
            }
            dcur = num.stored_grad(d);
        }
    }
    g
}

/// Inference forward on BatchNorm-folded, pre-packed weights.
pub fn forward_eval(m: &FoldedUNet, x: &Tensor, threads: usize) -> Tensor {
    let depth = m.depth;
    let run_block = |b: &crate::nn::fold::FoldedBlock, x: &Tensor| {
        let _s = span(Op::ConvForward);
        let a = b.w1.apply(x, conv3x3::Epilogue::BiasRelu(&b.b1), threads);
        b.w2.apply(&a, conv3x3::Epilogue::BiasRelu(&b.b2), threads)
    };
    let mut skips = Vec::with_capacity(depth);
    // The first block reads the input in place (no copy of the batch).
    let mut cur = run_block(&m.enc[0], x);
    for i in 1..=depth {
        let pooled = {
            let _s = span(Op::Pool);
            pool::forward(&cur).0
        };
        skips.push(cur);
        cur = run_block(&m.enc[i], &pooled);
    }
    for i in (0..depth).rev() {
        let skip = &skips[i];
        let u = &m.up[i];
        let cat = {
            let _s = span(Op::UpConv);
            upconv::concat_upsampled(skip, &cur, &u.packed, &u.bias, threads)
        };
        cur = run_block(&m.dec[i], &cat);
    }
    head::forward(&cur, &m.head_weight, &m.head_bias, threads)
}
