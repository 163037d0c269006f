//! `cineseg demo`: makes a synthetic cine series (a phantom with known volumes), segments it
//! with the shipped model, and writes masks, volumes, overlays and the volume curve, so a new
//! user sees the whole path working in one command with no data of their own.

use super::CliError;
use crate::analysis::metrics::evaluate;
use crate::analysis::volumes::summarize;
use crate::analysis::LabelVolume;
use crate::image::Slice2D;
use crate::io::write_labels;
use crate::phantom::{generate, PhantomParams};
use crate::report::overlay::{montage, overlay_slice, OverlayStyle};
use crate::report::volume_plot::VolumeCurve;
use crate::segment::{phase_volume, Segmenter};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Output folder.
    #[arg(long, default_value = "cineseg-demo")]
    out: PathBuf,
    /// Model file (default: the shipped model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute device: auto (GPU when usable, else CPU, with a log line saying why), cpu, cuda.
    #[arg(long, default_value = "auto")]
    device: crate::nn::device::DeviceChoice,
    /// Phantom seed (each seed gives another heart position and contrast).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Slices of the phantom.
    #[arg(long, default_value_t = 10)]
    slices: usize,
    /// Phases of the phantom.
    #[arg(long, default_value_t = 25)]
    phases: usize,
}

pub fn run(a: DemoArgs, threads: usize) -> Result<(), CliError> {
    let model = super::load_model(a.model.as_deref())?;
    let params = PhantomParams {
        slices: a.slices,
        phases: a.phases,
        ..PhantomParams::default()
    };
    let ph = generate(&params, a.seed).map_err(|e| CliError::Usage(e.to_string()))?;
    println!(
        "phantom: {} slices x {} phases, {}x{} px at {} mm, slices {} mm apart; true ED phase {}, ES phase {}",
        params.slices, params.phases, params.width, params.height, params.pixel_mm, params.slice_mm, ph.ed_phase, ph.es_phase
    );
    let (mut backend, why) = crate::nn::device::select(a.device, threads)?;
    log::info!("compute backend: {} ({why})", backend.describe());
    let mut seg = Segmenter::new(backend.as_mut(), &model, None, 8)?;
    let spacing = params.spacing();
    let pb = super::progress::bar(params.phases, "segment");
    let t0 = std::time::Instant::now();
    let mut phases: Vec<LabelVolume> = Vec::with_capacity(params.phases);
    let mut low_conf = 0usize;
    let mut confidence = Vec::with_capacity(params.phases);
    for t in 0..params.phases {
        let slices: Vec<Slice2D> = (0..params.slices)
            .filter_map(|s| ph.image(s, t))
            .map(|d| Slice2D {
                width: params.width,
                height: params.height,
                spacing: [params.pixel_mm; 2],
                data: d.to_vec(),
            })
            .collect();
        let labels = seg.segment(&slices, &|_, _| {})?;
        low_conf += labels
            .iter()
            .filter(|l| l.foreground > 0 && l.confidence < 0.7)
            .count();
        confidence.push(crate::analysis::series::foreground_confidence(&labels));
        phases.push(phase_volume(&labels, params.width, params.height, spacing)?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    super::ensure_dir(&a.out)?;
    // Masks and images as 4D NIfTI.
    let dims = [params.width, params.height, params.slices, params.phases];
    let sp = [params.pixel_mm, params.pixel_mm, params.slice_mm, 0.0];
    let all: Vec<u8> = phases
        .iter()
        .flat_map(|p| p.labels.iter().copied())
        .collect();
    write_labels(&a.out.join("phantom_seg.nii.gz"), dims, sp, &all)?;
    let truth: Vec<u8> = ph
        .labels
        .iter()
        .flat_map(|p| p.labels.iter().copied())
        .collect();
    write_labels(&a.out.join("phantom_truth.nii.gz"), dims, sp, &truth)?;
    // Numbers, predicted and true.
    // The same summary and quality checks NIfTI `segment` and the daemon apply.
    let checked = crate::analysis::series::analyse_phases(&phases, &confidence, 0.6);
    let pred = match checked.summary.clone() {
        Some(s) => s,
        None => summarize(&phases)?,
    };
    let tru = summarize(&ph.labels)?;
    let ed_metrics = evaluate(&phases[tru.ed_phase], &ph.labels[tru.ed_phase])?;
    // Overlays at ED and ES, and the volume curve.
    for (name, t) in [("ed", pred.ed_phase), ("es", pred.es_phase)] {
        let stack = ph.phase_stack(t).unwrap_or_default();
        let tiles = (0..params.slices)
            .map(|s| overlay_slice(&stack, &phases[t], s, OverlayStyle::Contour))
            .collect::<Result<Vec<_>, _>>()?;
        montage(&tiles, 5, 4)?.save_png(&a.out.join(format!("overlay_{name}.png")))?;
    }
    VolumeCurve::of(&pred, None)
        .bitmap(640, 360)?
        .save_png(&a.out.join("volume_curve.png"))?;
    let report = serde_json::json!({
        "predicted": pred,
        "truth": tru,
        "dice_at_true_ed": { "lv": ed_metrics[0].dice, "myo": ed_metrics[1].dice, "rv": ed_metrics[2].dice },
        "low_confidence_slices": low_conf,
        "confidence": confidence,
        "quality_flags": checked.flags,
        "seconds": secs,
    });
    super::write_json(&a.out.join("report.json"), &report)?;
    let pct = |v: Option<f64>| {
        v.map(|x| format!("{x:.1} %"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "segmented {} images in {:.1} s ({:.1} img/s)",
        params.slices * params.phases,
        secs,
        (params.slices * params.phases) as f64 / secs
    );
    println!("{:<12} {:>10} {:>10}", "", "cineseg", "truth");
    println!(
        "{:<12} {:>10} {:>10}",
        "ED phase", pred.ed_phase, tru.ed_phase
    );
    println!(
        "{:<12} {:>10} {:>10}",
        "ES phase", pred.es_phase, tru.es_phase
    );
    println!(
        "{:<12} {:>10.1} {:>10.1}",
        "LVEDV ml", pred.lv_edv_ml, tru.lv_edv_ml
    );
    println!(
        "{:<12} {:>10.1} {:>10.1}",
        "LVESV ml", pred.lv_esv_ml, tru.lv_esv_ml
    );
    println!(
        "{:<12} {:>10} {:>10}",
        "LVEF",
        pct(pred.lv_ef_percent),
        pct(tru.lv_ef_percent)
    );
    println!(
        "{:<12} {:>10.1} {:>10.1}",
        "LV mass g", pred.lv_mass_g, tru.lv_mass_g
    );
    println!(
        "{:<12} {:>10.1} {:>10.1}",
        "RVEDV ml", pred.rv_edv_ml, tru.rv_edv_ml
    );
    println!(
        "{:<12} {:>10} {:>10}",
        "RVEF",
        pct(pred.rv_ef_percent),
        pct(tru.rv_ef_percent)
    );
    println!(
        "Dice at ED: LV {:.3}, MYO {:.3}, RV {:.3}{}",
        ed_metrics[0].dice,
        ed_metrics[1].dice,
        ed_metrics[2].dice,
        if low_conf > 0 {
            format!("  ({low_conf} slices with low model confidence)")
        } else {
            String::new()
        }
    );
    for f in &checked.flags {
        println!("  quality: {}", f.message);
    }
    println!("wrote masks, overlays (overlay_ed.png, overlay_es.png), volume_curve.png and report.json to {}", a.out.display());
    Ok(())
}
