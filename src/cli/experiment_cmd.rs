//! `cineseg experiment transfer`: the transfer-learning table (base, fine-tuned on all frames,
//! ED/ES only, one patient, random frames as many as ED/ES, BatchNorm adaptation) on a target
//! frame store, written as Markdown + JSON + a learning-curve PNG.

use super::train_cmd::BarProgress;
use super::{progress::bar, CliError, VALIDATION_FRACTION};
use crate::nn::Model;
use crate::report::curves::{learning_curves, Series, SERIES_COLOURS};
use crate::store::{split::is_validation, FrameStore};
use crate::train::finetune::split_by_patient;
use crate::train::subset::{select, store_tags, Subset};
use crate::train::transfer_experiment::{markdown, run_transfer, Arms, TransferTable};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand, Debug)]
enum Which {
    /// The transfer-learning table of Ankenbrand et al. on a target store.
    Transfer(TransferArgs),
}

#[derive(clap::Args, Debug)]
struct TransferArgs {
    /// The base model (the one transfer starts from).
    #[arg(long)]
    model: PathBuf,
    /// Target frame store (e.g. `cineseg import --domain 7t`).
    #[arg(long)]
    data: PathBuf,
    /// Folder for transfer.md, transfer.json and transfer-curves.png (e.g. docs/transfer-7t).
    #[arg(long)]
    out: PathBuf,
    /// Checkpoints of every arm (resumable; default: runs/experiment-transfer).
    #[arg(long, default_value = "runs/experiment-transfer")]
    work: PathBuf,
    /// Test patients, comma-separated (default: the fixed split by patient id).
    #[arg(long)]
    test_patients: Option<String>,
    /// Fraction of patients in the test split when --test-patients is not given.
    #[arg(long, default_value_t = VALIDATION_FRACTION)]
    test_fraction: f64,
    /// Only this many training patients (seeded choice), as at a site that has contoured a few
    /// cases; the default uses every non-test patient.
    #[arg(long)]
    train_patients: Option<usize>,
    /// Rows to run, comma-separated among base, all, ed-es, one-patient, random, bn-adapt
    /// (the base row always runs).
    #[arg(long, default_value = "base,all,ed-es,one-patient,random,bn-adapt")]
    arms: String,
    #[command(flatten)]
    recipe: super::finetune_cmd::RecipeArgs,
    #[arg(long, default_value = "auto")]
    device: crate::nn::device::DeviceChoice,
}

pub fn run(a: ExperimentArgs, threads: usize) -> Result<(), CliError> {
    match a.which {
        Which::Transfer(t) => transfer(t, threads),
    }
}

fn transfer(a: TransferArgs, threads: usize) -> Result<(), CliError> {
    let store = FrameStore::open(&a.data)?;
    let mut base = Model::load(&a.model)?;
    base.preprocess = Some(store.preprocess().clone());
    let listed: Option<Vec<String>> = a.test_patients.as_ref().map(|s| {
        s.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    });
    let (train_idx, test_idx) = split_by_patient(&store, |p| match &listed {
        Some(l) => l.iter().any(|x| x == p),
        None => is_validation(p, a.test_fraction),
    });
    let recipe = a.recipe.recipe(None);
    let tags = store_tags(&store);
    let train_idx = match a.train_patients {
        Some(n) => select(&store, &tags, &train_idx, &Subset::Patients(n), recipe.seed)?,
        None => train_idx,
    };
    let ed_es = select(&store, &tags, &train_idx, &Subset::EdEs, recipe.seed)?.len();
    let arms = Arms::parse(&a.arms, ed_es)?;
    let (mut backend, why) = crate::nn::device::select(a.device, threads)?;
    println!(
        "transfer experiment: {} training / {} test frames on {} ({why})",
        train_idx.len(),
        test_idx.len(),
        backend.describe()
    );
    super::ensure_dir(&a.work)?;
    super::ensure_dir(&a.out)?;
    let progress = BarProgress {
        pb: bar(0, "epoch 1"),
    };
    let mut table = run_transfer(
        backend.as_mut(),
        &base,
        &store,
        &tags,
        &train_idx,
        &test_idx,
        &recipe,
        Some(arms),
        &a.work,
        &progress,
    )?;
    progress.pb.finish_and_clear();
    table.target = a.data.display().to_string();
    write_outputs(&table, &a, &std::env::args().collect::<Vec<_>>().join(" "))
}

fn write_outputs(t: &TransferTable, a: &TransferArgs, command: &str) -> Result<(), CliError> {
    let md = format!(
        "# Transfer learning: {}\n\n{}\nLearning curves (mean test Dice, % per epoch; named as in the table; dashed lines are arms without epochs): `transfer-curves.png`.\n\nRegenerate with:\n\n```\n{command}\n```\n",
        a.data.display(),
        markdown(t)
    );
    let md_path = a.out.join("transfer.md");
    std::fs::write(&md_path, &md).map_err(|e| CliError::file(&md_path, e))?;
    super::write_json(&a.out.join("transfer.json"), t)?;
    let series: Vec<Series> = t
        .rows
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let flat = {
                let v: Vec<f64> = r.dice.iter().flatten().copied().collect();
                if v.is_empty() {
                    f64::NAN
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            };
            Series {
                name: r.name.clone(),
                values: if r.curve.is_empty() {
                    vec![flat]
                } else {
                    r.curve.clone()
                },
                colour: SERIES_COLOURS[k % SERIES_COLOURS.len()],
            }
        })
        .collect();
    learning_curves(&series, 640, 360)?.save_png(&a.out.join("transfer-curves.png"))?;
    print!("{}", markdown(t));
    println!(
        "wrote {}, transfer.json and transfer-curves.png",
        md_path.display()
    );
    Ok(())
}
