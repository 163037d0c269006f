//! The CPU backend: NHWC, im2col / Winograd + GEMM convolutions (f32, or bf16 operands with f32
//! sums where native) on a dedicated rayon pool.

pub mod batchnorm;
pub mod bf16;
pub mod conv3x3;
pub mod head;
pub mod isa;
pub mod lanes;
pub mod numerics;
pub mod parallel;
pub mod pool;
pub mod precision;
pub mod unet;
pub mod upconv;
pub mod winograd;

use super::backend::{Backend, TrainOutput};
use super::fold::FoldedUNet;
use super::loss::{loss_and_grad, Target};
use super::{NnError, Tensor, UNetConfig, UNetParams};

/// CPU implementation of [`Backend`].
pub struct CpuBackend {
    threads: usize,
    precision: precision::Precision,
    pool: rayon::ThreadPool,
    folded: Option<(UNetConfig, FoldedUNet)>,
}

impl CpuBackend {
    /// A backend on `threads` worker threads (0 = all cores), in the process's precision
    /// ([`precision::selected`]: f32 unless the command line chose otherwise).
    pub fn new(threads: usize) -> Result<Self, NnError> {
        Self::with_precision(threads, precision::selected())
    }

    /// A backend in a given precision; bf16 needs a processor that multiplies it natively.
    pub fn with_precision(
        threads: usize,
        precision: precision::Precision,
    ) -> Result<Self, NnError> {
        if precision == precision::Precision::Bf16 && !bf16::native() {
            return Err(NnError::Device(format!(
                "bf16 is not native on this processor ({})",
                isa::CpuInfo::get().model
            )));
        }
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cineseg-cpu-{i}"))
            .build()
            .map_err(|e| NnError::Device(format!("cannot start {threads} CPU threads: {e}")))?;
        Ok(CpuBackend {
            threads,
            precision,
            pool,
            folded: None,
        })
    }

    /// The convolutions' GEMM precision.
    pub fn precision(&self) -> precision::Precision {
        self.precision
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on this backend's thread pool (for callers that use the layers directly).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!(
            "cpu ({}, {} threads, {} path)",
            self.precision,
            self.threads,
            isa::selected()
        )
    }

    fn load_inference(&mut self, params: &UNetParams) -> Result<(), NnError> {
        params.cfg.validate()?;
        self.folded = Some((
            params.cfg.clone(),
            FoldedUNet::new_in(params, self.precision),
        ));
        Ok(())
    }

    fn infer(&mut self, x: &Tensor) -> Result<Tensor, NnError> {
        let (cfg, m) = self
            .folded
            .as_ref()
            .ok_or_else(|| NnError::Config("infer called before load_inference".into()))?;
        cfg.check_input(x.h, x.w, x.c)?;
        let t = self.threads;
        Ok(self.pool.install(|| unet::forward_eval(m, x, t)))
    }

    fn train_step(
        &mut self,
        params: &mut UNetParams,
        x: &Tensor,
        target: &Target,
    ) -> Result<TrainOutput, NnError> {
        params.cfg.check_input(x.h, x.w, x.c)?;
        if x.n < 1 {
            return Err(NnError::Shape("empty batch".into()));
        }
        // Validate before the forward pass, which updates BatchNorm running statistics.
        target.check(x.n, x.h * x.w, params.cfg.classes)?;
        let (t, prec) = (self.threads, self.precision);
        self.pool.install(|| {
            let (logits, cache) = unet::forward_train(params, x, prec.into(), t);
            let l = loss_and_grad(&logits, target)?;
            let grads = unet::backward(params, &cache, &l.dlogits, prec.into(), t);
            Ok(TrainOutput {
                loss: l.loss,
                cross_entropy: l.cross_entropy,
                dice: l.dice,
                logits,
                grads,
            })
        })
    }
}
