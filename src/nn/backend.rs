//! The `Backend` trait: what the rest of cineseg asks of a compute device. One implementation
//! per device (CPU here, CUDA in `nn::cuda`), tested against each other and the goldens.

use super::loss::Target;
use super::{NnError, Tensor, UNetParams};

/// Result of one training forward/backward pass.
#[derive(Clone, Debug)]
pub struct TrainOutput {
    pub loss: f64,
    pub cross_entropy: f64,
    /// Soft Dice per class on this batch (NaN where the class took no part).
    pub dice: Vec<f64>,
    /// Logits of the training-mode forward (NHWC).
    pub logits: Tensor,
    /// Gradients of every trainable tensor (running-statistic entries are zero).
    pub grads: UNetParams,
}

/// A device that runs the U-Net. Explicit passes, no autograd: the graph is fixed.
pub trait Backend {
    /// Human-readable description for logs ("cpu, 2 threads").
    fn describe(&self) -> String;

    /// Prepares `params` for inference (BatchNorm folded, weights packed or uploaded). Must be
    /// called again after the parameters change.
    fn load_inference(&mut self, params: &UNetParams) -> Result<(), NnError>;

    /// Logits (NHWC, one channel per class) for a batch of NHWC images, using the weights given
    /// to the last [`load_inference`](Self::load_inference).
    fn infer(&mut self, x: &Tensor) -> Result<Tensor, NnError>;

    /// Training-mode forward (batch statistics; running statistics in `params` are updated),
    /// loss, and backward.
    fn train_step(
        &mut self,
        params: &mut UNetParams,
        x: &Tensor,
        target: &Target,
    ) -> Result<TrainOutput, NnError>;
}
