//! `cineseg models`: the model registry (list, add, promote, rollback, current).

use super::{CliError, VALIDATION_FRACTION};
use crate::registry::evaluate::held_out_validation;
use crate::registry::Registry;
use crate::store::FrameStore;
use crate::train::finetune::split_by_patient;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    /// The registry folder (`models add` creates it; the other actions need an existing one).
    /// May be given before or after the action.
    #[arg(long, default_value = "registry", global = true)]
    registry: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Every version with its parent, data and latest held-out score; `*` marks the current one.
    List,
    /// Register a model file; prints its id.
    Add {
        model: PathBuf,
        /// Id of the version it was trained from.
        #[arg(long)]
        parent: Option<String>,
        /// What it was trained on (default: the `train_data` the file records).
        #[arg(long, default_value = "")]
        data: String,
        #[arg(long, default_value = "")]
        note: String,
        /// Also make it the current model, without a held-out comparison (for a first model,
        /// or one validated elsewhere; `promote` is the validated way). Recorded as such.
        #[arg(long)]
        current: bool,
    },
    /// Make a version current if it beats the current one on the site's held-out split.
    Promote {
        id: String,
        /// Frame store with the site's labelled frames; its held-out patients are the test.
        #[arg(long)]
        data: PathBuf,
        /// Site name (the held-out split is drawn once per site).
        #[arg(long, default_value = "site")]
        site: String,
        /// Fraction of patients held out at the first draw.
        #[arg(long, default_value_t = VALIDATION_FRACTION)]
        fraction: f64,
        /// Required improvement in mean Dice.
        #[arg(long, default_value_t = 0.005)]
        margin: f64,
        #[arg(long, default_value = "auto")]
        device: crate::nn::device::DeviceChoice,
    },
    /// Go back to the previous current model, or to a given version.
    Rollback {
        #[arg(long)]
        to: Option<String>,
    },
    /// Print the path of the current model's weights.
    Current,
}

pub fn run(a: ModelsArgs, threads: usize) -> Result<(), CliError> {
    let exists = a.registry.join("registry.json").is_file() || a.registry.join("models").is_dir();
    if !matches!(a.action, Action::Add { .. }) && !exists {
        return Err(CliError::Usage(format!(
            "{}: no model registry here (give --registry, or create one with `cineseg models \
             add MODEL --registry {}`)",
            a.registry.display(),
            a.registry.display()
        )));
    }
    let mut reg = Registry::open(&a.registry)?;
    match a.action {
        Action::List => {
            let cur = reg.current().map(str::to_string);
            for m in reg.list()? {
                let score = m
                    .validations
                    .last()
                    .map(|v| format!("{:.4}", v.score))
                    .unwrap_or_else(|| "-".into());
                let mark = if cur.as_deref() == Some(m.id.as_str()) {
                    "*"
                } else {
                    " "
                };
                println!(
                    "{mark} {}  parent {:<16}  held-out {score:>6}  data {}  {}",
                    m.id,
                    m.parent.as_deref().unwrap_or("-"),
                    m.data,
                    m.note
                );
            }
        }
        Action::Add {
            model,
            parent,
            data,
            note,
            current,
        } => {
            let m = reg.add(&model, parent.as_deref(), &data, &note)?;
            println!("{}", m.id);
            if current {
                reg.set_current(&m.id)?;
                println!("current model: {} (set by hand, not validated here)", m.id);
            }
        }
        Action::Promote {
            id,
            data,
            site,
            fraction,
            margin,
            device,
        } => {
            let store = FrameStore::open(&data)?;
            let patients: Vec<&str> = store
                .frames()
                .iter()
                .map(|f| f.patient_id.as_str())
                .collect();
            let split = reg.held_out_split(&site, fraction, patients)?;
            let (_, held) = split_by_patient(&store, |p| split.is_held_out(p));
            let (mut backend, why) = crate::nn::device::select(device, threads)?;
            log::info!(
                "validating on {} held-out frames with {} ({why})",
                held.len(),
                backend.describe()
            );
            let d = reg.promote(&id, margin, &mut |m| {
                held_out_validation(backend.as_mut(), m, &store, &held, 8)
            })?;
            println!(
                "{}: {}",
                if d.promoted { "promoted" } else { "refused" },
                d.reason
            );
            super::write_json(&a.registry.join("last-decision.json"), &d)?;
        }
        Action::Rollback { to } => {
            let id = reg.rollback(to.as_deref())?;
            println!("current model: {id}");
        }
        Action::Current => match reg.current() {
            Some(id) => println!("{}", reg.model_path(id).display()),
            None => {
                return Err(CliError::Usage(format!(
                    "{} has no current model",
                    a.registry.display()
                )))
            }
        },
    }
    Ok(())
}
