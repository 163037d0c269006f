//! `cineseg adapt`: unsupervised adaptation of a model to a new scanner by re-estimating its
//! BatchNorm statistics on unlabelled target images (see `train::adapt`).

use super::CliError;
use crate::nn::weights::StoreAs;
use crate::nn::Model;
use crate::store::FrameStore;
use crate::train::adapt::{adapt_batchnorm, AdaptOptions};
use crate::train::data::FrameSource;
use crate::train::unlabelled::load_unlabelled;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AdaptArgs {
    /// The model to adapt.
    #[arg(long)]
    model: PathBuf,
    /// Target images: a frame store (its labels are ignored), a NIfTI file, or a folder of
    /// NIfTI files (label files `*_gt.nii*` are skipped).
    #[arg(long)]
    images: PathBuf,
    /// Where the adapted model is written.
    #[arg(long)]
    out: PathBuf,
    /// Images per forward pass (batch statistics are taken over this many).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Use at most this many images.
    #[arg(long)]
    limit: Option<usize>,
    /// Compute device: auto, cpu, cuda.
    #[arg(long, default_value = "auto")]
    device: crate::nn::device::DeviceChoice,
}

pub fn run(a: AdaptArgs, threads: usize) -> Result<(), CliError> {
    let base = Model::load(&a.model)?;
    let store;
    let memory;
    let src: &dyn FrameSource = if a.images.join("index.json").is_file() {
        store = FrameStore::open(&a.images)?;
        if base
            .preprocess
            .as_ref()
            .is_some_and(|p| p != store.preprocess())
        {
            log::warn!(
                "{} was prepared differently from what {} expects",
                a.images.display(),
                a.model.display()
            );
        }
        &store
    } else {
        let p = base.preprocess.clone().ok_or_else(|| {
            CliError::Usage(format!(
                "{} does not record its preprocessing; adapt on a frame store instead",
                a.model.display()
            ))
        })?;
        memory = load_unlabelled(&a.images, &p, base.config().classes, a.limit)?;
        &memory
    };
    let n = a.limit.unwrap_or(usize::MAX).min(src.len());
    let idx: Vec<usize> = (0..n).collect();
    let (mut backend, why) = crate::nn::device::select(a.device, threads)?;
    println!(
        "re-estimating BatchNorm statistics of {} on {n} images with {} ({why})",
        a.model.display(),
        backend.describe()
    );
    let (mut model, report) = adapt_batchnorm(
        backend.as_mut(),
        &base,
        src,
        &idx,
        &AdaptOptions { batch: a.batch },
    )?;
    model
        .extra
        .insert("parent".into(), a.model.display().to_string());
    model
        .extra
        .insert("adapt_images".into(), a.images.display().to_string());
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        super::ensure_dir(dir)?;
    }
    model.save(&a.out, StoreAs::F32)?;
    println!(
        "{} BatchNorm layers re-estimated over {} images in {} batches: mean shift {:.3} SD, mean |log variance ratio| {:.3} -> {}",
        report.layers,
        report.images,
        report.batches,
        report.mean_shift_sd,
        report.log_var_change,
        a.out.display()
    );
    Ok(())
}
