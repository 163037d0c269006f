//! Unsupervised adaptation to a new scanner: re-estimate every BatchNorm layer's running mean
//! and variance on the target site's images, with no contours and no weight change.
//!
//! A network trained elsewhere normalises each layer with its training domain's statistics;
//! on a scanner with other contrast, bias fields or noise those statistics are off and the
//! errors compound through the layers. Replacing them with the target's own (AdaBN, Li et al.
//! 2016) is free: forward passes in training mode only.
//!
//! The running statistics become the *cumulative average* over the target images (PyTorch's
//! `momentum=None`), weighted by batch size, so the result does not depend on the base
//! model's statistics or on the order of the images. The backends update running statistics
//! with the fixed momentum μ = 0.1 (r' = (1-μ) r + μ m); from r and r' the batch statistic is
//! m = r + (r' - r)/μ, and the running average over N images after a batch of n is
//! c + (m - c) n / N. Starting each batch from r = c gives c' = c + (r' - c) n / (μ N).
//! Only `Backend::train_step` is used, so this runs on any backend; its loss and gradients are
//! discarded (the target marks every class unlabelled, so the loss is zero).

use super::data::{plain_batch, FrameSource};
use super::TrainError;
use crate::nn::cpu::batchnorm::MOMENTUM;
use crate::nn::loss::Target;
use crate::nn::params::Kind;
use crate::nn::{Backend, Model, UNetParams};
use serde::{Deserialize, Serialize};

/// How adaptation runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdaptOptions {
    /// Images per forward pass: batch statistics are taken over this many images.
    pub batch: usize,
}

impl Default for AdaptOptions {
    fn default() -> Self {
        AdaptOptions { batch: 8 }
    }
}

/// What adaptation changed, for logs and the registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdaptReport {
    pub images: usize,
    pub batches: usize,
    /// BatchNorm layers updated.
    pub layers: usize,
    /// Mean over layers and channels of |new - old| running mean, in units of the old
    /// running standard deviation: how far the target domain sits from the base domain.
    pub mean_shift_sd: f64,
    /// Mean over layers and channels of |ln(new var / old var)|.
    pub log_var_change: f64,
}

/// Returns a copy of `model` whose BatchNorm running statistics are the averages over frames
/// `idx` of `src` (only the images are read). Every other tensor is copied unchanged.
pub fn adapt_batchnorm(
    backend: &mut dyn Backend,
    model: &Model,
    src: &dyn FrameSource,
    idx: &[usize],
    opts: &AdaptOptions,
) -> Result<(Model, AdaptReport), TrainError> {
    if idx.is_empty() {
        return Err(TrainError::Data("no target images to adapt to".into()));
    }
    if let Some(bad) = idx.iter().find(|&&i| i >= src.len()) {
        return Err(TrainError::Data(format!(
            "image index {bad} outside {} images",
            src.len()
        )));
    }
    let cfg = model.config().clone();
    cfg.check_input(src.size(), src.size(), 1)?;
    let stats: Vec<bool> = UNetParams::layout(&cfg)
        .iter()
        .map(|t| t.kind == Kind::RunningStat)
        .collect();
    let mut out = model.clone();
    let mut unlabelled = vec![false; cfg.classes];
    unlabelled[0] = true;
    let px = src.size() * src.size();
    let mut seen = 0usize;
    let mut batches = 0usize;
    for chunk in idx.chunks(opts.batch.max(1)) {
        let x = plain_batch(src, chunk);
        let target = Target {
            labels: vec![0; chunk.len() * px],
            labelled: vec![unlabelled.clone(); chunk.len()],
        };
        let mut work = out.params.clone();
        backend.train_step(&mut work, &x, &target)?;
        seen += chunk.len();
        batches += 1;
        let w = chunk.len() as f64 / (MOMENTUM * seen as f64);
        for ((c, r), is_stat) in out
            .params
            .tensors_mut()
            .into_iter()
            .zip(work.tensors())
            .zip(&stats)
        {
            if !*is_stat {
                continue;
            }
            for (cv, rv) in c.iter_mut().zip(r.iter()) {
                *cv = (*cv as f64 + (*rv as f64 - *cv as f64) * w) as f32;
            }
        }
    }
    if out
        .params
        .tensors()
        .iter()
        .zip(&stats)
        .any(|(t, s)| *s && t.iter().any(|v| !v.is_finite()))
    {
        return Err(TrainError::Data(
            "adapted statistics are not finite: check the target images".into(),
        ));
    }
    let report = compare(&model.params, &out.params, idx.len(), batches);
    out.extra.insert(
        "adaptation".into(),
        serde_json::to_string(&report).unwrap_or_default(),
    );
    Ok((out, report))
}

/// Summarises how far the running statistics moved between `before` and `after`.
fn compare(before: &UNetParams, after: &UNetParams, images: usize, batches: usize) -> AdaptReport {
    let layout = UNetParams::layout(&before.cfg);
    let (b, a) = (before.tensors(), after.tensors());
    let (mut shift, mut logvar, mut n, mut layers) = (0.0, 0.0, 0usize, 0usize);
    for (i, info) in layout.iter().enumerate() {
        if !info.name.ends_with("running_mean") {
            continue;
        }
        // running_var follows running_mean in the layout.
        let (Some(m0), Some(m1), Some(v0), Some(v1)) =
            (b.get(i), a.get(i), b.get(i + 1), a.get(i + 1))
        else {
            continue;
        };
        layers += 1;
        for c in 0..m0.len() {
            let sd = (v0[c] as f64).max(1e-12).sqrt();
            shift += (m1[c] as f64 - m0[c] as f64).abs() / sd;
            logvar += ((v1[c] as f64).max(1e-12) / (v0[c] as f64).max(1e-12))
                .ln()
                .abs();
            n += 1;
        }
    }
    let n = n.max(1) as f64;
    AdaptReport {
        images,
        batches,
        layers,
        mean_shift_sd: shift / n,
        log_var_change: logvar / n,
    }
}
