//! `cineseg eval`: a model against expert labels on an ACDC-layout folder. Dice and 95 %
//! Hausdorff distance per class per volume; LV/RV volumes, EF and LV mass against the ground
//! truth as mean absolute error, bias and correlation; a terminal table and JSON.

use super::segment_cmd::segment_nifti;
use super::{CliError, VALIDATION_FRACTION};
use crate::analysis::metrics::evaluate;
use crate::analysis::volumes::{agreement, ejection_fraction, Agreement, PhaseVolumes};
use crate::analysis::LabelVolume;
use crate::io::acdc::{acdc_to_cineseg, scan, AcdcPatient};
use crate::io::{read_volume, IoError};
use crate::segment::Segmenter;
use crate::store::split::is_validation;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Patients the model never trained on (the fixed split by patient id).
    Validation,
    /// Patients used for training.
    Train,
    /// Every patient.
    All,
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Folder in ACDC layout with expert labels.
    #[arg(long)]
    data: PathBuf,
    /// Model file (default: the shipped model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute device: auto (GPU when usable, else CPU, with a log line saying why), cpu, cuda.
    #[arg(long, default_value = "auto")]
    device: crate::nn::device::DeviceChoice,
    /// Which patients to evaluate.
    #[arg(long, value_enum, default_value = "validation")]
    split: Split,
    /// Evaluate at most this many patients (quick checks).
    #[arg(long)]
    limit: Option<usize>,
    /// Also write the full results as JSON to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

/// Results for one labelled volume (one patient at ED or ES).
#[derive(Serialize, Debug, Clone)]
pub struct VolumeResult {
    pub patient: String,
    pub phase: String,
    pub dice: [f64; 3],
    pub hd95_mm: [Option<f64>; 3],
    pub predicted: PhaseVolumes,
    pub truth: PhaseVolumes,
}

/// Clinical numbers of one patient, predicted and expert.
#[derive(Serialize, Debug, Clone)]
pub struct PatientNumbers {
    pub patient: String,
    pub group: String,
    pub predicted: [f64; 7],
    pub truth: [f64; 7],
}

/// Names of the clinical numbers in [`PatientNumbers`].
pub const NUMBERS: [&str; 7] = [
    "LVEDV ml",
    "LVESV ml",
    "LVEF %",
    "LV mass g",
    "RVEDV ml",
    "RVESV ml",
    "RVEF %",
];

#[derive(Serialize, Debug)]
pub struct EvalReport {
    pub model: String,
    pub split: String,
    pub patients: usize,
    pub volumes: Vec<VolumeResult>,
    pub numbers: Vec<PatientNumbers>,
    pub mean_dice: [f64; 3],
    pub mean_hd95_mm: [f64; 3],
    pub agreement: BTreeMap<String, Agreement>,
}

fn truth_volume(path: &Path) -> Result<LabelVolume, CliError> {
    let v = read_volume(path)?;
    let labels = v
        .data
        .iter()
        .map(|x| acdc_to_cineseg(x.round() as u8).map_err(|e| IoError::layout(path, e.to_string())))
        .collect::<Result<Vec<u8>, IoError>>()?;
    Ok(LabelVolume::from_labels(
        v.dims[0],
        v.dims[1],
        v.dims[2],
        [v.spacing[0], v.spacing[1], v.spacing[2]],
        labels,
    )?)
}

/// EF, NaN where undefined (agreement skips non-finite pairs).
fn ef(edv: f64, esv: f64) -> f64 {
    ejection_fraction(edv, esv).unwrap_or(f64::NAN)
}

fn numbers(ed: &PhaseVolumes, es: &PhaseVolumes) -> [f64; 7] {
    [
        ed.lv_ml,
        es.lv_ml,
        ef(ed.lv_ml, es.lv_ml),
        ed.myo_mass_g(),
        ed.rv_ml,
        es.rv_ml,
        ef(ed.rv_ml, es.rv_ml),
    ]
}

/// Evaluates one patient's ED and ES volumes.
fn evaluate_patient(
    seg: &mut Segmenter<'_>,
    p: &AcdcPatient,
) -> Result<(Vec<VolumeResult>, Option<PatientNumbers>), CliError> {
    let mut results = Vec::new();
    let mut by_phase = BTreeMap::new();
    for f in &p.frames {
        let Some(gt) = &f.labels else { continue };
        let img = read_volume(&f.image)?;
        let truth = truth_volume(gt)?;
        let (pred, _) = segment_nifti(seg, &img, false)?;
        let Some(pred) = pred.into_iter().next() else {
            continue;
        };
        let m = evaluate(&pred, &truth)?;
        let phase = format!("{:?}", f.phase).to_uppercase();
        let r = VolumeResult {
            patient: p.id.clone(),
            phase: phase.clone(),
            dice: [m[0].dice, m[1].dice, m[2].dice],
            hd95_mm: [m[0].hd95_mm, m[1].hd95_mm, m[2].hd95_mm],
            predicted: PhaseVolumes::of(&pred),
            truth: PhaseVolumes::of(&truth),
        };
        by_phase.insert(phase, (r.predicted, r.truth));
        results.push(r);
    }
    let nums = match (by_phase.get("ED"), by_phase.get("ES")) {
        (Some(ed), Some(es)) => Some(PatientNumbers {
            patient: p.id.clone(),
            group: p.info.group.clone(),
            predicted: numbers(&ed.0, &es.0),
            truth: numbers(&ed.1, &es.1),
        }),
        _ => None,
    };
    Ok((results, nums))
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v
        .filter(|x| x.is_finite())
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Runs the evaluation and returns the report (the CLI prints it).
pub fn evaluate_folder(a: &EvalArgs, threads: usize) -> Result<EvalReport, CliError> {
    let model = super::load_model(a.model.as_deref())?;
    let fraction = model
        .extra
        .get("validation_fraction")
        .and_then(|v| v.parse().ok())
        .unwrap_or(VALIDATION_FRACTION);
    let mut patients: Vec<AcdcPatient> = scan(&a.data)?
        .into_iter()
        .filter(|p| match a.split {
            Split::Validation => is_validation(&p.id, fraction),
            Split::Train => !is_validation(&p.id, fraction),
            Split::All => true,
        })
        .collect();
    if let Some(l) = a.limit {
        patients.truncate(l);
    }
    if patients.is_empty() {
        return Err(CliError::Usage(format!(
            "no patients of the {:?} split in {}",
            a.split,
            a.data.display()
        )));
    }
    let (mut backend, why) = crate::nn::device::select(a.device, threads)?;
    log::info!("compute backend: {} ({why})", backend.describe());
    let mut seg = Segmenter::new(backend.as_mut(), &model, None, a.batch)?;
    let pb = super::progress::bar(patients.len(), "eval");
    let (mut volumes, mut nums) = (Vec::new(), Vec::new());
    for p in &patients {
        pb.set_message(p.id.clone());
        let (v, n) = evaluate_patient(&mut seg, p)?;
        volumes.extend(v);
        nums.extend(n);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mean_dice = [0, 1, 2].map(|c| mean(volumes.iter().map(|v| v.dice[c])));
    let mean_hd95_mm = [0, 1, 2].map(|c| mean(volumes.iter().filter_map(|v| v.hd95_mm[c])));
    let agreement = NUMBERS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let pred: Vec<f64> = nums.iter().map(|n| n.predicted[i]).collect();
            let truth: Vec<f64> = nums.iter().map(|n| n.truth[i]).collect();
            (name.to_string(), agreement(&pred, &truth))
        })
        .collect();
    Ok(EvalReport {
        model: a
            .model
            .as_ref()
            .map(|m| m.display().to_string())
            .unwrap_or_else(|| super::default_model_path().display().to_string()),
        split: format!("{:?}", a.split).to_lowercase(),
        patients: patients.len(),
        volumes,
        numbers: nums,
        mean_dice,
        mean_hd95_mm,
        agreement,
    })
}

/// The report as a terminal table.
pub fn format_report(r: &EvalReport) -> String {
    let mut s = format!(
        "{} patients ({} split), {} labelled volumes, model {}\n\n",
        r.patients,
        r.split,
        r.volumes.len(),
        r.model
    );
    s += &format!("{:<6} {:>8} {:>12}\n", "class", "Dice", "HD95 mm");
    for (i, c) in ["LV", "MYO", "RV"].iter().enumerate() {
        s += &format!(
            "{:<6} {:>8.3} {:>12.2}\n",
            c, r.mean_dice[i], r.mean_hd95_mm[i]
        );
    }
    s += &format!(
        "\n{:<10} {:>10} {:>10} {:>8} {:>4}\n",
        "measure", "MAE", "bias", "r", "n"
    );
    for name in NUMBERS {
        if let Some(a) = r.agreement.get(name) {
            let rr = a
                .pearson_r
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into());
            s += &format!(
                "{:<10} {:>10.2} {:>10.2} {:>8} {:>4}\n",
                name, a.mean_abs_error, a.bias, rr, a.n
            );
        }
    }
    s
}

pub fn run(a: EvalArgs, threads: usize) -> Result<(), CliError> {
    let r = evaluate_folder(&a, threads)?;
    print!("{}", format_report(&r));
    if let Some(j) = &a.json_out {
        super::write_json(j, &r)?;
        println!("\nwrote {}", j.display());
    }
    Ok(())
}
