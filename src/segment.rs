//! Segmentation of native-grid 2D slices with a model: the one code path from pixels to labels
//! that `segment`, `eval`, `demo` and the daemon share. Slices are prepared exactly as the
//! model's `preprocess` metadata says, run through the backend in batches, and the class scores
//! are resampled back to each slice's own grid before the argmax, so masks align with the
//! scanner's pixels.

use crate::analysis::{postprocess::postprocess, LabelVolume};
use crate::image::{prepare_image, restore_scores, ImageError, Placement, Slice2D};
use crate::nn::{Backend, Model, NnError, Preprocess, Tensor};

/// Why a segmentation could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error("image geometry: {0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Input(String),
}

/// Labels of one slice on its native grid, with the model's confidence.
#[derive(Clone, Debug)]
pub struct SliceLabels {
    pub labels: Vec<u8>,
    /// Mean winning-class probability over pixels predicted as foreground (1.0 when none):
    /// low values flag images unlike the training data.
    pub confidence: f32,
    /// Pixels predicted as foreground.
    pub foreground: usize,
}

/// A model loaded on a backend, ready to segment slices.
pub struct Segmenter<'a> {
    backend: &'a mut dyn Backend,
    classes: usize,
    preprocess: Preprocess,
    batch: usize,
}

impl<'a> Segmenter<'a> {
    /// Loads `model` for inference on `backend`. Fails when the model file does not say how
    /// its inputs were prepared (a bare PyTorch export) and none is given.
    pub fn new(
        backend: &'a mut dyn Backend,
        model: &Model,
        preprocess: Option<Preprocess>,
        batch: usize,
    ) -> Result<Self, SegmentError> {
        let preprocess = preprocess
            .or_else(|| model.preprocess.clone())
            .ok_or_else(|| {
                SegmentError::Input(
                    "the model file has no \"preprocess\" metadata; it was not trained by cineseg"
                        .into(),
                )
            })?;
        model
            .config()
            .check_input(preprocess.size, preprocess.size, 1)?;
        backend.load_inference(&model.params)?;
        Ok(Segmenter {
            backend,
            classes: model.config().classes,
            preprocess,
            batch: batch.max(1),
        })
    }

    /// Loads another model of the same classes and input preparation in place of this one (the
    /// daemon swaps in a model promoted overnight between two series).
    pub fn reload(&mut self, model: &Model) -> Result<(), SegmentError> {
        if model.config().classes != self.classes {
            return Err(SegmentError::Input(format!(
                "the new model has {} classes, the serving one {}",
                model.config().classes,
                self.classes
            )));
        }
        if model
            .preprocess
            .as_ref()
            .is_some_and(|p| *p != self.preprocess)
        {
            return Err(SegmentError::Input(
                "the new model prepares its inputs differently from the serving one".into(),
            ));
        }
        model
            .config()
            .check_input(self.preprocess.size, self.preprocess.size, 1)?;
        self.backend.load_inference(&model.params)?;
        Ok(())
    }

    /// The input preparation in use.
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// Model classes (logits per pixel).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Images per inference batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Runs the network on `n` prepared images laid end to end (`n * size * size` values);
    /// returns their logits, classes fastest. The daemon's inference stage and
    /// [`Segmenter::segment`] both go through here.
    pub fn infer(&mut self, prepared: Vec<f32>, n: usize) -> Result<Vec<f32>, SegmentError> {
        let size = self.preprocess.size;
        let x = Tensor::from_nhwc(n, size, size, 1, prepared)?;
        let mut y = self.backend.infer(&x)?;
        Ok(std::mem::take(&mut y.data))
    }

    /// Segments every slice; `progress(done, total)` is called after each batch. The three
    /// steps are the pipeline's stages: [`prepare_slice`], [`Segmenter::infer`],
    /// [`labels_from_logits`].
    pub fn segment(
        &mut self,
        slices: &[Slice2D],
        progress: &dyn Fn(usize, usize),
    ) -> Result<Vec<SliceLabels>, SegmentError> {
        let k = self.classes;
        let mut out = Vec::with_capacity(slices.len());
        for chunk in slices.chunks(self.batch) {
            let (data, placements) = prepare_batch(chunk, &self.preprocess)?;
            let logits = self.infer(data, chunk.len())?;
            out.extend(labels_of_batch(&logits, k, &placements)?);
            progress(out.len(), slices.len());
        }
        Ok(out)
    }
}

/// Prepares one native slice for the network (resample, crop, normalise) and remembers where
/// it came from, so its scores can go back to the native grid.
pub fn prepare_slice(s: &Slice2D, p: &Preprocess) -> Result<(Vec<f32>, Placement), SegmentError> {
    Ok(prepare_image(s, p)?)
}

/// Prepares `slices` for one inference batch: the images end to end in a pooled buffer (the
/// backend hands the batch tensor back to the buffer pool, so a buffer from anywhere else would
/// join it for good: measured +25 MiB a series), and where each came from.
pub fn prepare_batch<'s>(
    slices: impl IntoIterator<Item = &'s Slice2D>,
    p: &Preprocess,
) -> Result<(Vec<f32>, Vec<Placement>), SegmentError> {
    let slices: Vec<&Slice2D> = slices.into_iter().collect();
    let mut data = crate::nn::buffer::take_any(slices.len() * p.size * p.size);
    data.clear();
    let mut placements = Vec::with_capacity(slices.len());
    for s in slices {
        let (img, pl) = prepare_slice(s, p)?;
        data.extend_from_slice(&img);
        placements.push(pl);
    }
    Ok((data, placements))
}

/// Native-grid labels of every image of a batch from the batch's logits (`k` classes
/// fastest, images end to end), one per placement.
pub fn labels_of_batch(
    logits: &[f32],
    k: usize,
    placements: &[Placement],
) -> Result<Vec<SliceLabels>, SegmentError> {
    let per = logits.len() / placements.len().max(1);
    placements
        .iter()
        .enumerate()
        .map(|(i, pl)| {
            let one = logits.get(i * per..(i + 1) * per).ok_or_else(|| {
                SegmentError::Input("backend returned fewer logits than images".into())
            })?;
            labels_from_logits(one, k, pl)
        })
        .collect()
}

/// Native-grid labels and confidence of one image from its logits on the model grid (`k`
/// classes fastest): softmax, resample back, argmax.
pub fn labels_from_logits(
    logits: &[f32],
    k: usize,
    pl: &Placement,
) -> Result<SliceLabels, SegmentError> {
    let probs = softmax(logits, k);
    let native = restore_scores(&probs, k, pl)?;
    let mut labels = Vec::with_capacity(native.len() / k.max(1));
    let (mut conf, mut fg) = (0.0f64, 0usize);
    for px in native.chunks_exact(k) {
        let (best, p) = px
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |b, (c, v)| {
                if *v > b.1 {
                    (c, *v)
                } else {
                    b
                }
            });
        if best != 0 {
            conf += p as f64;
            fg += 1;
        }
        labels.push(best as u8);
    }
    Ok(SliceLabels {
        labels,
        confidence: if fg == 0 {
            1.0
        } else {
            (conf / fg as f64) as f32
        },
        foreground: fg,
    })
}

/// Class probabilities per pixel (classes fastest), from logits in the same layout.
fn softmax(logits: &[f32], k: usize) -> Vec<f32> {
    let mut p = logits.to_vec();
    for px in p.chunks_exact_mut(k) {
        let m = px.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b));
        let mut s = 0.0;
        for v in px.iter_mut() {
            *v = (*v - m).exp();
            s += *v;
        }
        for v in px.iter_mut() {
            *v /= s;
        }
    }
    p
}

/// Assembles per-slice labels of one phase into a volume and cleans it up (largest connected
/// component per class, holes filled).
pub fn phase_volume(
    slices: &[SliceLabels],
    width: usize,
    height: usize,
    spacing: [f32; 3],
) -> Result<LabelVolume, SegmentError> {
    let mut labels = Vec::with_capacity(width * height * slices.len());
    for s in slices {
        if s.labels.len() != width * height {
            return Err(SegmentError::Input(format!(
                "slice of {} pixels in a {width}x{height} stack",
                s.labels.len()
            )));
        }
        labels.extend_from_slice(&s.labels);
    }
    let mut vol = LabelVolume::from_labels(width, height, slices.len(), spacing, labels)
        .map_err(|e| SegmentError::Input(e.to_string()))?;
    postprocess(&mut vol).map_err(|e| SegmentError::Input(e.to_string()))?;
    Ok(vol)
}
