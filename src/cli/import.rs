//! `cineseg import`: a labelled dataset folder (ACDC NIfTI, or Sunnybrook DICOM with contour
//! files) to a frame store.

use super::{progress::bar, CliError};
use crate::image::Slice2D;
use crate::nn::config::Normalisation;
use crate::nn::Preprocess;
use crate::store::import::{import_acdc_with, SliceTransform};
use crate::store::import_dicom::import_sunnybrook;
use crate::train::domain7t::Sim7T;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["acdc", "sunnybrook"])))]
pub struct ImportArgs {
    /// Folder in ACDC layout (patientNNN/Info.cfg, patientNNN_frameXX[_gt].nii.gz).
    #[arg(long)]
    acdc: Option<PathBuf>,
    /// Folder in Sunnybrook layout (dicoms/SCD*/, contourfiles/SC-*/{i,o}-contours, link.csv):
    /// the contoured images become frames with LV (and MYO at end-diastole) drawn, RV unknown.
    #[arg(long, conflicts_with_all = ["domain", "domain_params"])]
    sunnybrook: Option<PathBuf>,
    /// Frame store to create (a directory).
    #[arg(long)]
    out: PathBuf,
    /// In-plane spacing in mm that images are resampled to.
    #[arg(long, default_value_t = 1.5)]
    spacing: f32,
    /// Side of the square crop in pixels (divisible by 2^depth of the model to be trained).
    #[arg(long, default_value_t = 160)]
    size: usize,
    /// Simulate another scanner domain on the images (labels unchanged): `7t` (see
    /// `train::domain7t` for the physics and parameters).
    #[arg(long)]
    domain: Option<String>,
    /// Seed of the simulated domain (same seed, same store).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// JSON file with simulation parameters (fields of `Sim7T`; missing ones take defaults).
    #[arg(long)]
    domain_params: Option<PathBuf>,
    /// Model the contours are compared with by the label quality control (default: the
    /// shipped model). Frames whose contours fail a topology check or disagree with it are
    /// left out of the store and listed in <out>/label_qc.json.
    #[arg(long)]
    qc_model: Option<PathBuf>,
    /// Skip the label quality control (every frame is kept).
    #[arg(long)]
    no_qc: bool,
}

pub fn run(a: ImportArgs, threads: usize) -> Result<(), CliError> {
    let p = Preprocess {
        spacing_mm: a.spacing,
        size: a.size,
        normalisation: Normalisation::default(),
    };
    let pb = bar(0, "import");
    let progress = |done: usize, total: usize| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    };
    let acdc = match (&a.acdc, &a.sunnybrook) {
        (Some(acdc), _) => acdc.clone(),
        (None, Some(root)) => {
            let s = import_sunnybrook(root, &a.out, &p, &progress)?;
            pb.finish_and_clear();
            println!("imported {} patients, {} contoured images into {} (LV everywhere, MYO where drawn, no RV)", s.patients, s.frames, a.out.display());
            return label_qc(&a, &p, threads);
        }
        (None, None) => return Err(CliError::Usage("give --acdc or --sunnybrook".into())),
    };
    let sim = match a.domain.as_deref() {
        None => None,
        Some("7t") | Some("7T") => {
            let mut sim = match &a.domain_params {
                Some(f) => {
                    let text = std::fs::read_to_string(f).map_err(|e| CliError::file(f, e))?;
                    serde_json::from_str::<Sim7T>(&text)
                        .map_err(|e| CliError::Usage(format!("{}: {e}", f.display())))?
                }
                None => Sim7T::default(),
            };
            sim.seed = a.seed;
            sim.check().map_err(CliError::Usage)?;
            Some(sim)
        }
        Some(other) => {
            return Err(CliError::Usage(format!(
                "unknown --domain {other:?} (known: 7t)"
            )))
        }
    };
    let transform = sim.as_ref().map(|sim| {
        move |pt: &str, z: usize, frame: usize, s: &mut Slice2D| sim.apply(pt, z, frame, s)
    });
    let s = import_acdc_with(
        &acdc,
        &a.out,
        &p,
        transform.as_ref().map(|t| t as &SliceTransform<'_>),
        &progress,
    )?;
    if let Some(sim) = &sim {
        super::write_json(&a.out.join("domain.json"), sim)?;
        println!(
            "simulated 7T domain (seed {}), parameters in {}",
            sim.seed,
            a.out.join("domain.json").display()
        );
    }
    pb.finish_and_clear();
    println!(
        "imported {} patients, {} labelled volumes, {} frames into {}",
        s.patients,
        s.volumes,
        s.frames,
        a.out.display()
    );
    for (g, n) in &s.groups {
        println!("  {g}: {n} patients");
    }
    label_qc(&a, &p, threads)
}

/// Screens the new store (see `store::qc`) and prints what was left out.
fn label_qc(a: &ImportArgs, p: &Preprocess, threads: usize) -> Result<(), CliError> {
    use crate::analysis::label_qc::QcThresholds;
    if a.no_qc {
        println!("label quality control skipped (--no-qc): every frame kept");
        return Ok(());
    }
    let model = super::load_model(a.qc_model.as_deref())?;
    let name = a
        .qc_model
        .clone()
        .unwrap_or_else(super::default_model_path)
        .display()
        .to_string();
    // The model sees the store's images as they are: compare only on the grid it was made for.
    let same_grid = model.preprocess.as_ref().is_none_or(|m| {
        (m.spacing_mm - p.spacing_mm).abs() < 1e-3 && m.normalisation == p.normalisation
    });
    let mut backend = crate::nn::cpu::CpuBackend::new(threads)?;
    let with_model = if same_grid {
        Some((&mut backend as &mut dyn crate::nn::Backend, &model, name))
    } else {
        println!("label QC: {name} was made for another pixel spacing or normalisation; topology checks only");
        None
    };
    let pb = bar(0, "label QC");
    let progress = |done: usize, total: usize| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    };
    let t = QcThresholds::default();
    let report = crate::store::qc::screen_store(&a.out, with_model, &t, 16, &progress)?;
    pb.finish_and_clear();
    println!(
        "label QC: {} of {} frames left out for review ({})",
        report.excluded.len(),
        report.frames,
        a.out.join(crate::store::qc::REPORT).display()
    );
    for line in report.lines().iter().take(20) {
        println!("  {line}");
    }
    if report.excluded.len() > 20 {
        println!("  ... and {} more", report.excluded.len() - 20);
    }
    Ok(())
}
