//! Recycling of large f32 buffers.
//!
//! A fresh multi-megabyte allocation is served by `mmap` and every page faults on first touch:
//! measured here, allocating and filling a 38 MB activation costs ~20 ms against ~3 ms to
//! overwrite a warm one, and a training step allocates dozens. Activations and scratch buffers
//! therefore come from, and go back to, a small global pool (the CPU counterpart of the GPU
//! backend's arena).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Buffers below this many floats are left to the system allocator.
const MIN_POOLED: usize = 1 << 16;
/// Most bytes the pool keeps; beyond this, freed buffers are really freed.
const MAX_POOL_BYTES: usize = 3 << 30;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
/// The current bound on pooled bytes ([`set_pool_limit`]).
static LIMIT: AtomicUsize = AtomicUsize::new(MAX_POOL_BYTES);

/// Bounds the bytes the pool keeps, dropping pooled buffers beyond it now. Training wants a
/// pool of gigabytes (dozens of live activations per step); a daemon that only infers must not
/// keep a training-sized pool for months: measured, its resident size grew by tens of MiB per
/// series as buffers of assorted sizes accumulated.
pub fn set_pool_limit(bytes: usize) {
    LIMIT.store(bytes.min(MAX_POOL_BYTES), Ordering::Relaxed);
    if let Ok(mut pool) = POOL.lock() {
        pool.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
        let mut held = 0usize;
        pool.retain(|b| {
            held += b.capacity() * 4;
            held <= bytes
        });
    }
}

/// Bytes held by the pool now (for memory reports).
pub fn pooled_bytes() -> usize {
    POOL.lock()
        .map(|p| p.iter().map(|b| b.capacity() * 4).sum())
        .unwrap_or(0)
}

/// A buffer of `len` floats with unspecified (but initialised) contents: for outputs that are
/// completely overwritten.
pub fn take_any(len: usize) -> Vec<f32> {
    if len >= MIN_POOLED {
        if let Ok(mut pool) = POOL.lock() {
            // Best fit: the smallest pooled buffer whose capacity suffices, but not one more
            // than twice too large (handing those out makes the next large request allocate
            // afresh, and the pool ratchets up).
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len && b.capacity() / 2 <= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let mut b = pool.remove(i);
                drop(pool);
                if b.len() >= len {
                    b.truncate(len);
                } else {
                    b.resize(len, 0.0);
                }
                return b;
            }
        }
    }
    vec![0.0; len]
}

/// A zero-filled buffer of `len` floats.
pub fn take_zeroed(len: usize) -> Vec<f32> {
    let mut b = take_any(len);
    b.fill(0.0);
    b
}

/// Returns a buffer to the pool (or frees it when small or when the pool is full).
pub fn give(b: Vec<f32>) {
    if b.capacity() < MIN_POOLED {
        return;
    }
    let limit = LIMIT.load(Ordering::Relaxed);
    if b.capacity() * 4 > limit {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        // Newest last; over the limit, the oldest go (sizes no longer in use age out instead
        // of crowding out the live ones).
        pool.push(b);
        let mut held: usize = pool.iter().map(|v| v.capacity() * 4).sum();
        while held > limit && !pool.is_empty() {
            held -= pool.remove(0).capacity() * 4;
        }
    }
}

/// A pooled scratch buffer that goes back to the pool when dropped.
pub struct Scratch(pub Vec<f32>);

impl Scratch {
    /// An empty scratch buffer (grown with [`resize`](Self::resize)).
    pub fn new() -> Self {
        Scratch(Vec::new())
    }

    /// Makes the buffer `len` long, reusing pooled memory; contents unspecified.
    pub fn resize(&mut self, len: usize) -> &mut [f32] {
        if self.0.capacity() < len {
            give(std::mem::take(&mut self.0));
            self.0 = take_any(len);
        }
        self.0.resize(len, 0.0);
        self.0.truncate(len);
        &mut self.0
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}
