//! Fuzz the file reader: any byte string must give instances or a typed error and never take
//! the process down, and no allocation may exceed the caps (libFuzzer's -rss_limit_mb and
//! -malloc_limit_mb catch those).
//!
//! The reader wraps third-party decoders in `catch_unwind` and turns their panics into
//! `DicomError::Decode`, which is the production behaviour. libfuzzer-sys installs a hook that
//! aborts on *every* panic, caught or not; this target replaces it with one that only logs, so a
//! caught decoder panic counts as the clean error it is in production, while a panic in our own
//! code (outside any `catch_unwind`) still unwinds into the `extern "C"` entry point and aborts,
//! which libFuzzer reports as a crash.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

/// Aborts on any single allocation over 64 MiB: no input of at most a few KiB may make the
/// reader ask for that much (the caps on rows, columns and frames bound honest pixel buffers
/// well below it). An abort is reported at once with the input, instead of as an RSS overrun
/// after the memory was touched, and the backtrace names the allocation.
struct BoundedAlloc;

const MAX_SINGLE_ALLOCATION: usize = 64 << 20;

// SAFETY: forwards every call to the system allocator unchanged, or aborts.
unsafe impl std::alloc::GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > MAX_SINGLE_ALLOCATION {
            std::process::abort();
        }
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        if size > MAX_SINGLE_ALLOCATION {
            std::process::abort();
        }
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: BoundedAlloc = BoundedAlloc;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("caught third-party panic: {info}");
        }));
    });
    let path = std::path::Path::new("fuzz-input.dcm");
    // Raw input, and the same input behind a preamble + DICM marker so the parser gets past
    // the magic check on most inputs.
    let _ = cineseg::dicom::instance::read_bytes(data, path);
    let mut framed = vec![0u8; 128];
    framed.extend_from_slice(b"DICM");
    framed.extend_from_slice(data);
    if let Ok(instances) = cineseg::dicom::instance::read_bytes(&framed, path) {
        for i in &instances {
            assert_eq!(i.pixels.len(), i.rows * i.cols * i.samples_per_pixel);
        }
    }
});
