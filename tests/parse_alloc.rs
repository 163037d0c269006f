//! Issue 10, item 11: 4 KiB of random bytes sent as an instance drove the daemon to 4.2 GiB.
//! Every allocation while parsing untrusted bytes must be bounded by the bytes present. This
//! binary counts every byte the process allocates (a counting global allocator) and parses a
//! few thousand seeded inputs through `cineseg::dicom::instance::parse`: random data sets
//! behind a valid file meta group (as the daemon stores what a peer sends), in each transfer
//! syntax the receiver accepts for native data, and mutations of a small valid MR file. The
//! peak allocation for any one input must stay under 64 MiB. Crafted shapes of the fuzzer's
//! findings, and every length field of an honest file raised to a huge claim, are measured the
//! same way.

mod daemon_support;
mod hostile_support;

use hostile_support::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now =
                    LIVE.fetch_add(new_size - layout.size(), Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was live before it.
fn peak_of(f: impl FnOnce()) -> usize {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    f();
    PEAK.load(Relaxed).saturating_sub(before)
}

const LIMIT: usize = 64 << 20;

/// Parses one input, returning its peak allocation.
fn measure(bytes: &[u8]) -> usize {
    peak_of(|| {
        let _ = cineseg::dicom::instance::parse(bytes, Path::new("input.dcm"));
    })
}

fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut m = valid.to_vec();
    for _ in 0..1 + rng.below(6) {
        let span = m.len() - 132;
        let at = 132 + rng.below(span);
        match rng.below(6) {
            // A 32-bit length-sized run of 0xFF or of a random value.
            0 => {
                let v = if rng.below(2) == 0 {
                    u32::MAX - 1
                } else {
                    rng.next() as u32
                };
                for (i, b) in v.to_le_bytes().iter().enumerate() {
                    if let Some(x) = m.get_mut(at + i) {
                        *x = *b;
                    }
                }
            }
            1 => m[at] = rng.next() as u8,
            2 => m[at] ^= 1 << rng.below(8),
            3 => m.truncate(at),
            4 => {
                let n = 1 + rng.below(16);
                let junk = rng.bytes(n);
                m.splice(at..at, junk);
            }
            _ => {
                let n = 1 + rng.below(16);
                let end = (at + n).min(m.len());
                m.drain(at..end);
            }
        }
        if m.len() <= 132 {
            break;
        }
    }
    m
}

/// One implicit VR little endian element.
fn implicit(f: &mut Vec<u8>, group: u16, element: u16, value: &[u8]) {
    f.extend_from_slice(&group.to_le_bytes());
    f.extend_from_slice(&element.to_le_bytes());
    f.extend_from_slice(&(value.len() as u32).to_le_bytes());
    f.extend_from_slice(value);
}

/// Fuzz finding 4 (2026-12-03, an 836-byte file): in implicit VR, SamplesPerPixel (US by the
/// dictionary) declared 3 bytes. The parser reads one whole US (2 bytes) and goes on from
/// there, where an honest PhotometricInterpretation follows; a reader that consumed all 3
/// bytes instead met a header claiming 1.29 GB (0x4D000000: the 'M' of MONOCHROME2 is its top
/// length byte) and reserved it. The nesting check used such a reader.
fn three_byte_us() -> Vec<u8> {
    let mut f = header(IMPLICIT_LE);
    implicit(&mut f, 0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\0");
    f.extend_from_slice(&[0x28, 0x00, 0x02, 0x00, 3, 0, 0, 0, 0x01, 0x00]);
    // 2 bytes on: (0028,0004) CS "MONOCHROME2 "; 3 bytes on: (0400,0C00) claiming 0x4D000000.
    f.extend_from_slice(&[0x28, 0x00, 0x04, 0x00, 12, 0, 0, 0]);
    f.extend_from_slice(b"MONOCHROME2 ");
    implicit(&mut f, 0x0028, 0x0010, &8u16.to_le_bytes());
    f
}

/// An honest implicit VR file, and where its data set starts.
fn honest_implicit() -> (Vec<u8>, usize) {
    let mut f = header(IMPLICIT_LE);
    let start = f.len();
    implicit(&mut f, 0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\0");
    implicit(&mut f, 0x0010, 0x0010, b"DOE^J ");
    implicit(&mut f, 0x0028, 0x0002, &1u16.to_le_bytes());
    implicit(&mut f, 0x0028, 0x0004, b"MONOCHROME2 ");
    implicit(&mut f, 0x0028, 0x0010, &8u16.to_le_bytes());
    implicit(&mut f, 0x0028, 0x0011, &8u16.to_le_bytes());
    implicit(&mut f, 0x7FE0, 0x0010, &[7u8; 64]);
    (f, start)
}

/// The crafted inputs; run from the one test of this binary, since the allocation counters are
/// process-wide and a second test on another thread would add its allocations to them.
fn crafted_claims_are_never_allocated() {
    let us = three_byte_us();
    let peak = measure(&us);
    assert!(
        peak < LIMIT,
        "3-byte US: {peak} bytes allocated for a {}-byte file",
        us.len()
    );
    let (f, start) = honest_implicit();
    assert!(measure(&f) < LIMIT);
    // Every 4-byte window of the data set (each length field among them) set to a huge claim.
    for at in (start..f.len() - 8).step_by(2) {
        for claim in [0x4D00_0000u32, 0xFFFF_FFF0, 0x0100_0000] {
            let mut g = f.clone();
            g[at + 4..at + 8].copy_from_slice(&claim.to_le_bytes());
            let peak = measure(&g);
            assert!(
                peak < LIMIT,
                "claim {claim:#x} at byte {at}: {peak} bytes allocated"
            );
        }
    }
}

#[test]
fn parse_allocates_a_bounded_amount_on_random_and_mutated_inputs() {
    crafted_claims_are_never_allocated();
    let dir = tempfile::tempdir().unwrap();
    let files = daemon_support::synthetic_series(dir.path(), "1.2.826.0.1.3680043.10.9", 1, 1);
    let valid = std::fs::read(&files[0]).unwrap();
    assert!(cineseg::dicom::instance::parse(&valid, &files[0]).is_ok());
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut worst = (0usize, String::new());
    let mut record = |peak: usize, what: String| {
        if peak > worst.0 {
            worst = (peak, what);
        }
    };
    let mut count = 0;
    for ts in [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE] {
        for i in 0..700 {
            let mut bytes = header(ts);
            bytes.extend(rng.bytes(4096));
            record(measure(&bytes), format!("random body #{i} under {ts}"));
            count += 1;
        }
    }
    for i in 0..300 {
        let mut bytes = header(DEFLATED);
        bytes.extend(deflate(&rng.bytes(4096)));
        record(measure(&bytes), format!("random deflated body #{i}"));
        count += 1;
    }
    for i in 0..2500 {
        let m = mutate(&mut rng, &valid);
        record(measure(&m), format!("mutation #{i}"));
        count += 1;
    }
    // The worst case by hand: a deflated data set whose pixel data claims 512 MiB.
    let mut raw = el((0x0008, 0x0060), b"CS", b"MR");
    raw.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
    raw.extend_from_slice(&0x2000_0000u32.to_le_bytes());
    let mut lie = header(DEFLATED);
    lie.extend(deflate(&raw));
    record(measure(&lie), "deflated 512 MiB claim".into());
    count += 1;
    println!(
        "{count} inputs; largest peak allocation {} bytes ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 < LIMIT,
        "{} allocated {} bytes (limit {LIMIT})",
        worst.1,
        worst.0
    );
}
