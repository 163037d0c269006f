//! The frame store: every training frame already on the model grid, in two flat files that
//! training maps into memory and reads without copying or decoding.
//!
//! ```text
//! dir/images.f32   N x size x size little-endian f32 (prepared images, row-major)
//! dir/masks.u8     N x size x size class indices (cineseg order)
//! dir/index.json   format, version, preprocess, classes, size, byte lengths, per-frame metadata
//! ```
//!
//! The writer fills temporary files, fsyncs them, removes any old `index.json`, renames the
//! data files and renames the new index last. A crash therefore leaves either the old complete
//! store, or a folder without `index.json` that [`FrameStore::open`] reports as incomplete,
//! never an index describing data it does not match. One writer per folder at a time.

use super::StoreError;
use crate::image::Phase;
use crate::nn::Preprocess;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const IMAGES: &str = "images.f32";
const MASKS: &str = "masks.u8";
const INDEX: &str = "index.json";
const FORMAT: &str = "cineseg-frames";
const VERSION: u32 = 1;

/// What is known about one stored frame: enough to sample by patient and phase, to split by
/// patient, to apply partial-label losses, and to trace a frame back to its source file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameMeta {
    /// Patient identifier, the key of the fixed validation split.
    pub patient_id: String,
    /// Diagnostic group or other stratum (e.g. ACDC's NOR/MINF/DCM/HCM/RV); may be empty.
    pub group: String,
    /// Slice index within its volume (0 = first slice in the file).
    pub slice: usize,
    /// 0-based phase index within the cine (ACDC frame number - 1).
    pub phase_index: usize,
    /// ED, ES or another phase.
    pub phase: Phase,
    /// Per class (cineseg order): whether it was drawn. Undrawn classes are merged into
    /// background by the loss rather than trained as absent.
    pub labelled: Vec<bool>,
    /// The file the image came from.
    pub source: String,
    /// Native pixel size (x, y) in mm before resampling.
    pub native_spacing: [f32; 2],
}

/// `index.json`: the store's self-description.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoreIndex {
    format: String,
    version: u32,
    preprocess: Preprocess,
    classes: usize,
    images_bytes: u64,
    masks_bytes: u64,
    frames: Vec<FrameMeta>,
}

/// An opened, read-only frame store backed by memory maps.
#[derive(Debug)]
pub struct FrameStore {
    dir: PathBuf,
    index: StoreIndex,
    /// `None` for an empty store (zero-length files cannot be mapped).
    images: Option<Mmap>,
    masks: Option<Mmap>,
}

impl FrameStore {
    /// Starts writing a new store in `dir` (created if missing) for frames prepared with `p`
    /// and masks with `classes` classes. Nothing under the final names changes until
    /// [`FrameStoreWriter::finish`].
    pub fn create(
        dir: &Path,
        p: &Preprocess,
        classes: usize,
    ) -> Result<FrameStoreWriter, StoreError> {
        if p.size == 0 || classes == 0 || classes > 256 {
            return Err(StoreError::Frame {
                path: dir.into(),
                reason: format!(
                    "size {} and {classes} classes (need size >= 1, 1..=256 classes)",
                    p.size
                ),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::fs(dir, e))?;
        let open = |name: &str| -> Result<BufWriter<File>, StoreError> {
            let path = dir.join(tmp_name(name));
            File::create(&path)
                .map(|f| BufWriter::with_capacity(1 << 20, f))
                .map_err(|e| StoreError::fs(path, e))
        };
        Ok(FrameStoreWriter {
            dir: dir.to_path_buf(),
            images: Some(open(IMAGES)?),
            masks: Some(open(MASKS)?),
            index: StoreIndex {
                format: FORMAT.into(),
                version: VERSION,
                preprocess: p.clone(),
                classes,
                images_bytes: 0,
                masks_bytes: 0,
                frames: Vec::new(),
            },
            scratch: Vec::new(),
            finished: false,
        })
    }

    /// Opens the store in `dir`, checking that its files are complete and agree with the index.
    pub fn open(dir: &Path) -> Result<FrameStore, StoreError> {
        if cfg!(target_endian = "big") {
            return Err(StoreError::corrupt(
                dir,
                "frame stores are little-endian; this host is big-endian",
            ));
        }
        let index_path = dir.join(INDEX);
        let text = match std::fs::read_to_string(&index_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::corrupt(
                    &index_path,
                    "missing: not a frame store, or an import was interrupted",
                ));
            }
            r => r.map_err(|e| StoreError::fs(&index_path, e))?,
        };
        let index: StoreIndex = serde_json::from_str(&text)
            .map_err(|e| StoreError::corrupt(&index_path, format!("unreadable index: {e}")))?;
        check_index(&index_path, &index)?;
        let px = (index.preprocess.size * index.preprocess.size) as u64;
        let n = index.frames.len() as u64;
        let images = map_file(&dir.join(IMAGES), n * px * 4, index.images_bytes)?;
        let masks = map_file(&dir.join(MASKS), n * px, index.masks_bytes)?;
        if let Some(m) = &images {
            bytemuck::try_cast_slice::<u8, f32>(m)
                .map_err(|e| StoreError::corrupt(dir.join(IMAGES), format!("{e:?}")))?;
        }
        if let Some(m) = &masks {
            if let Some(pos) = m.iter().position(|&c| c as usize >= index.classes) {
                let reason = format!(
                    "mask value {} at byte {pos} is not one of {} classes",
                    m[pos], index.classes
                );
                return Err(StoreError::corrupt(dir.join(MASKS), reason));
            }
        }
        Ok(FrameStore {
            dir: dir.to_path_buf(),
            index,
            images,
            masks,
        })
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.index.frames.len()
    }

    /// Whether the store holds no frame.
    pub fn is_empty(&self) -> bool {
        self.index.frames.is_empty()
    }

    /// Pixels per frame (`size * size`).
    pub fn frame_len(&self) -> usize {
        self.index.preprocess.size * self.index.preprocess.size
    }

    /// The prepared image of frame `i` (`size * size`, row-major), straight from the map.
    /// Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let all: &[f32] = self.images.as_deref().map_or(&[], bytemuck::cast_slice);
        let n = self.frame_len();
        &all[i * n..(i + 1) * n]
    }

    /// The mask of frame `i` (`size * size` class indices). Panics if `i >= len()`.
    pub fn mask(&self, i: usize) -> &[u8] {
        let all: &[u8] = self.masks.as_deref().unwrap_or(&[]);
        let n = self.frame_len();
        &all[i * n..(i + 1) * n]
    }

    /// Metadata of frame `i`. Panics if `i >= len()`.
    pub fn meta(&self, i: usize) -> &FrameMeta {
        &self.index.frames[i]
    }

    /// Metadata of all frames, in store order (for sampling and splitting).
    pub fn frames(&self) -> &[FrameMeta] {
        &self.index.frames
    }

    /// The preparation every frame went through; a model trained on the store records it.
    pub fn preprocess(&self) -> &Preprocess {
        &self.index.preprocess
    }

    /// Number of classes masks are drawn from.
    pub fn classes(&self) -> usize {
        self.index.classes
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Fills a new store frame by frame; see [`FrameStore::create`]. Dropping it without
/// [`finish`](FrameStoreWriter::finish) removes the temporary files and leaves any old store
/// untouched.
#[derive(Debug)]
pub struct FrameStoreWriter {
    dir: PathBuf,
    images: Option<BufWriter<File>>,
    masks: Option<BufWriter<File>>,
    index: StoreIndex,
    scratch: Vec<u8>,
    finished: bool,
}

impl FrameStoreWriter {
    /// Appends one prepared frame: `image` and `mask` are `size * size` on the model grid.
    pub fn push(&mut self, image: &[f32], mask: &[u8], meta: FrameMeta) -> Result<(), StoreError> {
        let n = self.index.preprocess.size * self.index.preprocess.size;
        let bad = |reason: String| StoreError::Frame {
            path: self.dir.clone(),
            reason,
        };
        if image.len() != n || mask.len() != n {
            return Err(bad(format!(
                "image {} and mask {} values, the store needs {n} each",
                image.len(),
                mask.len()
            )));
        }
        if meta.labelled.len() != self.index.classes {
            return Err(bad(format!(
                "labelled has {} entries for {} classes",
                meta.labelled.len(),
                self.index.classes
            )));
        }
        if let Some(&c) = mask.iter().find(|&&c| c as usize >= self.index.classes) {
            return Err(bad(format!(
                "mask value {c} with {} classes",
                self.index.classes
            )));
        }
        if image.iter().any(|v| !v.is_finite()) {
            return Err(bad("image holds a non-finite value".into()));
        }
        self.scratch.clear();
        self.scratch
            .extend(image.iter().flat_map(|v| v.to_le_bytes()));
        let (Some(images), Some(masks)) = (self.images.as_mut(), self.masks.as_mut()) else {
            return Err(bad("writer already finished".into()));
        };
        images
            .write_all(&self.scratch)
            .map_err(|e| StoreError::fs(self.dir.join(tmp_name(IMAGES)), e))?;
        masks
            .write_all(mask)
            .map_err(|e| StoreError::fs(self.dir.join(tmp_name(MASKS)), e))?;
        self.index.images_bytes += self.scratch.len() as u64;
        self.index.masks_bytes += mask.len() as u64;
        self.index.frames.push(meta);
        Ok(())
    }

    /// Frames pushed so far.
    pub fn len(&self) -> usize {
        self.index.frames.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.index.frames.is_empty()
    }

    /// Makes the store durable and visible under its final names; returns the frame count.
    pub fn finish(mut self) -> Result<usize, StoreError> {
        let dir = self.dir.clone();
        for (name, w) in [(IMAGES, self.images.take()), (MASKS, self.masks.take())] {
            let path = dir.join(tmp_name(name));
            let file = w
                .ok_or_else(|| StoreError::Frame {
                    path: dir.clone(),
                    reason: "writer already finished".into(),
                })?
                .into_inner()
                .map_err(|e| StoreError::fs(&path, e.into_error()))?;
            file.sync_all().map_err(|e| StoreError::fs(&path, e))?;
        }
        let index_tmp = dir.join(tmp_name(INDEX));
        let json = serde_json::to_vec_pretty(&self.index).map_err(|e| StoreError::Frame {
            path: dir.clone(),
            reason: format!("index not serialisable: {e}"),
        })?;
        write_synced(&index_tmp, &json)?;
        match std::fs::remove_file(dir.join(INDEX)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::fs(dir.join(INDEX), e))
            }
            _ => {}
        }
        let rename = |name: &str| {
            std::fs::rename(dir.join(tmp_name(name)), dir.join(name))
                .map_err(|e| StoreError::fs(dir.join(name), e))
        };
        rename(IMAGES)?;
        rename(MASKS)?;
        sync_dir(&dir)?; // data durable under final names before the index points at them
        rename(INDEX)?;
        sync_dir(&dir)?;
        self.finished = true;
        Ok(self.index.frames.len())
    }
}

impl Drop for FrameStoreWriter {
    fn drop(&mut self) {
        if !self.finished {
            for name in [IMAGES, MASKS, INDEX] {
                let _ = std::fs::remove_file(self.dir.join(tmp_name(name)));
            }
        }
    }
}

fn tmp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(|e| StoreError::fs(path, e))?;
    f.write_all(bytes).map_err(|e| StoreError::fs(path, e))?;
    f.sync_all().map_err(|e| StoreError::fs(path, e))
}

/// Makes renames in `dir` durable (a no-op where directories cannot be opened, e.g. Windows).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    match File::open(dir) {
        Ok(d) => d.sync_all().or_else(|e| {
            if cfg!(unix) {
                Err(StoreError::fs(dir, e))
            } else {
                Ok(())
            }
        }),
        Err(_) if !cfg!(unix) => Ok(()),
        Err(e) => Err(StoreError::fs(dir, e)),
    }
}

fn check_index(path: &Path, ix: &StoreIndex) -> Result<(), StoreError> {
    if ix.format != FORMAT || ix.version != VERSION {
        return Err(StoreError::corrupt(
            path,
            format!(
                "format {:?} version {} (expected {FORMAT:?} {VERSION})",
                ix.format, ix.version
            ),
        ));
    }
    let size = ix.preprocess.size;
    if size == 0 || size > 1 << 14 || ix.classes == 0 || ix.classes > 256 {
        return Err(StoreError::corrupt(
            path,
            format!("size {size} with {} classes", ix.classes),
        ));
    }
    if let Some((i, f)) = ix
        .frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.labelled.len() != ix.classes)
    {
        return Err(StoreError::corrupt(
            path,
            format!(
                "frame {i} has {} labelled flags for {} classes",
                f.labelled.len(),
                ix.classes
            ),
        ));
    }
    Ok(())
}

/// Maps a data file after checking it has exactly the length the index implies.
fn map_file(path: &Path, expected: u64, recorded: u64) -> Result<Option<Mmap>, StoreError> {
    if recorded != expected {
        return Err(StoreError::corrupt(
            path,
            format!("index records {recorded} bytes but its frames need {expected}"),
        ));
    }
    let file = File::open(path).map_err(|e| StoreError::fs(path, e))?;
    let len = file.metadata().map_err(|e| StoreError::fs(path, e))?.len();
    if len != expected {
        let what = if len < expected {
            "truncated"
        } else {
            "longer than its index says"
        };
        return Err(StoreError::corrupt(
            path,
            format!("{what}: {len} bytes, expected {expected}"),
        ));
    }
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the map is read-only and the store is immutable once finished: writers build a
    // new store under temporary names and rename, which never modifies the mapped inode.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| StoreError::fs(path, e))?;
    Ok(Some(map))
}
