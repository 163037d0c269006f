//! Wires the daemon together: queue and spool (with crash recovery), the pipeline, the sender,
//! the series-completion poller, the health line and the DICOM listener.

use super::config::Config;
use super::health::Health;
use super::net::scp::{Scp, ScpHandle};
use super::overnight::{ModelSlot, OvernightSetup};
use super::pipeline::{Pipeline, PipelineSettings};
use super::queue::{JobQueue, JobState};
use super::spool::Spool;
use super::DaemonError;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running daemon.
pub struct Daemon {
    addr: SocketAddr,
    scp: ScpHandle,
    stop: Arc<AtomicBool>,
    pipeline: Option<Pipeline>,
    threads: Vec<JoinHandle<()>>,
    /// Counters behind the health line.
    pub health: Arc<Health>,
    /// The job queue (for status and tests).
    pub queue: Arc<JobQueue>,
    /// The spool.
    pub spool: Arc<Spool>,
}

impl Daemon {
    /// Recovers state and starts every thread; returns once the listener is bound and the model
    /// is loaded on its backend.
    /// `model_file` is where `model` was loaded from; with overnight fine-tuning on, it is
    /// registered as the first version, and a model the registry promoted since is served
    /// instead.
    pub fn start(
        cfg: &Config,
        model: crate::nn::Model,
        model_name: &str,
        model_file: &Path,
    ) -> Result<Daemon, DaemonError> {
        let root = &cfg.spool.dir;
        super::fsio::ensure_dir(root)?;
        super::fsio::ensure_dir(&cfg.output.dir)?;
        let queue = Arc::new(JobQueue::open(&root.join("jobs"))?);
        let spool = Arc::new(Spool::open(&cfg.spool, queue.clone())?);
        spool.set_accept_segmentations(cfg.finetune.enabled);
        log::info!(
            "spool {}: {} series receiving, {} jobs pending, {} to send",
            root.display(),
            spool.open_series(),
            queue.count(JobState::Pending),
            queue.count(JobState::Stored)
        );
        let health = Arc::new(Health::default());
        let device = cfg
            .pipeline
            .device
            .parse()
            .map_err(|e: crate::nn::NnError| DaemonError::Config {
                path: "pipeline.device".into(),
                reason: e.to_string(),
            })?;
        let settings = PipelineSettings {
            output_dir: cfg.output.dir.clone(),
            spool_dir: root.clone(),
            device,
            threads: cfg.pipeline.threads,
            batch: cfg.pipeline.batch,
            series_in_flight: cfg.pipeline.series_in_flight,
            channel_capacity: cfg.pipeline.channel_capacity,
            min_confidence: cfg.pipeline.min_confidence,
            streaming: cfg.pipeline.streaming,
            overlays: cfg.output.overlays,
            model_name: model_name.into(),
            model_preprocess: None,
            classes: 0,
        };
        let (model, settings) = serving_model(cfg, model, settings)?;
        let preprocess = model.preprocess.clone();
        let slot = Arc::new(ModelSlot::default());
        let pipeline = Pipeline::start(
            settings,
            model,
            slot.clone(),
            queue.clone(),
            spool.clone(),
            health.clone(),
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        if cfg.finetune.enabled {
            let preprocess = preprocess.ok_or_else(|| DaemonError::Config {
                path: model_file.to_path_buf(),
                reason: "overnight fine-tuning ([finetune] enabled) needs a model with \
                         preprocess metadata"
                    .into(),
            })?;
            let setup = OvernightSetup {
                cfg: cfg.finetune.clone(),
                spool_dir: root.clone(),
                serving_file: model_file.to_path_buf(),
                preprocess,
                device,
                queue: queue.clone(),
                slot,
                stop: stop.clone(),
            };
            // Not joined on stop: a night's training may be mid-epoch; its checkpoints resume.
            std::thread::Builder::new()
                .name("overnight".into())
                .spawn(move || setup.run())
                .map_err(DaemonError::thread("overnight"))?;
        }
        {
            let (q, d, st) = (queue.clone(), cfg.destination.clone(), stop.clone());
            let (calling, out, dead) = (
                cfg.server.ae_title.clone(),
                cfg.output.dir.clone(),
                root.join("dead-letter"),
            );
            threads.push(
                std::thread::Builder::new()
                    .name("sender".into())
                    .spawn(move || super::sender::run(q, d, calling, out, dead, st))
                    .map_err(DaemonError::thread("sender"))?,
            );
        }
        {
            let (sp, st) = (spool.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("series-poll".into())
                    .spawn(move || {
                        while !st.load(Ordering::SeqCst) {
                            if let Err(e) = sp.poll(Instant::now()) {
                                log::error!("closing series: {e}");
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    })
                    .map_err(DaemonError::thread("series-poll"))?,
            );
        }
        if cfg.logging.health_interval_s > 0 {
            let (h, sp, st, every) = (
                health.clone(),
                spool.clone(),
                stop.clone(),
                Duration::from_secs(cfg.logging.health_interval_s),
            );
            threads.push(
                std::thread::Builder::new()
                    .name("health".into())
                    .spawn(move || {
                        let mut next = Instant::now() + every;
                        while !st.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(200));
                            if Instant::now() >= next {
                                log::info!("{}", h.line(sp.received(), sp.open_series()));
                                next += every;
                            }
                        }
                    })
                    .map_err(DaemonError::thread("health"))?,
            );
        }
        let scp = Scp::bind(&cfg.server, spool.clone(), root.clone())?;
        let addr = scp.local_addr()?;
        let handle = scp.handle()?;
        threads.push(
            std::thread::Builder::new()
                .name("scp".into())
                .spawn(move || scp.serve())
                .map_err(DaemonError::thread("scp"))?,
        );
        log::info!("listening on {addr} as {}", cfg.server.ae_title);
        Ok(Daemon {
            addr,
            scp: handle,
            stop,
            pipeline: Some(pipeline),
            threads,
            health,
            queue,
            spool,
        })
    }

    /// The bound listener address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The orderly shutdown SIGTERM asks for: stop accepting associations at once, let the
    /// open ones finish, let the series in flight finish, and return within `limit` whatever
    /// happens. Nothing acknowledged is at risk when the limit cuts this short: received
    /// instances and queued jobs are on disk and resume at the next start; an instance still
    /// arriving was not acknowledged, so its sender retries. Returns whether everything
    /// finished in time.
    pub fn drain(self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        self.scp.stop();
        while self.scp.active() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let open = self.scp.active();
        if open > 0 {
            log::warn!(
                "drain: {open} association(s) still open after {} s; their unacknowledged \
                 instances will be sent again by their senders",
                limit.as_secs()
            );
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let stopper = std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                self.stop();
                let _ = tx.send(());
            });
        let left = deadline.saturating_duration_since(Instant::now());
        let stopped = stopper.is_ok() && rx.recv_timeout(left).is_ok();
        if !stopped {
            log::warn!(
                "drain: series still in processing after {} s; they stay queued and resume \
                 at the next start",
                limit.as_secs()
            );
        }
        stopped && open == 0
    }

    /// Stops listening and processing and joins the threads.
    pub fn stop(mut self) {
        self.scp.stop();
        self.stop.store(true, Ordering::SeqCst);
        self.queue.notify();
        if let Some(p) = self.pipeline.take() {
            p.stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The model to serve at start: the registry's current version when overnight fine-tuning is on
/// and has promoted one, else the configured model.
fn serving_model(
    cfg: &Config,
    model: crate::nn::Model,
    mut settings: PipelineSettings,
) -> Result<(crate::nn::Model, PipelineSettings), DaemonError> {
    if !cfg.finetune.enabled {
        return Ok((model, settings));
    }
    let dir = OvernightSetup::registry_dir(&cfg.finetune, &cfg.spool.dir);
    if !dir.join("registry.json").exists() {
        return Ok((model, settings));
    }
    let reg = crate::registry::Registry::open(&dir)?;
    let Some(id) = reg.current().map(str::to_string) else {
        return Ok((model, settings));
    };
    let promoted = reg.load(&id)?;
    if promoted.config() != model.config() || promoted.preprocess != model.preprocess {
        log::warn!("registry model {id} differs in architecture or preprocessing from the configured model; serving the configured one");
        return Ok((model, settings));
    }
    log::info!("serving registry model {id} (promoted by overnight fine-tuning)");
    settings.model_name = format!("registry:{id}");
    Ok((promoted, settings))
}
