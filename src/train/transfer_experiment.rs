//! The transfer-learning experiment of Ankenbrand et al. (MRM 2021), on any target frame store:
//! one row per way of adapting the base model, all scored by Dice on test patients that no arm
//! ever trains on.
//!
//! Rows: the base model as is; fine-tuned on all labelled training frames; on ED/ES only; on
//! one patient; on random frames as many as ED/ES; BatchNorm adaptation alone (unlabelled
//! training images). Every fine-tuned arm sees the same number of images per epoch (the size
//! of the full training set), as in the paper. Test Dice is recorded after every epoch for the
//! learning curves, but the reported model is each arm's *last* epoch: choosing the best test
//! epoch would leak the test set into the result.

use super::adapt::{adapt_batchnorm, AdaptOptions};
use super::data::FrameSource;
use super::finetune::{finetune, FinetuneRecipe};
use super::subset::{select, FrameTag, Subset};
use super::trainer::{validate, Progress};
use super::TrainError;
use crate::nn::{Backend, Model};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// One row of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArmResult {
    /// Short name ("base", "all", "ed-es", "one-patient", "random", "bn-adapt").
    pub name: String,
    /// What the arm learned from, in words.
    pub description: String,
    /// Training frames used (labelled for fine-tuning, unlabelled for adaptation).
    pub frames: usize,
    /// Test Dice per class, background first (`None` where the class is not labelled in the test set).
    pub dice: Vec<Option<f64>>,
    /// Mean test Dice over labelled foreground classes after each epoch (empty without epochs).
    pub curve: Vec<f64>,
    pub seconds: f64,
}

/// The whole experiment's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransferTable {
    pub target: String,
    pub class_names: Vec<String>,
    pub train_patients: usize,
    pub train_frames: usize,
    pub test_patients: usize,
    pub test_frames: usize,
    pub recipe: FinetuneRecipe,
    pub rows: Vec<ArmResult>,
}

/// Which rows to run (all by default; tests and quick looks may skip some).
#[derive(Clone, Debug)]
pub struct Arms {
    pub subsets: Vec<(String, Subset)>,
    pub bn_adapt: bool,
}

/// Names accepted by [`Arms::parse`], in table order.
pub const ARM_NAMES: [&str; 6] = ["base", "all", "ed-es", "one-patient", "random", "bn-adapt"];

impl Arms {
    /// The paper's five adapted rows; `ed_es` is the number of ED/ES frames, which sizes the
    /// random arm.
    pub fn paper(ed_es: usize) -> Self {
        Arms {
            subsets: vec![
                ("all".into(), Subset::All),
                ("ed-es".into(), Subset::EdEs),
                ("one-patient".into(), Subset::Patients(1)),
                ("random".into(), Subset::Random(ed_es)),
            ],
            bn_adapt: true,
        }
    }

    /// A comma-separated choice among [`ARM_NAMES`] (the base row always runs).
    pub fn parse(list: &str, ed_es: usize) -> Result<Self, TrainError> {
        let wanted: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = wanted.iter().find(|w| !ARM_NAMES.contains(w)) {
            return Err(TrainError::Data(format!(
                "unknown arm {bad:?} (use {})",
                ARM_NAMES.join(", ")
            )));
        }
        let mut arms = Arms::paper(ed_es);
        arms.subsets
            .retain(|(name, _)| wanted.contains(&name.as_str()));
        arms.bn_adapt = wanted.contains(&"bn-adapt");
        Ok(arms)
    }
}

fn dice_of(d: &[f64]) -> Vec<Option<f64>> {
    d.iter()
        .enumerate()
        .map(|(c, v)| (c > 0 && v.is_finite()).then_some(*v))
        .collect()
}

fn patients(src: &dyn FrameSource, idx: &[usize]) -> usize {
    idx.iter()
        .map(|&i| src.patient(i))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Runs the experiment. `train_idx` are the frames fine-tuning may use, `test_idx` the test
/// patients' frames (disjoint by patient; checked). Each arm's runs go to `work_dir/<name>`
/// and resume from there.
#[allow(clippy::too_many_arguments)]
pub fn run_transfer(
    backend: &mut dyn Backend,
    base: &Model,
    src: &dyn FrameSource,
    tags: &[FrameTag],
    train_idx: &[usize],
    test_idx: &[usize],
    recipe: &FinetuneRecipe,
    arms: Option<Arms>,
    work_dir: &Path,
    progress: &dyn Progress,
) -> Result<TransferTable, TrainError> {
    let train_patients: std::collections::BTreeSet<&str> =
        train_idx.iter().map(|&i| src.patient(i)).collect();
    if let Some(&i) = test_idx
        .iter()
        .find(|&&i| train_patients.contains(src.patient(i)))
    {
        return Err(TrainError::Data(format!(
            "test patient {} is also in the training frames",
            src.patient(i)
        )));
    }
    if test_idx.is_empty() || train_idx.is_empty() {
        return Err(TrainError::Data(
            "the experiment needs training and test frames".into(),
        ));
    }
    let arms = match arms {
        Some(a) => a,
        None => Arms::paper(select(src, tags, train_idx, &Subset::EdEs, recipe.seed)?.len()),
    };
    let mut recipe = recipe.clone();
    recipe.images_per_epoch = Some(recipe.images_per_epoch.unwrap_or(train_idx.len()));
    recipe.keep_last = true;
    let batch = recipe.batch.max(1);
    let mut rows = Vec::new();

    let t0 = Instant::now();
    let d = validate(backend, base, src, test_idx, batch)?;
    rows.push(ArmResult {
        name: "base".into(),
        description: "base model, no target data".into(),
        frames: 0,
        dice: dice_of(&d),
        curve: vec![],
        seconds: t0.elapsed().as_secs_f64(),
    });

    // Frames of the arms already trained: an arm whose selection is identical to an earlier
    // one (on ACDC or Sunnybrook, where only ED and ES are labelled, "ed-es" = "all") would
    // train the same model again, so its row says so and repeats that result.
    let mut trained: Vec<(String, Vec<usize>, usize)> = Vec::new();
    for (name, subset) in &arms.subsets {
        let t0 = Instant::now();
        let mut idx = select(src, tags, train_idx, subset, recipe.seed)?;
        idx.sort_unstable();
        if let Some((same, _, row)) = trained.iter().find(|(_, f, _)| *f == idx) {
            log::info!("experiment arm {name}: {subset} selects exactly the frames of arm {same}; not trained again");
            let mut r = rows[*row].clone();
            r.name = name.clone();
            r.description = format!(
                "fine-tuned on {subset}: the same {} frames as `{same}`, same result",
                idx.len()
            );
            r.seconds = 0.0;
            rows.push(r);
            continue;
        }
        log::info!("experiment arm {name}: {subset}, {} frames", idx.len());
        let (model, summary) = finetune(
            backend,
            base,
            src,
            &idx,
            test_idx,
            &recipe,
            &work_dir.join(name),
            None,
            progress,
        )?;
        let model = model.ok_or_else(|| TrainError::Data(format!("arm {name} did not finish")))?;
        let d = validate(backend, &model, src, test_idx, batch)?;
        let curve = summary
            .curve()
            .iter()
            .map(|r| {
                let v: Vec<f64> = r.val_dice.iter().flatten().copied().collect();
                if v.is_empty() {
                    f64::NAN
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            })
            .collect();
        trained.push((name.clone(), idx.clone(), rows.len()));
        rows.push(ArmResult {
            name: name.clone(),
            description: format!("fine-tuned on {subset}"),
            frames: idx.len(),
            dice: dice_of(&d),
            curve,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }

    if arms.bn_adapt {
        let t0 = Instant::now();
        let (model, _) = adapt_batchnorm(backend, base, src, train_idx, &AdaptOptions { batch })?;
        let d = validate(backend, &model, src, test_idx, batch)?;
        rows.push(ArmResult {
            name: "bn-adapt".into(),
            description: "BatchNorm statistics re-estimated on unlabelled training images".into(),
            frames: train_idx.len(),
            dice: dice_of(&d),
            curve: vec![],
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(TransferTable {
        target: String::new(),
        class_names: base.labels.clone(),
        train_patients: train_patients.len(),
        train_frames: train_idx.len(),
        test_patients: patients(src, test_idx),
        test_frames: test_idx.len(),
        recipe,
        rows,
    })
}

/// The table as Markdown (Dice per foreground class, frames, time), numbered like the plot.
pub fn markdown(t: &TransferTable) -> String {
    let classes: Vec<usize> = (1..t.class_names.len())
        .filter(|&c| {
            t.rows
                .iter()
                .any(|r| r.dice.get(c).copied().flatten().is_some())
        })
        .collect();
    let mut s = format!(
        "Target `{}`: {} training patients ({} frames), {} test patients ({} frames). Dice on the test patients; fine-tuned arms report their last epoch.\n\n",
        t.target, t.train_patients, t.train_frames, t.test_patients, t.test_frames
    );
    s += "| # | model | frames |";
    for &c in &classes {
        s += &format!(" Dice {} |", t.class_names[c].to_uppercase());
    }
    s += " seconds |\n|---|---|---|";
    s += &"---|".repeat(classes.len() + 1);
    s += "\n";
    for (k, r) in t.rows.iter().enumerate() {
        s += &format!(
            "| {} | {} ({}) | {} |",
            k + 1,
            r.name,
            r.description,
            r.frames
        );
        for &c in &classes {
            s += &r
                .dice
                .get(c)
                .copied()
                .flatten()
                .map_or(" - |".to_string(), |v| format!(" {v:.3} |"));
        }
        s += &format!(" {:.0} |\n", r.seconds);
    }
    s
}
