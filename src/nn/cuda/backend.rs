//! [`CudaBackend`]: the U-Net on the GPU (see `infer` and `train`).
//!
//! Nothing in this file has run on a GPU yet (the sessions that wrote it had none): the kernels
//! are checked on the CPU through the simulator (tests/kernel_sim.rs), the training composition
//! too (tests/train_sim.rs), and tests/cuda_backend.rs compares this backend with the CPU one
//! when a device is present (kernels/README.md lists what has and has not run).

use super::context::{self, Gpu};
use super::infer::{enqueue_forward, Arena, InferWeights};
use super::launch::Launcher;
use super::modules::Kernels;
use super::train::{AdamWConfig, GpuTrainer, StepReport};
use crate::nn::backend::{Backend, TrainOutput};
use crate::nn::loss::Target;
use crate::nn::{NnError, Tensor, UNetParams};
use cudarc::driver::sys;

/// The GPU implementation of [`Backend`].
pub struct CudaBackend {
    gpu: Gpu,
    pub(super) l: Launcher,
    weights: Option<InferWeights>,
    arena: Arena,
    /// Record inference into CUDA graphs (`CINESEG_CUDA_GRAPHS=0` turns it off for debugging).
    graphs: bool,
    /// Training state (created on the first training call, per model configuration).
    trainer: Option<GpuTrainer>,
}

fn dev(what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> NnError {
    move |e| NnError::Device(format!("{what}: {e}"))
}

/// The trainer for `cfg` in `slot`, (re)created when the configuration changes.
fn trainer_for<'a>(
    slot: &'a mut Option<GpuTrainer>,
    l: &Launcher,
    cfg: &crate::nn::UNetConfig,
) -> Result<&'a mut GpuTrainer, NnError> {
    if slot.as_ref().is_none_or(|t| t.params.cfg != *cfg) {
        *slot = None; // free the old buffers first
        *slot = Some(GpuTrainer::new(l, cfg)?);
    }
    slot.as_mut()
        .ok_or_else(|| NnError::Device("trainer missing".into()))
}

impl CudaBackend {
    /// Opens device `ordinal` and loads the kernels, or says why the GPU cannot be used.
    pub fn open(ordinal: usize) -> Result<Self, String> {
        let gpu = context::open(ordinal)?;
        // One stream, ordered by itself: cudarc's per-buffer event tracking would only add
        // overhead (and events inside graph capture).
        // SAFETY: every launch and copy of this backend goes to `gpu.stream`.
        unsafe { gpu.ctx.disable_event_tracking() };
        let kernels = Kernels::load(&gpu)?;
        let sms = gpu
            .ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .unwrap_or(1)
            .max(1) as usize;
        let l = Launcher {
            stream: gpu.stream.clone(),
            kernels,
            sms,
        };
        let graphs = std::env::var("CINESEG_CUDA_GRAPHS")
            .map(|v| v != "0")
            .unwrap_or(true);
        Ok(CudaBackend {
            gpu,
            l,
            weights: None,
            arena: Arena::default(),
            graphs,
            trainer: None,
        })
    }

    /// Waits for all queued work (for timing).
    pub fn synchronize(&self) -> Result<(), NnError> {
        self.l
            .stream
            .synchronize()
            .map_err(dev("synchronising the GPU"))
    }

    /// Forward on the device without copying the input or the logits (for benchmarks): the
    /// buffers of this shape are used as they are.
    pub fn infer_resident(&mut self, n: usize, h: usize, w: usize) -> Result<(), NnError> {
        self.run_forward(n, h, w)
    }

    /// Starts training with the weights and AdamW moments on the GPU (see `train` module doc):
    /// afterwards only batches go up and losses come down.
    pub fn adamw_begin(&mut self, params: &UNetParams, cfg: AdamWConfig) -> Result<(), NnError> {
        trainer_for(&mut self.trainer, &self.l, &params.cfg)?.adamw_begin(&self.l, params, cfg)
    }

    /// One training step with AdamW on the GPU at learning rate `lr`.
    pub fn adamw_step(
        &mut self,
        x: &Tensor,
        target: &Target,
        lr: f64,
        trainable: &dyn Fn(&str) -> bool,
    ) -> Result<StepReport, NnError> {
        let t = self
            .trainer
            .as_mut()
            .ok_or_else(|| NnError::Config("adamw_step before adamw_begin".into()))?;
        t.adamw_step(&self.l, x, target, lr, trainable)
    }

    /// The weights and running statistics of GPU-resident training.
    pub fn adamw_params(&self) -> Result<UNetParams, NnError> {
        let t = self
            .trainer
            .as_ref()
            .ok_or_else(|| NnError::Config("adamw_params before adamw_begin".into()))?;
        t.adamw_params(&self.l)
    }

    /// The current dynamic loss scale (for logs and tests).
    pub fn loss_scale(&self) -> Option<f32> {
        self.trainer.as_ref().map(|t| t.scale.scale)
    }

    fn run_forward(&mut self, n: usize, h: usize, w: usize) -> Result<(), NnError> {
        let wts = self
            .weights
            .as_ref()
            .ok_or_else(|| NnError::Config("infer called before load_inference".into()))?;
        let bufs = self.arena.get(&self.l, &wts.cfg, n, h, w)?;
        if let Some(g) = &bufs.graph {
            return g.0.launch().map_err(dev("replaying the inference graph"));
        }
        if self.graphs {
            let s = &self.l.stream;
            s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(dev("starting graph capture"))?;
            let queued = enqueue_forward(&self.l, wts, bufs);
            let graph = s.end_capture(sys::CUgraphInstantiate_flags(0));
            queued?;
            match graph {
                Ok(Some(g)) => {
                    g.launch().map_err(dev("launching the inference graph"))?;
                    bufs.graph = Some(super::infer::SendGraph(g));
                    return Ok(());
                }
                Ok(None) | Err(_) => {
                    log::warn!("CUDA graph capture failed; running inference without graphs");
                    self.graphs = false;
                }
            }
        }
        enqueue_forward(&self.l, wts, bufs)
    }
}

impl Backend for CudaBackend {
    fn describe(&self) -> String {
        let how: Vec<String> = self
            .l
            .kernels
            .how
            .iter()
            .map(|(f, h)| format!("{f}:{h}"))
            .collect();
        format!(
            "cuda ({}, sm_{}{}, fp16, kernels {})",
            self.gpu.name,
            self.gpu.cc.0,
            self.gpu.cc.1,
            how.join(" ")
        )
    }

    fn load_inference(&mut self, params: &UNetParams) -> Result<(), NnError> {
        params.cfg.validate()?;
        self.weights = Some(InferWeights::new(&self.l, params)?);
        self.arena = Arena::default(); // recorded graphs point at the old weights
        Ok(())
    }

    fn infer(&mut self, x: &Tensor) -> Result<Tensor, NnError> {
        let cfg = self
            .weights
            .as_ref()
            .ok_or_else(|| NnError::Config("infer called before load_inference".into()))?
            .cfg
            .clone();
        cfg.check_input(x.h, x.w, x.c)?;
        let (n, h, w) = (x.n, x.h, x.w);
        self.arena
            .get(&self.l, &cfg, n, h, w)?
            .upload_input(&self.l, &x.data)?;
        self.run_forward(n, h, w)?;
        self.arena
            .get(&self.l, &cfg, n, h, w)?
            .download_logits(&self.l, cfg.classes)
    }

    fn train_step(
        &mut self,
        params: &mut UNetParams,
        x: &Tensor,
        target: &Target,
    ) -> Result<TrainOutput, NnError> {
        trainer_for(&mut self.trainer, &self.l, &params.cfg)?.step(&self.l, params, x, target)
    }
}
