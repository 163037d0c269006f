//! The streaming pipeline: decode -> preprocess -> batched inference -> post-process ->
//! measure -> write, one thread per stage, joined by bounded crossbeam channels (a slow stage
//! holds the ones before it back; nothing queues without bound). Up to `series_in_flight`
//! series are inside at once, so one series decodes while another is in inference.
//!
//! A series that fails in any stage (or panics) is quarantined: its job goes to `failed` with
//! the error, its received files move to `<spool>/quarantine/<job>/` with `error.txt`, and the
//! later stages drop its remaining messages. The other series carry on.
//!
//! The preprocessing, inference and label steps are [`crate::segment`]'s
//! ([`crate::segment::prepare_slice`], [`crate::segment::Segmenter::infer`], [`crate::segment::labels_from_logits`]), the same code
//! `cineseg segment` runs. The inference stage owns the backend and the model; a model the
//! overnight hook promoted arrives through a [`ModelSlot`] and is loaded at the next series
//! boundary, so one series is never segmented by two models.
//!
//! A job whose instances are segmentations (corrected contours sent back by a viewer) is not
//! segmented: [`crate::daemon::overnight::labels::keep_if_segmentation`] keeps it as fine-tuning labels and the job is done.

mod speculate;
mod stages;

use super::health::Health;
use super::overnight::ModelSlot;
use super::queue::{JobQueue, JobRecord, JobState};
use super::spool::Spool;
use super::{DaemonError, StageError};
use crate::analysis::series::SeriesAnalysis as Analysis;
use crate::dicom::CineStack;
use crate::image::Placement;
use crate::nn::device::DeviceChoice;
use crate::nn::Model;
use crate::registry::ModelIdentity;
use crate::segment::{SegmentError, SliceLabels};
use crossbeam::channel::bounded;
use speculate::{speculate, SliceCache, SpeculativeChunk};
use stages::{feed_and_decode, inference, measure, postprocess, preprocess, write, InferenceIo};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Settings the stages need.
#[derive(Clone)]
pub struct PipelineSettings {
    /// Results folder.
    pub output_dir: PathBuf,
    /// State folder of the spool (for quarantine).
    pub spool_dir: PathBuf,
    /// Device and threads for the backend.
    pub device: DeviceChoice,
    /// CPU threads.
    pub threads: usize,
    /// Images per inference batch.
    pub batch: usize,
    /// Series inside the pipeline at once.
    pub series_in_flight: usize,
    /// Bounded channel capacity between stages.
    pub channel_capacity: usize,
    /// Low-confidence threshold.
    pub min_confidence: f32,
    /// Segment slices while their series is still arriving ([`speculate`]).
    pub streaming: bool,
    /// Write overlay secondary captures.
    pub overlays: bool,
    /// Name of the model in reports.
    pub model_name: String,
    /// Input preparation; filled from the model by [`Pipeline::start`].
    pub model_preprocess: Option<crate::nn::Preprocess>,
    /// Model classes; filled from the model by [`Pipeline::start`].
    pub classes: usize,
}

/// One series going through the stages.
struct Ctx {
    job: JobRecord,
    failed: AtomicBool,
    /// The model that segmented it, set by the inference stage (models change between series).
    model: OnceLock<ModelIdentity>,
    /// Busy seconds per stage for this series, for the log line that says where time went.
    busy: Mutex<Vec<(&'static str, f64)>>,
    /// Images whose labels streaming inference made before the series closed.
    reused: AtomicUsize,
}

impl Ctx {
    fn new(job: JobRecord) -> Ctx {
        Ctx {
            job,
            failed: AtomicBool::new(false),
            model: OnceLock::new(),
            busy: Mutex::new(Vec::new()),
            reused: AtomicUsize::new(0),
        }
    }

    fn add_busy(&self, stage: &'static str, secs: f64) {
        let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        match b.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, t)) => *t += secs,
            None => b.push((stage, secs)),
        }
    }

    /// "decode 0.52 s, inference 3.10 s, ..." in stage order.
    fn busy_line(&self) -> String {
        let b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        b.iter()
            .map(|(s, t)| format!("{s} {t:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct Decoded {
    ctx: Arc<Ctx>,
    stack: Arc<CineStack>,
}

/// A batch of images of one series; `total` is the series' image count.
struct Batch {
    ctx: Arc<Ctx>,
    stack: Arc<CineStack>,
    items: Vec<(usize, usize, Placement)>,
    data: Vec<f32>,
    /// Digest of the network input ([`speculate::prepare_chunk`]).
    key: speculate::ChunkKey,
    total: usize,
}

/// What the inference stage made of a batch.
enum Scores {
    /// Class scores from the network, classes fastest.
    Logits(Vec<f32>),
    /// Native-grid labels streaming inference made before the series closed.
    Labels(Vec<SliceLabels>),
}

struct Inferred {
    batch: Batch,
    result: Scores,
}

struct Labelled {
    ctx: Arc<Ctx>,
    stack: Arc<CineStack>,
    labels: HashMap<(usize, usize), SliceLabels>,
}

/// Shared by the stages: where failures and successes are reported.
struct Sink {
    queue: Arc<JobQueue>,
    spool: Arc<Spool>,
    health: Arc<Health>,
    settings: PipelineSettings,
    slots: (Mutex<usize>, Condvar),
}

impl Sink {
    fn fail(&self, ctx: &Ctx, stage: &str, err: &str) {
        if ctx.failed.swap(true, Ordering::SeqCst) {
            return;
        }
        let msg = format!("{stage}: {err}");
        log::error!(
            "series job {} ({} instances of series {}) quarantined: {}",
            ctx.job.id,
            ctx.job.files.len(),
            crate::text::printable(&ctx.job.series_uid),
            crate::text::printable(&msg)
        );
        let qdir = self.settings.spool_dir.join("quarantine").join(&ctx.job.id);
        if std::fs::create_dir_all(&qdir).is_ok() {
            for f in &ctx.job.files {
                let _ = std::fs::rename(self.spool.objects_dir().join(f), qdir.join(f));
            }
            let _ = std::fs::write(qdir.join("error.txt"), format!("{msg}\n"));
        }
        if let Err(e) = self.queue.fail(&ctx.job, JobState::Pending, &msg) {
            log::error!("cannot record the failure of job {}: {e}", ctx.job.id);
        }
        self.health.failed.fetch_add(1, Ordering::Relaxed);
        self.leave();
    }

    /// A series taken by [`Sink::enter`] has left the pipeline (done or failed).
    fn leave(&self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.release_slot();
    }

    /// A slot taken by [`Sink::enter`] while waiting for a job is given back unused. (The
    /// health line counts series, not waiting slots: it said "1 in flight" on an idle box.)
    fn release_slot(&self) {
        let (m, cv) = &self.slots;
        let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        cv.notify_all();
    }

    fn enter(&self, stop: &AtomicBool) -> bool {
        let (m, cv) = &self.slots;
        let mut n = m.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.settings.series_in_flight {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            n = cv
                .wait_timeout(n, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *n += 1;
        true
    }

    /// A job was taken into the slot [`Sink::enter`] reserved.
    fn started(&self) {
        self.health.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `f` for a message of `ctx`, quarantining the series on error or panic.
    fn guard<T>(
        &self,
        ctx: &Ctx,
        stage: &'static str,
        f: impl FnOnce() -> Result<T, StageError>,
    ) -> Option<T> {
        if ctx.failed.load(Ordering::SeqCst) {
            return None;
        }
        let t0 = std::time::Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        ctx.add_busy(stage, t0.elapsed().as_secs_f64());
        match result {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.fail(ctx, stage, &e.to_string());
                None
            }
            Err(_) => {
                self.fail(ctx, stage, "internal error (panic)");
                None
            }
        }
    }
}

/// The running pipeline.
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the stages and the feeder that takes pending jobs from `queue`.
    /// A model offered in `slot` replaces the serving one before the next series.
    pub fn start(
        mut settings: PipelineSettings,
        model: Model,
        slot: Arc<ModelSlot>,
        queue: Arc<JobQueue>,
        spool: Arc<Spool>,
        health: Arc<Health>,
    ) -> Result<Pipeline, DaemonError> {
        settings.model_preprocess = model.preprocess.clone();
        settings.classes = model.config().classes;
        crate::nn::buffer::set_pool_limit(INFERENCE_POOL_BYTES);
        let cap = settings.channel_capacity;
        let sink = Arc::new(Sink {
            queue: queue.clone(),
            spool,
            health,
            settings: settings.clone(),
            slots: (Mutex::new(0), Condvar::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (tx_dec, rx_dec) = bounded::<Decoded>(cap);
        let (tx_pre, rx_pre) = bounded::<Batch>(cap);
        let (tx_inf, rx_inf) = bounded::<Inferred>(cap);
        let (tx_lab, rx_lab) = bounded::<Labelled>(cap);
        let (tx_mea, rx_mea) = bounded::<(Arc<Ctx>, Analysis)>(cap);
        let (ready_tx, ready_rx) = bounded::<Result<(), SegmentError>>(1);
        let mut threads = Vec::new();
        let spawn = |name: &'static str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(DaemonError::thread(name))
        };
        {
            let (s, st, q) = (sink.clone(), stop.clone(), queue);
            threads.push(spawn(
                "feed-decode",
                Box::new(move || feed_and_decode(&s, &q, &st, tx_dec)),
            )?);
        }
        {
            let s = sink.clone();
            threads.push(spawn(
                "preprocess",
                Box::new(move || preprocess(&s, rx_dec, tx_pre)),
            )?);
        }
        let (tx_spec, rx_spec) = bounded::<SpeculativeChunk>(cap);
        if settings.streaming {
            let (tx_ready, rx_ready) = bounded(SLICES_WAITING);
            sink.spool.set_slice_listener(tx_ready);
            let (s, st) = (sink.clone(), stop.clone());
            threads.push(spawn(
                "streaming",
                Box::new(move || speculate(&s, &st, rx_ready, tx_spec)),
            )?);
        } else {
            drop(tx_spec);
        }
        {
            let s = sink.clone();
            let io = InferenceIo {
                rx: rx_pre,
                spec_rx: rx_spec,
                tx: tx_inf,
                ready: ready_tx,
            };
            threads.push(spawn(
                "inference",
                Box::new(move || {
                    let mut cache = SliceCache::new(STREAMING_CACHE_BYTES);
                    inference(&s, model, &slot, &mut cache, io)
                }),
            )?);
        }
        {
            let s = sink.clone();
            threads.push(spawn(
                "postprocess",
                Box::new(move || postprocess(&s, rx_inf, tx_lab)),
            )?);
        }
        {
            let s = sink.clone();
            threads.push(spawn(
                "measure",
                Box::new(move || measure(&s, rx_lab, tx_mea)),
            )?);
        }
        {
            let s = sink;
            threads.push(spawn("write", Box::new(move || write(&s, rx_mea)))?);
        }
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(())) => Ok(Pipeline { stop, threads }),
            Ok(Err(e)) => Err(DaemonError::Inference(e)),
            Err(_) => Err(DaemonError::NotStarted("inference")),
        }
    }

    /// Stops taking jobs and waits for the stages to drain.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Labels streaming inference may hold for series not yet closed (a 12 x 20 series of
/// 256 x 256 images holds 16 MB).
const STREAMING_CACHE_BYTES: usize = 96 << 20;

/// Announced slices waiting for the streaming stage; beyond this they wait for their job.
const SLICES_WAITING: usize = 64;

/// The buffer pool bound while serving: a few batches' activations, not a training step's.
const INFERENCE_POOL_BYTES: usize = 512 << 20;
