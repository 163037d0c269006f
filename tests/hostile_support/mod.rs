//! Crafted DICOM bytes for the hostile-input tests: a Part 10 header written by hand, so a test
//! can follow it with any data set it likes (100 000 nested sequences, a deflated stream that
//! lies about a length, random bytes), exactly as a peer or a broken export could.
#![allow(dead_code)]

/// MR Image Storage.
pub const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian.
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Big Endian.
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
/// Deflated Explicit VR Little Endian.
pub const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// One explicit-VR little-endian element, value padded to even length.
pub fn el(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == b"UI" || vr == b"OB" { 0 } else { b' ' });
    }
    let mut out = Vec::new();
    out.extend_from_slice(&tag.0.to_le_bytes());
    out.extend_from_slice(&tag.1.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&v);
    out
}

/// Preamble, "DICM" and a file meta group declaring transfer syntax `ts`.
pub fn header(ts: &str) -> Vec<u8> {
    let mut group = Vec::new();
    group.extend(el((0x0002, 0x0001), b"OB", &[0, 1]));
    group.extend(el((0x0002, 0x0002), b"UI", MR.as_bytes()));
    group.extend(el((0x0002, 0x0003), b"UI", b"1.2.3.4.5"));
    group.extend(el((0x0002, 0x0010), b"UI", ts.as_bytes()));
    group.extend(el((0x0002, 0x0012), b"UI", b"1.2.3.99"));
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend(el(
        (0x0002, 0x0000),
        b"UL",
        &(group.len() as u32).to_le_bytes(),
    ));
    out.extend(group);
    out
}

/// A few ordinary attributes, then `depth` ContentSequences nested one inside the other's
/// item, all of undefined length, each closed properly.
pub fn nested_dataset(depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(el((0x0008, 0x0016), b"UI", MR.as_bytes()));
    out.extend(el((0x0008, 0x0018), b"UI", b"1.2.3.4.5"));
    out.extend(el((0x0008, 0x0060), b"CS", b"MR"));
    for _ in 0..depth {
        out.extend_from_slice(&[
            0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for _ in 0..depth {
        out.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
    out
}

/// A whole explicit-LE file with `depth` nested sequences.
pub fn nested_file(depth: usize) -> Vec<u8> {
    let mut out = header(EXPLICIT_LE);
    out.extend(nested_dataset(depth));
    out
}

/// `raw` compressed the way a Deflated Explicit VR Little Endian file stores its data set.
pub fn deflate(raw: &[u8]) -> Vec<u8> {
    use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    let ts = TransferSyntaxRegistry
        .get(DEFLATED)
        .expect("deflate registered");
    let Codec::Dataset(Some(adapter)) = ts.codec() else {
        panic!("deflate support not built in");
    };
    let mut out = Vec::new();
    {
        let mut w = adapter.adapt_writer(Box::new(&mut out));
        w.write_all(raw).expect("deflate");
        w.flush().expect("deflate");
    }
    out
}

use std::io::Write;

/// Deterministic pseudo-random numbers (xorshift64*), so every run tests the same inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
