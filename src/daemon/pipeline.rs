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
//! ([`prepare_slice`], [`Segmenter::infer`], [`labels_from_logits`]), the same code
//! `cineseg segment` runs. The inference stage owns the backend and the model; a model the
//! overnight hook promoted arrives through a [`ModelSlot`] and is loaded at the next series
//! boundary, so one series is never segmented by two models.
//!
//! A job whose instances are segmentations (corrected contours sent back by a viewer) is not
//! segmented: [`keep_if_segmentation`] keeps it as fine-tuning labels and the job is done.

use super::health::Health;
use super::overnight::{labels::keep_if_segmentation, ModelSlot};
use super::queue::{JobQueue, JobRecord, JobState};
use super::spool::Spool;
use super::{DaemonError, StageError};
use crate::analysis::quality;
use crate::analysis::series::{analyse, SeriesAnalysis as Analysis};
use crate::dicom::{AssembleOptions, CineStack};
use crate::image::{Placement, Slice2D};
use crate::nn::device::DeviceChoice;
use crate::nn::Model;
use crate::registry::ModelIdentity;
use crate::report::json::ResultIdentity;
use crate::segment::{labels_from_logits, prepare_slice, SegmentError, Segmenter, SliceLabels};
use crossbeam::channel::{bounded, Receiver, Sender};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl Ctx {
    fn new(job: JobRecord) -> Ctx {
        Ctx {
            job,
            failed: AtomicBool::new(false),
            model: OnceLock::new(),
            busy: Mutex::new(Vec::new()),
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
    total: usize,
}

struct Inferred {
    batch: Batch,
    logits: Vec<f32>,
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

    fn leave(&self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
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
        self.health.in_flight.fetch_add(1, Ordering::Relaxed);
        true
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
        {
            let s = sink.clone();
            threads.push(spawn(
                "inference",
                Box::new(move || inference(&s, model, &slot, rx_pre, tx_inf, ready_tx)),
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

fn feed_and_decode(sink: &Sink, queue: &JobQueue, stop: &AtomicBool, tx: Sender<Decoded>) {
    while !stop.load(Ordering::SeqCst) {
        if !sink.enter(stop) {
            break;
        }
        let job = match queue.take(JobState::Pending, Duration::from_millis(300)) {
            Ok(Some(j)) => j,
            Ok(None) => {
                sink.slots.1.notify_all();
                sink.leave();
                continue;
            }
            Err(e) => {
                log::error!("job queue: {e}");
                sink.leave();
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        // Results already stored by a run that crashed before moving the job on.
        if sink.settings.output_dir.join(&job.id).is_dir() {
            log::info!(
                "job {}: results already stored, not processing again",
                job.id
            );
            if let Err(e) = queue.advance(&job.id, JobState::Pending, JobState::Stored) {
                log::error!("{e}");
            }
            sink.leave();
            continue;
        }
        let ctx = Arc::new(Ctx::new(job));
        // Corrected contours coming back: kept for the overnight fine-tuning, not segmented.
        let labels_dir = sink.settings.spool_dir.join("labels");
        match sink.guard(&ctx, "keep contours", || {
            Ok(keep_if_segmentation(
                &ctx.job,
                &sink.spool.objects_dir(),
                &labels_dir,
            )?)
        }) {
            None => continue,
            Some(Some(n)) => {
                log::info!(
                    "job {}: {n} segmentation(s) of a received series kept as fine-tuning labels",
                    ctx.job.id
                );
                if let Err(e) = queue.advance(&ctx.job.id, JobState::Pending, JobState::Done) {
                    log::error!("{e}");
                }
                sink.spool.discard(&ctx.job);
                sink.leave();
                continue;
            }
            Some(None) => {}
        }
        log::info!(
            "job {}: decoding {} instances",
            ctx.job.id,
            ctx.job.files.len()
        );
        let objects = sink.spool.objects_dir();
        let decoded = sink.guard(&ctx, "decode", || {
            let files: Vec<PathBuf> = ctx.job.files.iter().map(|f| objects.join(f)).collect();
            let scan =
                crate::dicom::stack::load_files(&files, &objects, &AssembleOptions::default())?;
            for s in &scan.skipped {
                log::warn!(
                    "job {}: skipped an instance: {}",
                    ctx.job.id,
                    crate::text::printable(&s.to_string())
                );
            }
            let stack = scan
                .stacks
                .into_iter()
                .max_by_key(|s| {
                    s.slices
                        .iter()
                        .map(|sl| sl.frames.iter().flatten().count())
                        .sum::<usize>()
                })
                .ok_or_else(|| {
                    let why: Vec<String> =
                        scan.skipped.iter().take(3).map(|s| s.to_string()).collect();
                    StageError::NoStack {
                        instances: ctx.job.files.len(),
                        why: if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", why.join("; "))
                        },
                    }
                })?;
            Ok(stack)
        });
        if let Some(stack) = decoded {
            if tx
                .send(Decoded {
                    ctx,
                    stack: Arc::new(stack),
                })
                .is_err()
            {
                break;
            }
        }
    }
}

fn preprocess(sink: &Sink, rx: Receiver<Decoded>, tx: Sender<Batch>) {
    for d in rx {
        let pre = match sink.settings.model_preprocess.clone() {
            Some(p) => p,
            None => continue,
        };
        let ctx = d.ctx.clone();
        let stack = d.stack.clone();
        let batch_size = sink.settings.batch;
        let all: Vec<(usize, usize)> = (0..stack.n_slices())
            .flat_map(|s| (0..stack.n_phases()).map(move |p| (s, p)))
            .filter(|(s, p)| stack.frame(*s, *p).is_some())
            .collect();
        let total = all.len();
        if total == 0 {
            sink.fail(&ctx, "preprocess", "the stack has no images");
            continue;
        }
        for chunk in all.chunks(batch_size) {
            let made = sink.guard(&ctx, "preprocess", || {
                // From the buffer pool: inference hands the batch tensor back to the pool, so a
                // buffer from anywhere else would join it for good (measured: +25 MiB a series).
                let mut data = crate::nn::buffer::take_any(chunk.len() * pre.size * pre.size);
                data.clear();
                let mut items = Vec::with_capacity(chunk.len());
                let ps = stack.grid.pixel_spacing;
                for &(s, p) in chunk {
                    let f = stack
                        .frame(s, p)
                        .ok_or(StageError::Internal("a listed frame is missing"))?;
                    let slice = Slice2D {
                        width: stack.grid.cols,
                        height: stack.grid.rows,
                        spacing: [ps[1] as f32, ps[0] as f32],
                        data: f.pixels.clone(),
                    };
                    let (img, pl) = prepare_slice(&slice, &pre)?;
                    data.extend_from_slice(&img);
                    items.push((s, p, pl));
                }
                Ok(Batch {
                    ctx: ctx.clone(),
                    stack: stack.clone(),
                    items,
                    data,
                    total,
                })
            });
            match made {
                Some(b) => {
                    if tx.send(b).is_err() {
                        return;
                    }
                }
                None => break,
            }
        }
    }
}

fn inference(
    sink: &Sink,
    model: Model,
    slot: &ModelSlot,
    rx: Receiver<Batch>,
    tx: Sender<Inferred>,
    ready: Sender<Result<(), SegmentError>>,
) {
    let (mut backend, why) =
        match crate::nn::device::select(sink.settings.device, sink.settings.threads) {
            Ok(b) => b,
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
    log::info!("compute backend: {why}");
    let mut seg = match Segmenter::new(backend.as_mut(), &model, None, sink.settings.batch) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut serving = ModelIdentity::of(&sink.settings.model_name, &model);
    drop(model);
    let mut last_series = String::new();
    for mut b in rx {
        let ctx = b.ctx.clone();
        // Batches of one series arrive together: a new job id is a series boundary, the only
        // place a promoted model may replace the serving one.
        if ctx.job.id != last_series {
            last_series = ctx.job.id.clone();
            if let Some((next, name)) = slot.take() {
                match seg.reload(&next) {
                    Ok(()) => {
                        log::info!("now serving {name} (was {})", serving.name);
                        serving = ModelIdentity::of(&name, &next);
                    }
                    Err(e) => log::error!(
                        "promoted model {name} not swapped in: {e}; still serving {}",
                        serving.name
                    ),
                }
            }
        }
        let _ = ctx.model.set(serving.clone());
        let data = std::mem::take(&mut b.data);
        let n = b.items.len();
        let logits = sink.guard(&ctx, "inference", || Ok(seg.infer(data, n)?));
        if let Some(logits) = logits {
            if tx.send(Inferred { batch: b, logits }).is_err() {
                return;
            }
        }
    }
}

fn postprocess(sink: &Sink, rx: Receiver<Inferred>, tx: Sender<Labelled>) {
    let k = sink.settings.classes;
    let mut acc: HashMap<String, HashMap<(usize, usize), SliceLabels>> = HashMap::new();
    for m in rx {
        let ctx = m.batch.ctx.clone();
        acc.retain(|_, v| !v.is_empty());
        let per = m.logits.len() / m.batch.items.len().max(1);
        let done = sink.guard(&ctx, "postprocess", || {
            let entry = acc.entry(ctx.job.id.clone()).or_default();
            for (i, (s, p, pl)) in m.batch.items.iter().enumerate() {
                let l = m
                    .logits
                    .get(i * per..(i + 1) * per)
                    .ok_or(StageError::Internal("fewer class scores than images"))?;
                entry.insert((*s, *p), labels_from_logits(l, k, pl)?);
            }
            Ok(entry.len() >= m.batch.total)
        });
        match done {
            Some(true) => {
                let labels = acc.remove(&ctx.job.id).unwrap_or_default();
                if tx
                    .send(Labelled {
                        ctx,
                        stack: m.batch.stack,
                        labels,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Some(false) => {}
            None => {
                acc.remove(&ctx.job.id);
            }
        }
    }
}

fn measure(sink: &Sink, rx: Receiver<Labelled>, tx: Sender<(Arc<Ctx>, Analysis)>) {
    for m in rx {
        let ctx = m.ctx.clone();
        let analysis = sink.guard(&ctx, "measure", || {
            let mut a = analyse(&m.stack, &m.labels, sink.settings.min_confidence)?;
            add_reception_findings(&ctx.job, &mut a);
            Ok(a)
        });
        if let Some(a) = analysis {
            if tx.send((ctx, a)).is_err() {
                return;
            }
        }
    }
}

/// The buffer pool bound while serving: a few batches' activations, not a training step's.
const INFERENCE_POOL_BYTES: usize = 512 << 20;

/// Hands memory freed by a finished series back to the system. glibc keeps freed heap memory in
/// its per-thread arenas, and a series' decode and inference allocate hundreds of MB across
/// rayon threads: without this the daemon's resident size grew ~50 MiB per series.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    log::debug!(
        "buffer pool after the series: {} MiB",
        crate::nn::buffer::pooled_bytes() >> 20
    );
}

fn write(sink: &Sink, rx: Receiver<(Arc<Ctx>, Analysis)>) {
    for (ctx, a) in rx {
        let st = &sink.settings;
        let stored = sink.guard(&ctx, "write", || {
            let model = ctx
                .model
                .get()
                .ok_or(StageError::Internal("no model recorded for the series"))?;
            let job = &ctx.job;
            let id = ResultIdentity {
                id: &job.id,
                version: job.version(),
                supersedes: job.supersedes.as_deref(),
                closed_because: &job.closed_because,
                series_instance_uid: &job.series_uid,
            };
            Ok(crate::report::results::write(
                &st.output_dir,
                &id,
                &a,
                model,
                st.overlays,
            )?)
        });
        let Some(dir) = stored else { continue };
        if let Err(e) = sink
            .queue
            .advance(&ctx.job.id, JobState::Pending, JobState::Stored)
        {
            log::error!(
                "job {}: results stored in {} but the queue could not be updated: {e}",
                ctx.job.id,
                dir.display()
            );
        }
        sink.spool.discard(&ctx.job);
        let latency =
            (super::fsio::unix_ms().saturating_sub(ctx.job.last_received_ms)) as f64 / 1000.0;
        sink.health.finished(latency);
        let ef = a
            .summary
            .as_ref()
            .and_then(|s| s.lv_ef_percent)
            .map(|v| format!("{v:.1} %"))
            .unwrap_or_else(|| "n/a".into());
        log::info!(
            "job {}: results stored in {} ({:.2} s after the last instance; LVEF {ef}, {} quality flags; busy: {})",
            ctx.job.id,
            dir.display(),
            latency,
            a.flags.len() + a.notes.len(),
            ctx.busy_line()
        );
        drop(a);
        release_freed_memory();
        sink.leave();
    }
}

/// What the receiver knows about a series' completeness, in the result: an incomplete
/// reception is a quality flag (its numbers may be wrong), doubts are notes.
fn add_reception_findings(job: &JobRecord, a: &mut Analysis) {
    if let Some(why) = &job.incomplete {
        a.flags.push(quality::QualityFlag {
            kind: quality::FlagKind::IncompleteReception,
            severity: quality::Severity::Error,
            phase: None,
            slice: None,
            message: format!("the series may be incomplete: {why}"),
        });
    }
    a.notes.extend(job.reception_notes.iter().cloned());
}
