//! The overnight hook: inside a configured local time window, fine-tune the serving model on
//! the corrected contours that came back (DICOM SEG referencing a received series), and swap
//! the new model in only if the registry promoted it on the site's held-out patients.
//!
//! Training runs on its own thread with its own backend and thread count; inference never
//! waits for it. A promoted model is handed to the pipeline through a [`ModelSlot`] and
//! replaces the serving one between two series, never inside one. At most one run per night;
//! a run cut short by the window's end resumes from its checkpoints the next night.

pub mod config;
pub mod job;
pub mod labels;
pub mod window;

use crate::daemon::queue::JobQueue;
use crate::nn::device::DeviceChoice;
use crate::nn::{Model, Preprocess};
use job::{run_night, NightOutcome, NightPlan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::FinetuneConfig;

/// A promoted model waiting for the inference stage to pick it up between series.
#[derive(Default)]
pub struct ModelSlot {
    next: Mutex<Option<(Model, String)>>,
}

impl ModelSlot {
    /// Offers `model` (named `name` in reports) to the pipeline; replaces an unclaimed offer.
    pub fn offer(&self, model: Model, name: String) {
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = Some((model, name));
    }

    /// Takes the offered model, if any.
    pub fn take(&self) -> Option<(Model, String)> {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// `<spool>/finetune/state.json`: which night ran last, which contours it used, and which
/// contours a skipped attempt saw (not retried until that set changes).
#[derive(Default, Serialize, Deserialize)]
struct NightState {
    last_day: String,
    trained_on: BTreeSet<String>,
    #[serde(default)]
    skipped_with: BTreeSet<String>,
}

impl NightState {
    fn load(path: &Path) -> NightState {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, path: &Path) {
        let tmp = path.with_extension("tmp");
        let res = serde_json::to_vec_pretty(self)
            .map_err(crate::daemon::DaemonError::json("the overnight state"))
            .and_then(|b| crate::daemon::fsio::write_atomic(&tmp, path, &b));
        if let Err(e) = res {
            log::error!("{}: {e}", path.display());
        }
    }
}

/// What the overnight thread needs from the daemon.
pub struct OvernightSetup {
    pub cfg: FinetuneConfig,
    pub spool_dir: PathBuf,
    pub serving_file: PathBuf,
    pub preprocess: Preprocess,
    pub device: DeviceChoice,
    pub queue: Arc<JobQueue>,
    pub slot: Arc<ModelSlot>,
    pub stop: Arc<AtomicBool>,
}

impl OvernightSetup {
    /// The registry folder in use.
    pub fn registry_dir(cfg: &FinetuneConfig, spool_dir: &Path) -> PathBuf {
        cfg.registry
            .clone()
            .unwrap_or_else(|| spool_dir.join("registry"))
    }

    /// Checks the window every `check_interval_s` until `stop`; runs at most one night's job per
    /// local date. Runs on the calling thread.
    pub fn run(self) {
        let Ok(window) = self.cfg.window() else {
            return;
        };
        let work_dir = self.spool_dir.join("finetune");
        let state_file = work_dir.join("state.json");
        let labels_dir = self.spool_dir.join("labels");
        let objects = self.spool_dir.join("objects");
        log::info!(
            "overnight fine-tuning: window {window} local time, registry {}",
            Self::registry_dir(&self.cfg, &self.spool_dir).display()
        );
        let mut next_check = std::time::Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            if std::time::Instant::now() < next_check {
                continue;
            }
            next_check = std::time::Instant::now() + Duration::from_secs(self.cfg.check_interval_s);
            let (day, minute) = window::local_now();
            if !window.contains(minute) {
                continue;
            }
            let mut state = NightState::load(&state_file);
            if state.last_day == day {
                continue;
            }
            // Cheap listing first: nothing is decoded until enough new contours are there.
            let files: BTreeSet<String> = labels::label_files(&labels_dir).into_iter().collect();
            let new = files
                .iter()
                .filter(|f| !state.trained_on.contains(*f))
                .count();
            if new < self.cfg.min_new_series || files == state.skipped_with {
                continue;
            }
            let labelled = match labels::labelled_series(&labels_dir, &self.queue, &objects) {
                Ok(l) => l,
                Err(e) => {
                    log::error!("overnight fine-tuning: {e}");
                    continue;
                }
            };
            if let Err(e) = crate::daemon::fsio::ensure_dir(&work_dir) {
                log::error!("overnight fine-tuning: {e}");
                continue;
            }
            log::info!(
                "overnight fine-tuning: {} labelled series ({new} new)",
                labelled.len()
            );
            let plan = NightPlan {
                work_dir: work_dir.clone(),
                registry_dir: Self::registry_dir(&self.cfg, &self.spool_dir),
                serving_file: &self.serving_file,
                preprocess: &self.preprocess,
                cfg: &self.cfg,
                device: self.device,
            };
            let budget = Duration::from_secs(60 * window.minutes_left(minute) as u64);
            let finished = match run_night(&plan, &labelled, budget) {
                Ok(NightOutcome::Skipped(why)) => {
                    // Retried tonight as soon as other contours arrive.
                    log::info!("overnight fine-tuning skipped: {why}");
                    state.skipped_with = files;
                    state.save(&state_file);
                    continue;
                }
                Ok(NightOutcome::Unfinished) => false,
                Ok(NightOutcome::Judged(d, promoted)) => {
                    log::info!(
                        "overnight fine-tuning: candidate {} {}: {}",
                        d.candidate,
                        if d.promoted { "promoted" } else { "refused" },
                        d.reason
                    );
                    if let Some((model, id)) = promoted {
                        self.slot.offer(model, format!("registry:{id}"));
                    }
                    true
                }
                Err(e) => {
                    log::error!("overnight fine-tuning failed: {e}");
                    true
                }
            };
            state.last_day = day;
            if finished {
                state.trained_on = labelled.into_iter().map(|l| l.label_file).collect();
            }
            state.save(&state_file);
        }
    }
}
