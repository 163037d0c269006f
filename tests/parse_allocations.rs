//! The largest single allocation the DICOM reader makes, measured by a counting allocator,
//! for files whose headers claim far more than they hold (issue 10, item 11: no allocation
//! sized by an untrusted number before it is bounded). A timing check would only catch claims
//! big enough to be slow to zero; the allocator sees every request, so a 100 MB reservation
//! for a 1 KB file fails the test outright.

use cineseg::dicom::instance::parse;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

/// The system allocator, remembering per thread the largest block asked for (tests run on
/// several threads at once; each measures only its own).
struct LargestRequest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to `System`; only the size is recorded.
unsafe impl GlobalAlloc for LargestRequest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: LargestRequest = LargestRequest;

/// The largest allocation `parse` makes on `bytes`, and whether it accepted them.
fn largest_allocation_of(bytes: &[u8]) -> (usize, bool) {
    LARGEST.with(|c| c.set(0));
    let ok = parse(bytes, Path::new("crafted.dcm")).is_ok();
    (LARGEST.with(|c| c.get()), ok)
}

/// Preamble, "DICM" and a file meta group in explicit VR little endian naming `ts`.
fn part10_header(ts: &str) -> Vec<u8> {
    let mut group = Vec::new();
    let mut el = |tag: u16, vr: &[u8; 2], value: &[u8]| {
        group.extend_from_slice(&2u16.to_le_bytes());
        group.extend_from_slice(&tag.to_le_bytes());
        group.extend_from_slice(vr);
        if vr == b"OB" {
            group.extend_from_slice(&[0, 0]);
            group.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            group.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        group.extend_from_slice(value);
    };
    let even = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        v
    };
    el(0x0001, b"OB", &[0, 1]);
    el(0x0002, b"UI", &even("1.2.840.10008.5.1.4.1.1.7"));
    el(0x0003, b"UI", &even("1.2.826.0.1.3680043.10.99.4"));
    el(0x0010, b"UI", &even(ts));
    el(0x0012, b"UI", &even("1.2.826.0.1.3680043.10.99"));
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    f.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0]);
    f.extend_from_slice(&(group.len() as u32).to_le_bytes());
    f.extend_from_slice(&group);
    f
}

/// One implicit VR little endian element.
fn implicit(f: &mut Vec<u8>, group: u16, element: u16, value: &[u8]) {
    f.extend_from_slice(&group.to_le_bytes());
    f.extend_from_slice(&element.to_le_bytes());
    f.extend_from_slice(&(value.len() as u32).to_le_bytes());
    f.extend_from_slice(value);
}

const LIMIT: usize = 16 << 20;

#[test]
fn an_honest_small_file_allocates_little() {
    let mut f = part10_header("1.2.840.10008.1.2");
    implicit(&mut f, 0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\0");
    implicit(&mut f, 0x0028, 0x0002, &1u16.to_le_bytes());
    implicit(&mut f, 0x0028, 0x0004, b"MONOCHROME2 ");
    let (largest, ok) = largest_allocation_of(&f);
    assert!(ok, "the honest file parses");
    assert!(largest < LIMIT, "largest allocation {largest} bytes");
}

/// Fuzz finding 4 (2026-12-03, an 836-byte file): in implicit VR, SamplesPerPixel (US by the
/// dictionary) declared 3 bytes. The parser reads one whole US (2 bytes) and goes on from
/// there, where an honest PhotometricInterpretation follows; a reader that consumed all 3
/// bytes instead met a header claiming 1.29 GB (0x4D000000, the 'M' of MONOCHROME2 as its
/// top length byte) and reserved it. The nesting check used such a reader.
#[test]
fn a_three_byte_us_does_not_make_any_check_reserve_a_gigabyte() {
    let mut f = part10_header("1.2.840.10008.1.2");
    implicit(&mut f, 0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\0");
    // (0028,0002) with length 3: 01 00, then the first byte of the next header.
    f.extend_from_slice(&[0x28, 0x00, 0x02, 0x00, 3, 0, 0, 0, 0x01, 0x00]);
    // Read 2 bytes on: (0028,0004) CS "MONOCHROME2 ". Read 3 bytes on: (0400,0C00) claiming
    // 0x4D000000 bytes.
    f.extend_from_slice(&[0x28, 0x00, 0x04, 0x00, 12, 0, 0, 0]);
    f.extend_from_slice(b"MONOCHROME2 ");
    implicit(&mut f, 0x0028, 0x0010, &8u16.to_le_bytes());
    let (largest, _) = largest_allocation_of(&f);
    assert!(
        largest < LIMIT,
        "largest allocation {largest} bytes for a {}-byte file",
        f.len()
    );
}

/// Every length field of an honest file raised, one at a time, to a huge claim: each
/// variant is refused or read without a large allocation.
#[test]
fn a_huge_claim_in_any_length_field_is_never_allocated() {
    let mut f = part10_header("1.2.840.10008.1.2");
    let data_start = f.len();
    implicit(&mut f, 0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\0");
    implicit(&mut f, 0x0010, 0x0010, b"DOE^J ");
    implicit(&mut f, 0x0028, 0x0002, &1u16.to_le_bytes());
    implicit(&mut f, 0x0028, 0x0004, b"MONOCHROME2 ");
    implicit(&mut f, 0x0028, 0x0010, &8u16.to_le_bytes());
    implicit(&mut f, 0x0028, 0x0011, &8u16.to_le_bytes());
    implicit(&mut f, 0x7FE0, 0x0010, &[7u8; 64]);
    for at in (data_start..f.len() - 8).step_by(2) {
        for claim in [0x4D00_0000u32, 0xFFFF_FFF0, 0x0100_0000] {
            let mut g = f.clone();
            g[at + 4..at + 8].copy_from_slice(&claim.to_le_bytes());
            let (largest, _) = largest_allocation_of(&g);
            assert!(
                largest < LIMIT,
                "claim {claim:#x} at byte {at}: largest allocation {largest} bytes"
            );
        }
    }
}
