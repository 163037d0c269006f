//! `cineseg segment`: a NIfTI image (3D) or cine (4D) to label NIfTI on the input grid, per-phase
//! volumes, ED/ES, EF and LV mass in JSON.

use super::{progress::bar, CliError};
use crate::analysis::volumes::PhaseVolumes;
use crate::analysis::LabelVolume;
use crate::image::Slice2D;
use crate::io::nifti::{write_labels_at, LabelGeometry};
use crate::io::{read_volume, Volume};
use crate::segment::{phase_volume, Segmenter};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// A NIfTI file (.nii or .nii.gz), 3D (one phase) or 4D (a cine), or a DICOM folder
    /// (the largest cine stack in it is segmented; results as DICOM SEG, overlays, JSON, HTML).
    input: PathBuf,
    /// Output folder: <name>_seg.nii.gz and <name>_volumes.json for NIfTI; for DICOM a
    /// folder per series with seg.dcm, overlay secondary captures, report.json, report.html.
    #[arg(long)]
    out: PathBuf,
    /// Model file (default: the shipped model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute device: auto (GPU when usable, else CPU, with a log line saying why), cpu, cuda.
    #[arg(long, default_value = "auto")]
    device: crate::nn::device::DeviceChoice,
    /// Images per inference batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Mean model confidence below which a phase is flagged (the daemon's
    /// `pipeline.min_confidence`).
    #[arg(long, default_value_t = 0.6)]
    min_confidence: f32,
}

/// What `segment` reports for a NIfTI input.
#[derive(Serialize, Debug)]
pub struct NiftiReport {
    pub input: String,
    pub model: String,
    pub phases: usize,
    pub slices: usize,
    /// Volumes per phase (ml).
    pub volumes: Vec<PhaseVolumes>,
    /// LV mass at each phase (g), for single-phase inputs.
    pub lv_mass_g: Vec<f64>,
    /// ED/ES/EF for inputs with more than one phase.
    pub summary: Option<crate::analysis::volumes::CardiacSummary>,
    /// Mean confidence of the model over foreground pixels, per phase.
    pub confidence: Vec<f32>,
    /// The same plausibility and confidence checks as DICOM results get.
    pub quality_flags: Vec<crate::analysis::quality::QualityFlag>,
    /// Why numbers are absent, when they are (e.g. one phase only).
    pub notes: Vec<String>,
}

/// Splits a volume into the 2D slices of phase `t`.
pub fn slices_of(vol: &Volume, t: usize) -> Vec<Slice2D> {
    (0..vol.dims[2])
        .filter_map(|z| vol.slice(z, t))
        .map(|d| Slice2D {
            width: vol.dims[0],
            height: vol.dims[1],
            spacing: [vol.spacing[0], vol.spacing[1]],
            data: d.to_vec(),
        })
        .collect()
}

/// Segments every phase of a NIfTI volume; returns one label volume per phase and the mean
/// confidence per phase.
pub fn segment_nifti(
    seg: &mut Segmenter<'_>,
    vol: &Volume,
    show: bool,
) -> Result<(Vec<LabelVolume>, Vec<f32>), CliError> {
    let [w, h, z, t] = vol.dims;
    let spacing = [vol.spacing[0], vol.spacing[1], vol.spacing[2]];
    let pb = bar(z * t, "segment");
    if !show {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut phases = Vec::with_capacity(t);
    let mut conf = Vec::with_capacity(t);
    for ti in 0..t {
        let done = ti * z;
        let labels = seg.segment(&slices_of(vol, ti), &|d, _| {
            pb.set_position((done + d) as u64)
        })?;
        conf.push(crate::analysis::series::foreground_confidence(&labels));
        phases.push(phase_volume(&labels, w, h, spacing)?);
    }
    pb.finish_and_clear();
    Ok((phases, conf))
}

/// One line with the clinical numbers, as both NIfTI and DICOM segmentation print it.
pub fn summary_line(s: &crate::analysis::volumes::CardiacSummary) -> String {
    let pct = |v: Option<f64>| {
        v.map(|x| format!("{x:.1} %"))
            .unwrap_or_else(|| "n/a".into())
    };
    format!(
        "ED phase {}, ES phase {}: LVEDV {:.1} ml, LVESV {:.1} ml, LVEF {}, LV mass {:.1} g, RVEDV {:.1} ml, RVEF {}",
        s.ed_phase,
        s.es_phase,
        s.lv_edv_ml,
        s.lv_esv_ml,
        pct(s.lv_ef_percent),
        s.lv_mass_g,
        s.rv_edv_ml,
        pct(s.rv_ef_percent)
    )
}

fn stem(p: &Path) -> String {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "input".into());
    name.trim_end_matches(".gz")
        .trim_end_matches(".nii")
        .to_string()
}

pub fn run(a: SegmentArgs, threads: usize) -> Result<(), CliError> {
    let name = a.input.to_string_lossy().to_lowercase();
    if a.input.is_dir() {
        let model = super::load_model(a.model.as_deref())?;
        let (mut backend, why) = crate::nn::device::select(a.device, threads)?;
        log::info!("compute backend: {} ({why})", backend.describe());
        let model_name = a
            .model
            .as_ref()
            .unwrap_or(&super::default_model_path())
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let identity = crate::registry::ModelIdentity::of(&model_name, &model);
        let mut seg = Segmenter::new(backend.as_mut(), &model, None, a.batch)?;
        let done =
            super::segment_dicom::run(&a.input, &a.out, &mut seg, &identity, a.min_confidence)?;
        println!("wrote {}", done.display());
        return Ok(());
    }
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        return Err(CliError::Usage(format!(
            "{}: expected a NIfTI file (.nii, .nii.gz) or a DICOM folder",
            a.input.display()
        )));
    }
    let model = super::load_model(a.model.as_deref())?;
    let vol = read_volume(&a.input)?;
    let (mut backend, why) = crate::nn::device::select(a.device, threads)?;
    log::info!("compute backend: {} ({why})", backend.describe());
    let mut seg = Segmenter::new(backend.as_mut(), &model, None, a.batch)?;
    let (phases, confidence) = segment_nifti(&mut seg, &vol, true)?;
    super::ensure_dir(&a.out)?;
    let s = stem(&a.input);
    let mut all = Vec::with_capacity(vol.data.len());
    for p in &phases {
        all.extend_from_slice(&p.labels);
    }
    let seg_path = a.out.join(format!("{s}_seg.nii.gz"));
    // On the input's grid and header (qform/sform), so the mask overlays the image.
    let geometry = match vol.header.as_deref() {
        Some(h) => LabelGeometry::Like(h),
        None => LabelGeometry::Spacing(vol.spacing),
    };
    write_labels_at(&seg_path, vol.dims, geometry, &all)?;
    let volumes: Vec<PhaseVolumes> = phases.iter().map(PhaseVolumes::of).collect();
    let crate::analysis::series::PhaseAnalysis {
        summary,
        flags: quality_flags,
        notes,
    } = crate::analysis::series::analyse_phases(&phases, &confidence, a.min_confidence);
    let report = NiftiReport {
        input: a.input.display().to_string(),
        model: a
            .model
            .map(|m| m.display().to_string())
            .unwrap_or_else(|| super::default_model_path().display().to_string()),
        phases: phases.len(),
        slices: vol.dims[2],
        lv_mass_g: volumes.iter().map(PhaseVolumes::myo_mass_g).collect(),
        volumes,
        summary,
        confidence,
        quality_flags,
        notes,
    };
    let json_path = a.out.join(format!("{s}_volumes.json"));
    super::write_json(&json_path, &report)?;
    for (i, v) in report.volumes.iter().enumerate() {
        println!(
            "phase {i:>2}: LV {:7.1} ml  MYO {:7.1} ml ({:6.1} g)  RV {:7.1} ml",
            v.lv_ml,
            v.myo_ml,
            v.myo_mass_g(),
            v.rv_ml
        );
    }
    if let Some(s) = &report.summary {
        println!("{}", summary_line(s));
    }
    for f in &report.quality_flags {
        println!("  quality: {}", f.message);
    }
    println!("wrote {} and {}", seg_path.display(), json_path.display());
    Ok(())
}
