//! Streaming inference: segmenting a slice while the rest of its series is still arriving.
//!
//! A scanner sends a cine slice by slice, so most of a series' inference can be done before its
//! last image arrives. The spool announces a slice as soon as all its phases are in
//! ([`ReadySlice`]); [`speculate`] decodes just those files and prepares them into the same
//! per-slice chunks the job will make ([`slice_chunks`], [`prepare_chunk`]), and the inference
//! stage runs them whenever it has no job batch waiting. The labels go into a [`SliceCache`]
//! under a digest of exactly what went into the network: the prepared pixels, where they sit on
//! the native grid, and the model's content id.
//!
//! When the series closes, its job is decoded and prepared as before; a chunk whose digest is in
//! the cache takes its labels from there instead of from the network. The result is the same
//! bit for bit because the inputs are (the CPU backend is deterministic for a given input and
//! thread count), and anything that differs (a correction of the whole stack, another model, a
//! re-sent image) is another digest and is segmented anew. The cache is only a shortcut: losing
//! it (a restart, eviction, a slice announced too late) costs time, never a result.

use super::Sink;
use crate::daemon::spool::ReadySlice;
use crate::daemon::StageError;
use crate::dicom::{AssembleOptions, CineStack};
use crate::image::{Placement, Slice2D};
use crate::nn::Preprocess;
use crate::segment::{prepare_batch, SliceLabels};
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Digest of one chunk's network input (see the module comment).
pub(super) type ChunkKey = [u8; 32];

/// A chunk of prepared images of one slice: the unit of inference and of caching.
pub(super) struct PreparedChunk {
    /// (slice, phase, placement) of each image, in the order of `data`.
    pub items: Vec<(usize, usize, Placement)>,
    /// The prepared images end to end.
    pub data: Vec<f32>,
    /// Digest of `data` and the placements (the model is added at lookup).
    pub key: ChunkKey,
}

/// The frames of `stack` in inference chunks: each slice's phases in order, cut into runs of
/// at most `batch`. A chunk never spans two slices, so the job and streaming inference, which
/// sees one slice at a time, make the same chunks.
pub(super) fn slice_chunks(stack: &CineStack, batch: usize) -> Vec<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    for s in 0..stack.n_slices() {
        let present: Vec<(usize, usize)> = (0..stack.n_phases())
            .filter(|p| stack.frame(s, *p).is_some())
            .map(|p| (s, p))
            .collect();
        out.extend(present.chunks(batch.max(1)).map(<[_]>::to_vec));
    }
    out
}

/// Prepares the frames `chunk` of `stack` for the network and computes the chunk's digest.
pub(super) fn prepare_chunk(
    stack: &CineStack,
    chunk: &[(usize, usize)],
    pre: &Preprocess,
) -> Result<PreparedChunk, StageError> {
    let ps = stack.grid.pixel_spacing;
    let slices = chunk
        .iter()
        .map(|&(s, p)| {
            let f = stack
                .frame(s, p)
                .ok_or(StageError::Internal("a listed frame is missing"))?;
            Ok(Slice2D {
                width: stack.grid.cols,
                height: stack.grid.rows,
                spacing: [ps[1] as f32, ps[0] as f32],
                data: f.pixels.clone(),
            })
        })
        .collect::<Result<Vec<_>, StageError>>()?;
    let (data, placements) = prepare_batch(&slices, pre)?;
    let items: Vec<(usize, usize, Placement)> = chunk
        .iter()
        .zip(placements)
        .map(|(&(s, p), pl)| (s, p, pl))
        .collect();
    let mut h = Sha256::new();
    for (_, _, pl) in &items {
        for v in [pl.native_width, pl.native_height, pl.size] {
            h.update((v as u64).to_le_bytes());
        }
        for v in [pl.native_spacing[0], pl.native_spacing[1], pl.spacing_mm] {
            h.update(v.to_bits().to_le_bytes());
        }
    }
    for v in &data {
        h.update(v.to_bits().to_le_bytes());
    }
    Ok(PreparedChunk {
        items,
        data,
        key: h.finalize().into(),
    })
}

/// A chunk made from an announced slice, for the inference stage to run when it is idle.
pub(super) struct SpeculativeChunk {
    /// SeriesInstanceUID (a chunk whose series has closed meanwhile is left to its job).
    pub series: String,
    pub chunk: PreparedChunk,
}

/// Labels segmented ahead of their job, by chunk digest, for the serving model. Owned by the
/// inference stage alone (no lock); a different model empties it.
pub(super) struct SliceCache {
    /// Content id of the model the labels are from.
    model: String,
    entries: HashMap<ChunkKey, Vec<SliceLabels>>,
    /// Insertion order, for evicting the oldest first.
    order: VecDeque<ChunkKey>,
    bytes: usize,
    limit_bytes: usize,
}

impl SliceCache {
    /// A cache holding at most `limit_bytes` of labels.
    pub fn new(limit_bytes: usize) -> SliceCache {
        SliceCache {
            model: String::new(),
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            limit_bytes,
        }
    }

    /// Whether labels of `key` by the model `model` are held.
    pub fn contains(&self, key: &ChunkKey, model: &str) -> bool {
        self.model == model && self.entries.contains_key(key)
    }

    /// The labels of `key` by `model`, if held (identical inputs, e.g. two slices with the
    /// same pixels, share them).
    pub fn get(&self, key: &ChunkKey, model: &str) -> Option<Vec<SliceLabels>> {
        (self.model == model)
            .then(|| self.entries.get(key).cloned())
            .flatten()
    }

    /// Keeps `labels` of `key` by `model`, evicting the oldest entries beyond the limit.
    pub fn insert(&mut self, key: ChunkKey, model: &str, labels: Vec<SliceLabels>) {
        if self.model != model {
            self.entries.clear();
            self.order.clear();
            self.bytes = 0;
            self.model = model.to_string();
        }
        self.bytes += labels_bytes(&labels);
        if let Some(old) = self.entries.insert(key, labels) {
            self.bytes = self.bytes.saturating_sub(labels_bytes(&old));
        } else {
            self.order.push_back(key);
        }
        while self.bytes > self.limit_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.bytes = self.bytes.saturating_sub(labels_bytes(&gone));
            }
        }
    }
}

fn labels_bytes(labels: &[SliceLabels]) -> usize {
    labels.iter().map(|l| l.labels.len() + 16).sum()
}

/// The streaming stage: decodes and prepares every announced slice into chunks for the
/// inference stage. Runs until `stop`; a slice that cannot be decoded alone is left to its job.
pub(super) fn speculate(
    sink: &Sink,
    stop: &AtomicBool,
    rx: Receiver<ReadySlice>,
    tx: Sender<SpeculativeChunk>,
) {
    let Some(pre) = sink.settings.model_preprocess.clone() else {
        return;
    };
    while !stop.load(Ordering::SeqCst) {
        let ready = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if !sink.spool.is_receiving(&ready.series) {
            continue;
        }
        let chunks = match chunks_of_slice(&ready, &pre, sink.settings.batch) {
            Ok(c) => c,
            Err(e) => {
                log::debug!("streaming inference skipped a slice (its job will segment it): {e}");
                continue;
            }
        };
        for chunk in chunks {
            let msg = SpeculativeChunk {
                series: ready.series.clone(),
                chunk,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    }
}

/// Decodes the files of one announced slice and prepares its chunks.
fn chunks_of_slice(
    ready: &ReadySlice,
    pre: &Preprocess,
    batch: usize,
) -> Result<Vec<PreparedChunk>, StageError> {
    let base = ready
        .files
        .first()
        .and_then(|f| f.parent())
        .ok_or(StageError::Internal("an announced slice without files"))?;
    let scan = crate::dicom::stack::load_files(&ready.files, base, &AssembleOptions::default())?;
    let [stack] = scan.stacks.as_slice() else {
        return Err(StageError::Internal(
            "the slice's images make more than one stack",
        ));
    };
    if stack.n_slices() != 1 {
        return Err(StageError::Internal(
            "the slice's images lie at several positions",
        ));
    }
    slice_chunks(stack, batch)
        .iter()
        .map(|c| prepare_chunk(stack, c, pre))
        .collect()
}
