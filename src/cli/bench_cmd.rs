//! `cineseg bench`: the speed benchmark against PyTorch and ONNX Runtime.

use super::CliError;
use crate::bench::{default_anchor_paths, run as run_bench, BenchOptions};
use crate::nn::UNetConfig;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Image side in pixels.
    #[arg(long, default_value_t = 192)]
    size: usize,
    /// U-Net width (channels at the first level).
    #[arg(long, default_value_t = 32)]
    base: usize,
    /// U-Net depth (poolings).
    #[arg(long, default_value_t = 4)]
    depth: usize,
    /// Batch sizes for inference, comma-separated.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    batch: Vec<usize>,
    /// Batch size for the training step.
    #[arg(long, default_value_t = 8)]
    train_batch: usize,
    /// Python with torch and onnxruntime for the anchors (default ../shared-venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// The reference script (default ../shared/bench/unet_ref.py).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Measure cineseg only.
    #[arg(long)]
    no_anchors: bool,
}

pub fn run(a: BenchArgs, threads: usize) -> Result<(), CliError> {
    let (py, script) = default_anchor_paths(
        &std::env::current_dir().map_err(|e| CliError::file(".".as_ref(), e))?,
    );
    let threads = if threads == 0 { 2 } else { threads };
    let opts = BenchOptions {
        cfg: UNetConfig::new(a.base, a.depth),
        size: a.size,
        threads,
        infer_batches: a.batch,
        train_batch: a.train_batch,
        repeats: 5,
        python: if a.no_anchors { None } else { a.python.or(py) },
        reference: if a.no_anchors {
            None
        } else {
            a.reference.or(script)
        },
    };
    print!("{}", run_bench(&opts)?);
    Ok(())
}
