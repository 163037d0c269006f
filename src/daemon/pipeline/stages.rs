//! The six stages of the pipeline, in order: each takes messages from its input channel, does its
//! one step for a series, and passes the result on (see the parent module for the design).

use super::speculate::{prepare_chunk, slice_chunks, SliceCache, SpeculativeChunk};
use super::{Batch, Ctx, Decoded, Inferred, Labelled, Scores, Sink};
use crate::analysis::quality;
use crate::analysis::series::{analyse, SeriesAnalysis as Analysis};
use crate::daemon::overnight::{labels::keep_if_segmentation, ModelSlot};
use crate::daemon::queue::{JobQueue, JobRecord, JobState};
use crate::daemon::StageError;
use crate::dicom::AssembleOptions;
use crate::image::Placement;
use crate::nn::Model;
use crate::registry::ModelIdentity;
use crate::report::json::ResultIdentity;
use crate::segment::{labels_of_batch, SegmentError, Segmenter, SliceLabels};
use crossbeam::channel::{Receiver, Sender, TryRecvError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn feed_and_decode(
    sink: &Sink,
    queue: &JobQueue,
    stop: &AtomicBool,
    tx: Sender<Decoded>,
) {
    while !stop.load(Ordering::SeqCst) {
        if !sink.enter(stop) {
            break;
        }
        let job = match queue.take(JobState::Pending, Duration::from_millis(300)) {
            Ok(Some(j)) => {
                sink.started();
                j
            }
            Ok(None) => {
                sink.slots.1.notify_all();
                sink.release_slot();
                continue;
            }
            Err(e) => {
                log::error!("job queue: {e}");
                sink.release_slot();
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

pub(super) fn preprocess(sink: &Sink, rx: Receiver<Decoded>, tx: Sender<Batch>) {
    for d in rx {
        let pre = match sink.settings.model_preprocess.clone() {
            Some(p) => p,
            None => continue,
        };
        let ctx = d.ctx.clone();
        let stack = d.stack.clone();
        let chunks = slice_chunks(&stack, sink.settings.batch);
        let total: usize = chunks.iter().map(Vec::len).sum();
        if total == 0 {
            sink.fail(&ctx, "preprocess", "the stack has no images");
            continue;
        }
        for chunk in &chunks {
            let made = sink.guard(&ctx, "preprocess", || {
                let c = prepare_chunk(&stack, chunk, &pre)?;
                Ok(Batch {
                    ctx: ctx.clone(),
                    stack: stack.clone(),
                    items: c.items,
                    data: c.data,
                    key: c.key,
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

/// The inference stage's channels: job batches in, scores out, and the streaming chunks it
/// runs when no job batch waits.
pub(super) struct InferenceIo {
    pub rx: Receiver<Batch>,
    pub spec_rx: Receiver<SpeculativeChunk>,
    pub tx: Sender<Inferred>,
    pub ready: Sender<Result<(), SegmentError>>,
}

pub(super) fn inference(
    sink: &Sink,
    model: Model,
    slot: &ModelSlot,
    cache: &mut SliceCache,
    io: InferenceIo,
) {
    let InferenceIo {
        rx,
        mut spec_rx,
        tx,
        ready,
    } = io;
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
    loop {
        let work = match next_work(&rx, &mut spec_rx) {
            Some(w) => w,
            None => return,
        };
        let mut b = match work {
            Work::Job(b) => b,
            Work::Ahead(a) => {
                run_ahead(sink, &mut seg, cache, &serving, a);
                continue;
            }
        };
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
        if let Some(labels) = cache.get(&b.key, &serving.content_id) {
            ctx.reused.fetch_add(labels.len(), Ordering::Relaxed);
            crate::nn::buffer::give(std::mem::take(&mut b.data));
            if tx
                .send(Inferred {
                    batch: b,
                    result: Scores::Labels(labels),
                })
                .is_err()
            {
                return;
            }
            continue;
        }
        let data = std::mem::take(&mut b.data);
        let n = b.items.len();
        let logits = sink.guard(&ctx, "inference", || Ok(seg.infer(data, n)?));
        if let Some(logits) = logits {
            let msg = Inferred {
                batch: b,
                result: Scores::Logits(logits),
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    }
}

/// What the inference stage does next.
enum Work {
    /// A batch of a job (always first).
    Job(Batch),
    /// A chunk of a series still arriving, when no job batch waits.
    Ahead(SpeculativeChunk),
}

/// The next job batch, else (waiting for either) the next streaming chunk; `None` when the
/// job channel is closed (the pipeline stops).
fn next_work(rx: &Receiver<Batch>, spec: &mut Receiver<SpeculativeChunk>) -> Option<Work> {
    match rx.try_recv() {
        Ok(b) => return Some(Work::Job(b)),
        Err(TryRecvError::Disconnected) => return None,
        Err(TryRecvError::Empty) => {}
    }
    crossbeam::select! {
        recv(rx) -> m => m.ok().map(Work::Job),
        recv(spec) -> m => match m {
            Ok(a) => Some(Work::Ahead(a)),
            Err(_) => {
                // Streaming has stopped: wait for jobs only.
                *spec = crossbeam::channel::never();
                rx.recv().ok().map(Work::Job)
            }
        },
    }
}

/// Segments a chunk of a series that is still arriving and keeps its labels for the job.
fn run_ahead(
    sink: &Sink,
    seg: &mut Segmenter<'_>,
    cache: &mut SliceCache,
    serving: &ModelIdentity,
    a: SpeculativeChunk,
) {
    let model = &serving.content_id;
    if cache.contains(&a.chunk.key, model) || !sink.spool.is_receiving(&a.series) {
        crate::nn::buffer::give(a.chunk.data);
        return;
    }
    let n = a.chunk.items.len();
    let placements: Vec<Placement> = a.chunk.items.iter().map(|i| i.2.clone()).collect();
    let labelled = seg
        .infer(a.chunk.data, n)
        .and_then(|logits| labels_of_batch(&logits, sink.settings.classes, &placements));
    match labelled {
        Ok(labels) => cache.insert(a.chunk.key, model, labels),
        Err(e) => log::debug!("streaming inference of a slice failed (its job will retry): {e}"),
    }
}

pub(super) fn postprocess(sink: &Sink, rx: Receiver<Inferred>, tx: Sender<Labelled>) {
    let k = sink.settings.classes;
    let mut acc: HashMap<String, HashMap<(usize, usize), SliceLabels>> = HashMap::new();
    for m in rx {
        let ctx = m.batch.ctx.clone();
        acc.retain(|_, v| !v.is_empty());
        let done = sink.guard(&ctx, "postprocess", || {
            let entry = acc.entry(ctx.job.id.clone()).or_default();
            match m.result {
                Scores::Logits(logits) => {
                    let placements: Vec<Placement> =
                        m.batch.items.iter().map(|i| i.2.clone()).collect();
                    let labels = labels_of_batch(&logits, k, &placements)?;
                    for ((s, p, _), l) in m.batch.items.iter().zip(labels) {
                        entry.insert((*s, *p), l);
                    }
                }
                Scores::Labels(labels) => {
                    if labels.len() != m.batch.items.len() {
                        return Err(StageError::Internal("cached labels do not match the batch"));
                    }
                    for ((s, p, _), l) in m.batch.items.iter().zip(labels) {
                        entry.insert((*s, *p), l);
                    }
                }
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

pub(super) fn measure(sink: &Sink, rx: Receiver<Labelled>, tx: Sender<(Arc<Ctx>, Analysis)>) {
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

pub(super) fn write(sink: &Sink, rx: Receiver<(Arc<Ctx>, Analysis)>) {
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
        let latency = (crate::daemon::fsio::unix_ms().saturating_sub(ctx.job.last_received_ms))
            as f64
            / 1000.0;
        sink.health.finished(latency);
        let ef = a
            .summary
            .as_ref()
            .and_then(|s| s.lv_ef_percent)
            .map(|v| format!("{v:.1} %"))
            .unwrap_or_else(|| "n/a".into());
        log::info!(
            "job {}: results stored in {} ({:.2} s after the last instance; LVEF {ef}, {} quality flags; \
             {} images segmented while the series arrived; busy: {})",
            ctx.job.id,
            dir.display(),
            latency,
            a.flags.len() + a.notes.len(),
            ctx.reused.load(Ordering::Relaxed),
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
