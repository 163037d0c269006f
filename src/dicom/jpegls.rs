//! JPEG-LS pixel data (transfer syntaxes 1.2.840.10008.1.2.4.80 and .81), decoded in pure Rust
//! with `pure_jpegls`. dicom-pixeldata decodes JPEG-LS only through CharLS, whose build needs
//! cmake and a C++ compiler; with this module `cargo build` works on a machine with only Rust.
//!
//! The encapsulated fragments are split into frames here (one fragment per frame, the basic
//! offset table, or all fragments for a single frame), and every frame is cross-checked against
//! the header before its samples are used.

use dicom_dictionary_std::tags;

use super::attr::{self, Obj};

/// The JPEG-LS transfer syntaxes: lossless and near-lossless.
pub(crate) const TRANSFER_SYNTAXES: [&str; 2] =
    ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];

/// Whether `uid` names a JPEG-LS transfer syntax (trailing padding ignored).
pub(crate) fn is_jpeg_ls(uid: &str) -> bool {
    TRANSFER_SYNTAXES.contains(&uid.trim_end_matches('\0').trim())
}

/// The compressed stream of every frame of one object, and how to turn samples into values.
pub(crate) struct JpegLsFrames {
    streams: Vec<Vec<u8>>,
    rows: usize,
    cols: usize,
    bits_stored: u32,
    signed: bool,
}

impl JpegLsFrames {
    /// Split the encapsulated pixel data of `obj` into `frames` JPEG-LS streams.
    pub(crate) fn from_object(
        obj: &Obj,
        rows: usize,
        cols: usize,
        frames: usize,
        spp: usize,
    ) -> Result<Self, String> {
        if spp != 1 {
            return Err(format!(
                "JPEG-LS with {spp} samples per pixel is not supported (MR images have 1)"
            ));
        }
        let value = obj
            .element(tags::PIXEL_DATA)
            .map_err(|_| "no PixelData element".to_string())?
            .value();
        let fragments = value
            .fragments()
            .ok_or("JPEG-LS PixelData is not encapsulated (no fragment sequence)")?;
        let offsets = value.offset_table().unwrap_or(&[]);
        let streams = split_frames(fragments, offsets, frames)?;
        let bits_stored = attr::int(obj, tags::BITS_STORED).unwrap_or(16).clamp(2, 16) as u32;
        let signed = attr::int(obj, tags::PIXEL_REPRESENTATION) == Some(1);
        Ok(Self {
            streams,
            rows,
            cols,
            bits_stored,
            signed,
        })
    }

    /// Decode frame `f` into stored values (PixelRepresentation applied, no rescale).
    pub(crate) fn frame(&self, f: usize) -> Result<Vec<f64>, String> {
        let stream = self
            .streams
            .get(f)
            .ok_or_else(|| format!("frame {f} has no JPEG-LS stream"))?;
        let (samples, w, h) = jpegls::decode(stream, self.cols as u32, self.rows as u32)
            .map_err(|e| format!("JPEG-LS frame {f}: {e}"))?;
        if w as usize != self.cols || h as usize != self.rows {
            return Err(format!(
                "JPEG-LS frame {f} is {w} x {h}, header says {} x {}",
                self.cols, self.rows
            ));
        }
        let expected = self.rows * self.cols;
        if samples.len() != expected {
            return Err(format!(
                "JPEG-LS frame {f} has {} samples, expected {expected}",
                samples.len()
            ));
        }
        Ok(samples
            .iter()
            .map(|&s| stored_value(s, self.bits_stored, self.signed))
            .collect())
    }
}

/// A stored sample as a number: two's complement in `bits` bits when the pixels are signed.
fn stored_value(sample: u16, bits: u32, signed: bool) -> f64 {
    let mask = if bits >= 16 {
        u16::MAX
    } else {
        (1u16 << bits) - 1
    };
    let v = sample & mask;
    if signed && bits < 16 && v & (1 << (bits - 1)) != 0 {
        f64::from(v) - f64::from(1u32 << bits)
    } else if signed && bits == 16 {
        f64::from(v as i16)
    } else {
        f64::from(v)
    }
}

/// One byte stream per frame: fragments map one to one, or the basic offset table says where
/// each frame starts, or a single frame spans every fragment.
fn split_frames(
    fragments: &[Vec<u8>],
    offsets: &[u32],
    frames: usize,
) -> Result<Vec<Vec<u8>>, String> {
    if fragments.is_empty() {
        return Err("JPEG-LS PixelData holds no fragments".into());
    }
    if frames == 1 {
        return Ok(vec![fragments.concat()]);
    }
    if fragments.len() == frames {
        return Ok(fragments.to_vec());
    }
    if offsets.len() != frames {
        return Err(format!(
            "{} fragments for {frames} frames and a basic offset table of {} entries: \
             the frames cannot be told apart",
            fragments.len(),
            offsets.len()
        ));
    }
    // Offsets count bytes from the first fragment's item tag: 8 header bytes per fragment.
    let mut starts = Vec::with_capacity(fragments.len());
    let mut at = 0u64;
    for frag in fragments {
        starts.push(at);
        at += 8 + frag.len() as u64;
    }
    let mut streams = Vec::with_capacity(frames);
    for (i, &off) in offsets.iter().enumerate() {
        let end = offsets.get(i + 1).map_or(u64::MAX, |&e| u64::from(e));
        let parts: Vec<&[u8]> = fragments
            .iter()
            .zip(&starts)
            .filter(|(_, &s)| s >= u64::from(off) && s < end)
            .map(|(f, _)| f.as_slice())
            .collect();
        if parts.is_empty() {
            return Err(format!(
                "basic offset table entry {i} ({off}) points at no fragment"
            ));
        }
        streams.push(parts.concat());
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_samples_are_sign_extended_from_bits_stored() {
        assert_eq!(stored_value(0x0FFF, 12, true), -1.0);
        assert_eq!(stored_value(0x07FF, 12, true), 2047.0);
        assert_eq!(stored_value(0xFFFF, 16, true), -1.0);
        assert_eq!(stored_value(0xFFFF, 16, false), 65535.0);
        assert_eq!(stored_value(0xF0FF, 12, false), 255.0);
    }

    #[test]
    fn frames_split_by_fragment_count_or_offset_table() {
        let frags = vec![vec![1u8, 2], vec![3], vec![4, 5, 6]];
        assert_eq!(
            split_frames(&frags, &[], 1).unwrap(),
            vec![vec![1, 2, 3, 4, 5, 6]]
        );
        assert_eq!(split_frames(&frags, &[], 3).unwrap().len(), 3);
        // frame 0 = fragments 0 and 1 (offset 0), frame 1 = fragment 2 (offset 10 + 9 = 19)
        let two = split_frames(&frags, &[0, 19], 2).unwrap();
        assert_eq!(two, vec![vec![1, 2, 3], vec![4, 5, 6]]);
        assert!(split_frames(&frags, &[], 2).is_err());
        assert!(split_frames(&[], &[], 1).is_err());
    }

    #[test]
    fn round_trip_through_the_encoder() {
        let pixels: Vec<u16> = (0..64 * 48).map(|i| (i * 37 % 4096) as u16).collect();
        let mut stream = Vec::new();
        jpegls::encode(&pixels, 64, 48, &mut stream).unwrap();
        let frames = JpegLsFrames {
            streams: vec![stream],
            rows: 48,
            cols: 64,
            bits_stored: 12,
            signed: false,
        };
        let back = frames.frame(0).unwrap();
        assert!(back.iter().zip(&pixels).all(|(a, &b)| *a == f64::from(b)));
        assert!(frames.frame(1).is_err());
    }
}
