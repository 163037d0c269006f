//! The CPU backend: f32, NHWC, im2col + GEMM convolutions on a dedicated rayon pool.

pub mod batchnorm;
pub mod conv3x3;
pub mod head;
pub mod isa;
pub mod parallel;
pub mod pool;
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
    pool: rayon::ThreadPool,
    folded: Option<(UNetConfig, FoldedUNet)>,
}

impl CpuBackend {
    /// A backend on `threads` worker threads (0 = all cores).
    pub fn new(threads: usize) -> Result<Self, NnError> {
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
            pool,
            folded: None,
        })
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
            "cpu (f32, {} threads, {} path)",
            self.threads,
            isa::selected()
        )
    }

    fn load_inference(&mut self, params: &UNetParams) -> Result<(), NnError> {
        params.cfg.validate()?;
        self.folded = Some((params.cfg.clone(), FoldedUNet::new(params)));
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
        let t = self.threads;
        self.pool.install(|| {
            let (logits, cache) = unet::forward_train(params, x, t);
            let l = loss_and_grad(&logits, target)?;
            let grads = unet::backward(params, &cache, &l.dlogits, t);
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
