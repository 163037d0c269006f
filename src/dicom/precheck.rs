//! A header walk over the raw bytes before the real parser sees them. The parser reserves
//! memory for an element as soon as it reads the element's length, so a corrupt or hostile
//! header claiming a 3 GB element would allocate 3 GB before failing. Here every declared
//! length is checked against the bytes actually left in the file, without allocating. The
//! same goes for RLE fragment headers, which the RLE decoder trusts.

use dicom_dictionary_std::tags;

use super::attr::Obj;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

#[derive(Clone, Copy, PartialEq)]
enum Syntax {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
}

/// VRs with a 2-byte length in explicit VR. Everything else, including an unrecognised VR
/// (which the parser reads as UN), has a 2-byte reserved field and a 4-byte length.
fn short_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Walker<'_> {
    fn u16(&self, at: usize, big: bool) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }
    fn u32(&self, at: usize, big: bool) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
}

/// Check `body` (starting at "DICM") for element lengths that exceed the file. Returns a
/// reason when one does or a header is cut off. A deflated data set is not walked here (its
/// bytes are compressed): [`inflate`] it and walk it with [`check_inflated_lengths`].
pub(crate) fn check_lengths(body: &[u8]) -> Result<(), String> {
    walk_lengths(body, 4, Syntax::ExplicitLe, true)
}

/// Check a data set (no meta group) in the transfer syntax `ts_uid` as [`check_lengths`]
/// checks a whole file: for the bytes the parser reads after the meta reader stopped.
pub(crate) fn check_dataset_lengths(dataset: &[u8], ts_uid: &str) -> Result<(), String> {
    let syntax = match ts_uid.trim_end_matches(['\0', ' ']) {
        "1.2.840.10008.1.2" => Syntax::ImplicitLe,
        "1.2.840.10008.1.2.2" => Syntax::ExplicitBe,
        _ => Syntax::ExplicitLe,
    };
    walk_lengths(dataset, 0, syntax, false)
}

/// Check an inflated Deflated Explicit VR Little Endian data set (no meta group) as
/// [`check_lengths`] checks a plain one.
pub(crate) fn check_inflated_lengths(dataset: &[u8]) -> Result<(), String> {
    walk_lengths(dataset, 0, Syntax::ExplicitLe, false)
}

/// Check a bare Implicit VR Little Endian data set, such as a DIMSE command set reassembled from
/// a peer's P-DATA, before `InMemDicomObject::read_dataset_with_ts` reads it: every length
/// against the bytes present, and nesting against [`MAX_SEQUENCE_DEPTH`]. For the receiver's
/// command parser (src/daemon/net/dimse.rs).
pub fn check_implicit_dataset(dataset: &[u8]) -> Result<(), String> {
    walk_lengths(dataset, 0, Syntax::ImplicitLe, false)?;
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    check_nesting(dataset, &ts)
}

/// An open sequence or item of the walk, as the parser's stack of delimiters holds it.
struct Open {
    item: bool,
    /// Where a defined-length one ends (the parser closes it there without a delimiter).
    end: Option<usize>,
}

/// Walks the element and item headers the way dicom-parser's `DataSetReader` reads them, so
/// every length it will allocate for is checked against the bytes left. The parser's state
/// decides how a header is read: where it expects an item (right after a sequence starts, and
/// after an item ends) it reads an item header and ignores any length a delimiter declares;
/// where it expects an element, a (FFFE,E0DD) is a plain element whose declared length is
/// read as its value, and an undefined length opens a sequence whatever the VR. (A walk that
/// skipped a sequence delimiter's length in item context let a 1.5 KB file make the parser
/// reserve 4 GB: fuzzing, 2026-12-03.)
fn walk_lengths(body: &[u8], start: usize, syntax: Syntax, in_meta: bool) -> Result<(), String> {
    let mut w = Walker {
        bytes: body,
        pos: start,
    };
    let mut syntax = syntax;
    let mut in_meta = in_meta;
    let mut in_fragments = false;
    let mut expect_item = false;
    let mut open: Vec<Open> = Vec::new();
    let mut transfer_syntax = String::new();
    loop {
        // Defined-length sequences and items close where their length ends.
        while let Some(top) = open.last() {
            match top.end {
                Some(end) if w.pos >= end => {
                    expect_item = top.item;
                    open.pop();
                }
                _ => break,
            }
        }
        if w.pos >= body.len() {
            return Ok(());
        }
        let group_le = w.u16(w.pos, false).ok_or("element header cut off")?;
        if in_meta && group_le != 0x0002 {
            in_meta = false;
            syntax = match transfer_syntax.trim_end_matches(['\0', ' ']) {
                "1.2.840.10008.1.2" => Syntax::ImplicitLe,
                "1.2.840.10008.1.2.2" => Syntax::ExplicitBe,
                // Deflated data sets are inflated by the parser; lengths cannot be walked here.
                "1.2.840.10008.1.2.1.99" => return Ok(()),
                _ => Syntax::ExplicitLe,
            };
            continue;
        }
        let big = syntax == Syntax::ExplicitBe && !in_meta;
        let group = w.u16(w.pos, big).ok_or("element header cut off")?;
        let element = w.u16(w.pos + 2, big).ok_or("element header cut off")?;
        let start = w.pos;
        if expect_item && !in_fragments && group != 0xFFFE {
            // Not an item where one is expected: the parser stops there with an error; walk
            // on as if it read an element, so whatever follows is checked too.
            expect_item = false;
        }
        if in_fragments || expect_item {
            // An item header: tag and 4-byte length.
            let len = w.u32(w.pos + 4, big).ok_or("item header cut off")?;
            w.pos += 8;
            match (group, element) {
                (0xFFFE, 0xE000) if in_fragments => {
                    if len != UNDEFINED {
                        skip(&mut w, start, group, element, len)?;
                    }
                }
                (0xFFFE, 0xE0DD) if in_fragments => in_fragments = false,
                (0xFFFE, 0xE000) => {
                    let remaining = body.len().saturating_sub(w.pos);
                    if len != UNDEFINED && len as usize > remaining {
                        return Err(format!(
                            "item at byte {start} claims {len} bytes but only {remaining} remain"
                        ));
                    }
                    let end = (len != UNDEFINED).then(|| w.pos + len as usize);
                    open.push(Open { item: true, end });
                    expect_item = false;
                }
                (0xFFFE, 0xE00D) => {
                    open.pop();
                    expect_item = true;
                }
                (0xFFFE, 0xE0DD) => {
                    open.pop();
                    expect_item = false;
                }
                // Any other (FFFE,xxxx) item tag: the parser stops with an error here, before
                // allocating anything.
                _ => return Ok(()),
            }
            continue;
        }
        let (len, header) = if group == 0xFFFE || (syntax == Syntax::ImplicitLe && !in_meta) {
            (w.u32(w.pos + 4, big).ok_or("element header cut off")?, 8)
        } else {
            let vr = body
                .get(w.pos + 4..w.pos + 6)
                .ok_or("element header cut off")?;
            if !short_vr(vr) {
                (w.u32(w.pos + 8, big).ok_or("element header cut off")?, 12)
            } else {
                (
                    u32::from(w.u16(w.pos + 6, big).ok_or("element header cut off")?),
                    8,
                )
            }
        };
        w.pos += header;
        if (group, element) == (0xFFFE, 0xE00D) {
            // An item delimiter where an element is expected ends the open item (or is
            // ignored outside any); its length is not read.
            if open.pop().is_some() {
                expect_item = true;
            }
            continue;
        }
        if len == UNDEFINED {
            if (group, element) == PIXEL_DATA {
                in_fragments = true;
            } else {
                open.push(Open {
                    item: false,
                    end: None,
                });
                expect_item = true;
            }
            continue;
        }
        // The VR the parser reads the value by: in implicit VR the dictionary's, so a tag the
        // dictionary calls SQ is read as items whatever its bytes look like (walked the same),
        // and binary VRs are read in whole numbers (below). One dictionary lookup per element.
        let vr = if syntax == Syntax::ImplicitLe && !in_meta {
            dictionary_vr(group, element)
        } else {
            body.get(start + 4..start + 6)
                .and_then(|v| <[u8; 2]>::try_from(v).ok())
        };
        let is_sq = group != 0xFFFE && vr == Some(*b"SQ");
        if is_sq && (len as usize) <= body.len() - w.pos {
            open.push(Open {
                item: false,
                end: Some(w.pos + len as usize),
            });
            expect_item = true;
            continue;
        }
        if (group, element) == (0x0002, 0x0010) {
            let v = body.get(w.pos..w.pos + len as usize).unwrap_or_default();
            transfer_syntax = String::from_utf8_lossy(v).into_owned();
        }
        skip(&mut w, start, group, element, len)?;
        // The parser reads binary numbers whole: of a UL value 3 bytes long it reads none, so
        // its stream stays `len % unit` bytes behind the declared length (fuzzing,
        // 2026-12-03: a (0000,0000) of length 3 shifted it onto a 4 GB claim). Follow it.
        w.pos -= len as usize % vr.map_or(1, binary_unit);
    }
}

/// Bytes per value of the binary VRs the parser reads in whole numbers (1 for the rest).
fn binary_unit(vr: [u8; 2]) -> usize {
    match &vr {
        b"US" | b"SS" | b"OW" => 2,
        b"UL" | b"SL" | b"FL" | b"OF" | b"OL" | b"AT" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// The VR the standard dictionary gives a tag, as its two letters, when it is a single one.
fn dictionary_vr(group: u16, element: u16) -> Option<[u8; 2]> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    use dicom_core::Tag;
    match dicom_dictionary_std::StandardDataDictionary
        .by_tag(Tag(group, element))?
        .vr()
    {
        VirtualVr::Exact(vr) => <[u8; 2]>::try_from(vr.to_string().as_bytes()).ok(),
        VirtualVr::Xs => Some(*b"US"),
        _ => None,
    }
}

/// How deep sequences may nest. dicom-object builds a data set by recursion, two stack frames
/// (`build_sequence`, `build_object`) per level, and dropping or cloning the object recurses the
/// same way; a 2 MB file nesting 100 000 undefined-length sequences overflowed the stack and
/// aborted the process. The objects this program reads nest far less: Enhanced MR reaches 3
/// levels (per-frame functional groups -> a functional group -> a code item), SEG 4, and even
/// structured reports' content trees seldom pass 20. 64 leaves room for all of them while the
/// deepest parse stays within a few hundred KiB of stack (tested on a 1 MiB thread stack).
pub const MAX_SEQUENCE_DEPTH: usize = 64;

/// Refuse a data set whose sequences nest deeper than [`MAX_SEQUENCE_DEPTH`]. The check reads
/// the very token stream that dicom-object's recursive builder consumes (same reader, same
/// default options), so the depth it counts is the depth the builder would reach; the reader
/// itself keeps its open sequences on the heap and does not recurse. Values are read one at a
/// time, after [`check_lengths`] has bounded every length by the bytes present.
/// A stream the reader cannot read to the end is left for the real parse to report.
///
/// The options must stay the builder's: with raw value reading, a US of 3 bytes consumes 3
/// bytes where the builder's whole-number read consumes 2, the two streams part, and this
/// check itself reserved 1.29 GB for a header [`check_lengths`] never saw (fuzz finding 4,
/// 2026-12-03, an 836-byte file).
pub(crate) fn check_nesting(
    dataset: &[u8],
    ts: &dicom_encoding::TransferSyntax,
) -> Result<(), String> {
    use dicom_parser::dataset::read::DataSetReaderOptions;
    use dicom_parser::dataset::{DataSetReader, DataToken};
    let options = DataSetReaderOptions::default();
    let Ok(reader) = DataSetReader::new_with_ts_options(dataset, ts, options) else {
        return Ok(());
    };
    let (mut depth, mut in_pixel_sequence) = (0usize, false);
    for token in reader {
        match token {
            Err(_) => break,
            Ok(DataToken::SequenceStart { tag, .. }) => {
                depth += 1;
                if depth > MAX_SEQUENCE_DEPTH {
                    return Err(format!(
                        "sequences nest more than {MAX_SEQUENCE_DEPTH} levels deep \
                         (level {depth} opens at ({:04X},{:04X}))",
                        tag.0, tag.1
                    ));
                }
            }
            // Encapsulated pixel data is a flat list of fragments: no recursion.
            Ok(DataToken::PixelSequenceStart) => in_pixel_sequence = true,
            Ok(DataToken::SequenceEnd) if in_pixel_sequence => in_pixel_sequence = false,
            Ok(DataToken::SequenceEnd) => depth = depth.saturating_sub(1),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The data set of a Deflated Explicit VR Little Endian file, inflated, at most `limit` bytes.
/// The parser would inflate it as it reads, so lengths inside could not be checked against
/// anything; inflated here, they are checked like those of a plain file. Deflate expands at
/// most about 1032:1, so the inflated size is bounded by the bytes received as well.
pub(crate) fn inflate(
    compressed: &[u8],
    ts: &dicom_encoding::TransferSyntax,
    limit: u64,
) -> Result<Vec<u8>, String> {
    use dicom_encoding::transfer_syntax::Codec;
    use std::io::Read;
    let Codec::Dataset(Some(adapter)) = ts.codec() else {
        return Err(format!(
            "transfer syntax {} is not a deflated one",
            ts.uid()
        ));
    };
    let mut inflated = Vec::new();
    adapter
        .adapt_reader(Box::new(compressed))
        .take(limit.saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|e| format!("deflated data set cannot be inflated: {e}"))?;
    if inflated.len() as u64 > limit {
        return Err(format!("deflated data set inflates past {limit} bytes"));
    }
    Ok(inflated)
}

fn skip(w: &mut Walker, start: usize, group: u16, element: u16, len: u32) -> Result<(), String> {
    let remaining = w.bytes.len().saturating_sub(w.pos);
    if len as usize > remaining {
        return Err(format!(
            "element ({group:04X},{element:04X}) at byte {start} claims {len} bytes but only {remaining} remain"
        ));
    }
    w.pos += len as usize;
    Ok(())
}

/// RLE fragments are checked before decoding: the RLE decoder trusts the segment count in
/// each fragment header (allocating for up to 2^32 segments) and indexes past the end of a
/// segment that decodes short. One fragment per frame, each with the expected number of
/// segments, each decoding to at least `needed` (rows x columns) bytes.
pub(crate) fn check_rle(
    root: &Obj,
    frames: usize,
    needed: usize,
    expected_segments: usize,
) -> Result<(), String> {
    let Some(fragments) = root.get(tags::PIXEL_DATA).and_then(|e| e.fragments()) else {
        return Err("RLE transfer syntax but the pixel data is not encapsulated".into());
    };
    if fragments.len() < frames {
        return Err(format!(
            "{} RLE fragments for {frames} frames",
            fragments.len()
        ));
    }
    for (f, frag) in fragments.iter().take(frames).enumerate() {
        let word = |i: usize| -> Option<usize> {
            let b: [u8; 4] = frag.get(4 * i..4 * i + 4)?.try_into().ok()?;
            Some(u32::from_le_bytes(b) as usize)
        };
        let n = word(0).ok_or_else(|| format!("frame {f}: RLE header cut off"))?;
        if n != expected_segments || frag.len() < 64 {
            return Err(format!(
                "frame {f}: {n} RLE segments, expected {expected_segments}"
            ));
        }
        for s in 0..n {
            let start = word(1 + s).unwrap_or(0);
            let end = if s + 1 < n {
                word(2 + s).unwrap_or(0)
            } else {
                frag.len()
            };
            let seg = frag
                .get(start..end)
                .filter(|_| start >= 64)
                .ok_or_else(|| format!("frame {f}: bad RLE segment offsets"))?;
            let produced = packbits_len(seg, needed);
            if produced < needed {
                return Err(format!(
                    "frame {f}: RLE segment {s} decodes to {produced} bytes, needs {needed}"
                ));
            }
        }
    }
    Ok(())
}

/// Bytes a PackBits segment decodes to, counting no further than `limit`.
fn packbits_len(seg: &[u8], limit: usize) -> usize {
    let (mut p, mut out) = (0usize, 0usize);
    while let (Some(&b), true) = (seg.get(p), out < limit) {
        let n = b as i8;
        p += 1;
        if n >= 0 {
            let run = n as usize + 1;
            out += run.min(seg.len().saturating_sub(p));
            p += run;
        } else if n != -128 {
            if p >= seg.len() {
                break;
            }
            out += 1 + n.unsigned_abs() as usize;
            p += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::check_lengths;

    fn explicit(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&tag.0.to_le_bytes());
        v.extend_from_slice(&tag.1.to_le_bytes());
        v.extend_from_slice(vr);
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn implicit_command_set_is_checked_for_lengths_and_depth() {
        use super::check_implicit_dataset;
        // (0000,0100) CommandField US = 1, then (0000,0700) claiming 1 GB.
        let mut cmd = vec![0x00, 0x00, 0x00, 0x01, 2, 0, 0, 0, 1, 0];
        assert_eq!(check_implicit_dataset(&cmd), Ok(()));
        cmd.extend_from_slice(&[0x00, 0x00, 0x00, 0x07]);
        cmd.extend_from_slice(&1_000_000_000u32.to_le_bytes());
        assert!(check_implicit_dataset(&cmd)
            .unwrap_err()
            .contains("(0000,0700)"));
        // 1000 nested undefined-length sequences (implicit VR: undefined length = sequence).
        let mut deep = Vec::new();
        for _ in 0..1000 {
            deep.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, 0xFF, 0xFF, 0xFF, 0xFF]);
            deep.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(check_implicit_dataset(&deep)
            .unwrap_err()
            .contains("nest more than 64"));
    }

    #[test]
    fn huge_claim_is_caught_and_honest_file_passes() {
        let mut body = b"DICM".to_vec();
        body.extend(explicit((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0"));
        body.extend(explicit((0x0010, 0x0010), b"PN", b"DOE^J"));
        assert_eq!(check_lengths(&body), Ok(()));
        // Pixel data claiming 3 GB with 4 bytes present.
        body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        body.extend_from_slice(&3_000_000_000u32.to_le_bytes());
        body.extend_from_slice(&[1, 2, 3, 4]);
        let err = check_lengths(&body).unwrap_err();
        assert!(
            err.contains("(7FE0,0010)") && err.contains("3000000000"),
            "{err}"
        );
    }

    #[test]
    fn unknown_vr_is_read_with_a_long_length_like_the_parser_does() {
        let mut body = b"DICM".to_vec();
        body.extend(explicit((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0"));
        body.extend_from_slice(&[0x18, 0x00, 0x39, 0x05, 0, 0, 0, 1]);
        body.extend_from_slice(&3_951_369_912u32.to_le_bytes());
        assert!(check_lengths(&body).unwrap_err().contains("(0018,0539)"));
    }

    #[test]
    fn implicit_vr_sequence_is_walked_as_the_dictionary_says() {
        // ReferencedSeriesSequence (SQ by the dictionary) whose 16 bytes do not start with an
        // item tag; inside, an element claims 1.9 GB. The parser reads it as a sequence.
        let mut body = b"DICM".to_vec();
        body.extend(explicit((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2\0"));
        body.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, 16, 0, 0, 0]);
        body.extend_from_slice(&[0x08, 0x00, 0x18, 0x00]);
        body.extend_from_slice(&1_900_000_000u32.to_le_bytes());
        body.extend_from_slice(&[0; 8]);
        let err = check_lengths(&body).unwrap_err();
        assert!(
            err.contains("(0008,0018)") && err.contains("1900000000"),
            "{err}"
        );
        // The same bytes under a tag that is not a sequence are one opaque value: fine.
        let at = body.len() - 24;
        body[at..at + 4].copy_from_slice(&[0x09, 0x00, 0x10, 0x10]);
        assert_eq!(check_lengths(&body), Ok(()));
    }

    #[test]
    fn odd_fffe_element_is_checked_as_a_value() {
        let mut body = b"DICM".to_vec();
        body.extend(explicit((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0"));
        body.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF7]);
        assert!(check_lengths(&body).unwrap_err().contains("(FFFE,FFFF)"));
    }

    #[test]
    fn a_sequence_delimiter_where_an_item_is_expected_has_its_length_ignored() {
        // Implicit VR: a sequence with one empty item, closed by a sequence delimiter that
        // declares 0x53 bytes. The parser (expecting an item header there) ignores them and
        // reads the next element right behind the delimiter: one claiming 4 GB.
        let mut body = b"DICM".to_vec();
        body.extend(explicit((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2\0"));
        body.extend_from_slice(&[0x08, 0x00, 0x12, 0x21, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        body.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0x53, 0, 0, 0]);
        body.extend_from_slice(&[0x00, 0x08, 0x00, 0x15, 0x92, 0xFF, 0xFF, 0xFF]);
        body.extend_from_slice(&[0u8; 0x60]);
        let err = check_lengths(&body).unwrap_err();
        assert!(err.contains("(0800,1500)"), "{err}");
    }

    #[test]
    fn a_short_binary_value_leaves_the_stream_where_the_parser_leaves_it() {
        // Implicit VR: (0000,0000) is UL by the dictionary; 3 bytes declared, none read, so
        // the next header starts 3 bytes early, where a 4 GB claim sits.
        let mut body = b"DICM".to_vec();
        body.extend(explicit((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2\0"));
        body.extend_from_slice(&[0, 0, 0, 0, 3, 0, 0, 0]);
        body.extend_from_slice(&[0x08, 0x00, 0x10, 0x00, 0xF0, 0xFF, 0xFF, 0xF0, 0]);
        body.extend_from_slice(&[0u8; 16]);
        let err = check_lengths(&body).unwrap_err();
        assert!(
            err.contains("(0008,0010)") || err.contains("claims"),
            "{err}"
        );
    }

    #[test]
    fn delimiter_with_a_length_shifts_the_stream_as_in_the_parser() {
        let mut body = b"DICM".to_vec();
        body.extend(explicit((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2\0"));
        // (FFFE,E0DD) declaring 2 bytes, then a header that only parses after skipping them.
        body.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 2, 0, 0, 0, 0x08, 0x00]);
        body.extend_from_slice(&[0x15, 0x92, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF]);
        assert!(check_lengths(&body).unwrap_err().contains("(9215,FFFF)"));
    }
}
