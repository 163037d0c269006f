//! What training reads: labelled 2D frames of one fixed size, from the memory-mapped frame
//! store or from memory (tests, fine-tuning subsets), and batch assembly with augmentation.

use super::augment::{augment, AugmentConfig};
use crate::nn::loss::Target;
use crate::nn::rng::Rng;
use crate::nn::Tensor;
use rayon::prelude::*;

/// A set of preprocessed, labelled frames (`size x size`).
pub trait FrameSource: Sync {
    /// Number of frames.
    fn len(&self) -> usize;
    /// True when there are no frames.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Side of every frame.
    fn size(&self) -> usize;
    /// Normalised image of frame `i`.
    fn image(&self, i: usize) -> &[f32];
    /// Class index per pixel of frame `i`.
    fn mask(&self, i: usize) -> &[u8];
    /// Which classes were drawn on frame `i` (`classes` entries, background first).
    fn labelled(&self, i: usize) -> Vec<bool>;
    /// Patient the frame belongs to (splits are by patient).
    fn patient(&self, i: usize) -> &str;
}

/// Frames held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryFrames {
    pub size: usize,
    pub images: Vec<Vec<f32>>,
    pub masks: Vec<Vec<u8>>,
    pub labelled: Vec<Vec<bool>>,
    pub patients: Vec<String>,
}

impl FrameSource for MemoryFrames {
    fn len(&self) -> usize {
        self.images.len()
    }
    fn size(&self) -> usize {
        self.size
    }
    fn image(&self, i: usize) -> &[f32] {
        &self.images[i]
    }
    fn mask(&self, i: usize) -> &[u8] {
        &self.masks[i]
    }
    fn labelled(&self, i: usize) -> Vec<bool> {
        self.labelled[i].clone()
    }
    fn patient(&self, i: usize) -> &str {
        &self.patients[i]
    }
}

/// Seed of one sample's augmentation: a function of the run seed, the step and the position,
/// so results do not depend on thread scheduling or on where a run was resumed.
pub fn sample_seed(seed: u64, step: u64, slot: usize) -> u64 {
    seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (slot as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// Builds an augmented batch (NHWC input and targets) from frame indices.
pub fn make_batch(
    src: &dyn FrameSource,
    idx: &[usize],
    aug: &AugmentConfig,
    seed: u64,
    step: u64,
) -> (Tensor, Target) {
    let size = src.size();
    let px = size * size;
    let mut img = vec![0.0f32; idx.len() * px];
    let mut lab = vec![0u8; idx.len() * px];
    img.par_chunks_mut(px)
        .zip(lab.par_chunks_mut(px))
        .enumerate()
        .for_each(|(slot, (oi, om))| {
            let mut rng = Rng::new(sample_seed(seed, step, slot));
            augment(
                src.image(idx[slot]),
                src.mask(idx[slot]),
                size,
                aug,
                &mut rng,
                oi,
                om,
            );
        });
    let labelled = idx.iter().map(|i| src.labelled(*i)).collect();
    (
        Tensor {
            n: idx.len(),
            h: size,
            w: size,
            c: 1,
            data: img,
        },
        Target {
            labels: lab,
            labelled,
        },
    )
}

/// Copies frames without augmentation (validation, inference on stored frames).
pub fn plain_batch(src: &dyn FrameSource, idx: &[usize]) -> Tensor {
    let size = src.size();
    let mut data = Vec::with_capacity(idx.len() * size * size);
    for i in idx {
        data.extend_from_slice(src.image(*i));
    }
    Tensor {
        n: idx.len(),
        h: size,
        w: size,
        c: 1,
        data,
    }
}

impl FrameSource for crate::store::FrameStore {
    fn len(&self) -> usize {
        crate::store::FrameStore::len(self)
    }
    fn size(&self) -> usize {
        self.preprocess().size
    }
    fn image(&self, i: usize) -> &[f32] {
        crate::store::FrameStore::image(self, i)
    }
    fn mask(&self, i: usize) -> &[u8] {
        crate::store::FrameStore::mask(self, i)
    }
    fn labelled(&self, i: usize) -> Vec<bool> {
        self.meta(i).labelled.clone()
    }
    fn patient(&self, i: usize) -> &str {
        &self.meta(i).patient_id
    }
}
