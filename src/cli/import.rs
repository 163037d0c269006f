//! `cineseg import`: a labelled dataset folder to a frame store.

use super::{progress::bar, CliError};
use crate::nn::config::Normalisation;
use crate::nn::Preprocess;
use crate::store::import::import_acdc;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Folder in ACDC layout (patientNNN/Info.cfg, patientNNN_frameXX[_gt].nii.gz).
    #[arg(long)]
    acdc: PathBuf,
    /// Frame store to create (a directory).
    #[arg(long)]
    out: PathBuf,
    /// In-plane spacing in mm that images are resampled to.
    #[arg(long, default_value_t = 1.5)]
    spacing: f32,
    /// Side of the square crop in pixels (divisible by 2^depth of the model to be trained).
    #[arg(long, default_value_t = 160)]
    size: usize,
}

pub fn run(a: ImportArgs) -> Result<(), CliError> {
    let p = Preprocess { spacing_mm: a.spacing, size: a.size, normalisation: Normalisation::default() };
    let pb = bar(0, "import");
    let s = import_acdc(&a.acdc, &a.out, &p, &|done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })?;
    pb.finish_and_clear();
    println!("imported {} patients, {} labelled volumes, {} frames into {}", s.patients, s.volumes, s.frames, a.out.display());
    for (g, n) in &s.groups {
        println!("  {g}: {n} patients");
    }
    Ok(())
}
