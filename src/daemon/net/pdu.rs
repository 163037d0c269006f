//! Reading upper-layer PDUs with a size limit checked on the 6-byte header, before a single
//! byte of the body is buffered. dicom-ul checks `max_pdu` only in strict mode, and strict mode
//! applies the P-DATA limit to the A-ASSOCIATE-RQ too (which may legitimately be larger than a
//! small `max_pdu`); this reader gives each PDU type its own bound instead, and grows its buffer
//! only by bytes actually received, never by the length a peer claims.

use bytes::BytesMut;
use dicom_ul::pdu::{AbortRQServiceProviderReason, MAXIMUM_PDU_SIZE};
use dicom_ul::Pdu;
use std::io::Read;

/// Bytes of a PDU header: type, reserved, 32-bit big-endian length.
pub const HEADER_BYTES: usize = 6;

/// Largest A-ASSOCIATE-RQ or -AC accepted. dcmtk's `storescu` proposing its 120-odd default
/// storage classes sends about 11 KiB; 64 KiB leaves room for any real modality and still
/// fits in a default Linux socket receive buffer, so the whole request can be peeked at.
pub const ASSOCIATE_MAX: u32 = 64 * 1024;

/// Smallest A-ASSOCIATE-RQ body: the fixed fields before the variable items.
pub const ASSOCIATE_MIN: u32 = 68;

/// Length of the A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT bodies (PS3.8 9.3).
const SHORT_PDU: u32 = 4;

/// Largest read issued at once while filling a PDU: memory follows the bytes received.
const CHUNK: usize = 64 * 1024;

/// Why a PDU was not read.
#[derive(Debug, thiserror::Error)]
pub enum PduError {
    /// The type byte names no upper-layer PDU.
    #[error("unknown PDU type 0x{0:02x}")]
    UnknownType(u8),
    /// The header claims more than the bound of its type.
    #[error("{kind} PDU claims {len} bytes, over its limit of {limit}")]
    TooLong {
        /// The PDU type's name.
        kind: &'static str,
        /// The claimed body length.
        len: u32,
        /// The bound for this type.
        limit: u32,
    },
    /// The header claims fewer bytes than the fixed fields of its type.
    #[error("{kind} PDU claims {len} bytes, fewer than its fixed fields")]
    TooShort {
        /// The PDU type's name.
        kind: &'static str,
        /// The claimed body length.
        len: u32,
    },
    /// The body does not parse as its type.
    #[error("{kind} PDU is malformed: {reason}")]
    Malformed {
        /// The PDU type's name.
        kind: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// The peer closed the connection between two PDUs.
    #[error("connection closed")]
    Closed,
    /// The peer closed the connection inside a PDU.
    #[error("connection closed after {got} of {want} bytes of a PDU")]
    Truncated {
        /// Bytes of the PDU (header included) received.
        got: usize,
        /// Bytes the header announced (header included).
        want: usize,
    },
    /// The socket failed or timed out.
    #[error("reading a PDU: {0}")]
    Io(#[from] std::io::Error),
}

impl PduError {
    /// The A-ABORT reason that tells the peer what was wrong, where the PDU itself was at fault.
    pub fn abort_reason(&self) -> Option<AbortRQServiceProviderReason> {
        match self {
            PduError::UnknownType(_) => Some(AbortRQServiceProviderReason::UnrecognizedPdu),
            PduError::TooLong { .. } | PduError::TooShort { .. } | PduError::Malformed { .. } => {
                Some(AbortRQServiceProviderReason::InvalidPduParameter)
            }
            PduError::Closed | PduError::Truncated { .. } | PduError::Io(_) => None,
        }
    }
}

/// The bounds a reader applies, per PDU type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest P-DATA-TF body: the maximum length we advertised in the A-ASSOCIATE-AC.
    pub max_pdata: u32,
}

impl Limits {
    /// The name, smallest and largest body length of PDU type `ty`.
    pub fn bounds(&self, ty: u8) -> Result<(&'static str, u32, u32), PduError> {
        Ok(match ty {
            0x01 => ("A-ASSOCIATE-RQ", ASSOCIATE_MIN, ASSOCIATE_MAX),
            0x02 => ("A-ASSOCIATE-AC", ASSOCIATE_MIN, ASSOCIATE_MAX),
            0x03 => ("A-ASSOCIATE-RJ", SHORT_PDU, SHORT_PDU),
            0x04 => ("P-DATA-TF", 0, self.max_pdata),
            0x05 => ("A-RELEASE-RQ", SHORT_PDU, SHORT_PDU),
            0x06 => ("A-RELEASE-RP", SHORT_PDU, SHORT_PDU),
            0x07 => ("A-ABORT", SHORT_PDU, SHORT_PDU),
            other => return Err(PduError::UnknownType(other)),
        })
    }

    /// Checks a header; returns the type and the body length it announces.
    pub fn check_header(&self, head: &[u8]) -> Result<(u8, u32), PduError> {
        let Some(&[ty, _, a, b, c, d]) = head.first_chunk::<HEADER_BYTES>() else {
            return Err(PduError::Truncated {
                got: head.len(),
                want: HEADER_BYTES,
            });
        };
        let len = u32::from_be_bytes([a, b, c, d]);
        let (kind, min, max) = self.bounds(ty)?;
        if len > max {
            return Err(PduError::TooLong {
                kind,
                len,
                limit: max,
            });
        }
        if len < min {
            return Err(PduError::TooShort { kind, len });
        }
        Ok((ty, len))
    }
}

/// Reads one PDU from `r`. `buf` holds bytes already read past the previous PDU (dicom-ul's
/// association buffer); on return it holds none of this PDU and nothing beyond it that was not
/// there before. Nothing past the header is read before the header passed [`Limits`].
pub fn read_pdu<R: Read>(r: &mut R, buf: &mut BytesMut, limits: &Limits) -> Result<Pdu, PduError> {
    if buf.is_empty() && fill(r, buf, 1)? == 0 {
        return Err(PduError::Closed);
    }
    fill_exact(r, buf, HEADER_BYTES)?;
    let (_, len) = limits.check_header(&buf[..HEADER_BYTES])?;
    let total = HEADER_BYTES + len as usize;
    fill_exact(r, buf, total)?;
    let whole = buf.split_to(total);
    parse(&whole, limits)
}

/// Parses one whole PDU (header and body) already in memory, with the same bounds as
/// [`read_pdu`]. dicom-ul's parser is run without its own length check (which would apply the
/// P-DATA limit to every type) and inside `catch_unwind`, so a parser bug is a typed error.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Pdu, PduError> {
    let head = bytes.get(..HEADER_BYTES).ok_or(PduError::Truncated {
        got: bytes.len(),
        want: HEADER_BYTES,
    })?;
    let (ty, len) = limits.check_header(head)?;
    let want = HEADER_BYTES + len as usize;
    let Some(whole) = bytes.get(..want) else {
        return Err(PduError::Truncated {
            got: bytes.len(),
            want,
        });
    };
    let (kind, _, _) = limits.bounds(ty)?;
    let parsed = std::panic::catch_unwind(|| dicom_ul::read_pdu(whole, MAXIMUM_PDU_SIZE, false));
    match parsed {
        Ok(Ok(Some(pdu))) => Ok(pdu),
        Ok(Ok(None)) => Err(PduError::Malformed {
            kind,
            reason: "incomplete".into(),
        }),
        Ok(Err(e)) => Err(PduError::Malformed {
            kind,
            reason: crate::text::printable(&e.to_string()).into_owned(),
        }),
        Err(_) => Err(PduError::Malformed {
            kind,
            reason: "the PDU parser panicked".into(),
        }),
    }
}

/// Reads until `buf` holds `want` bytes; a close before that is [`PduError::Truncated`].
fn fill_exact<R: Read>(r: &mut R, buf: &mut BytesMut, want: usize) -> Result<(), PduError> {
    while buf.len() < want {
        if fill(r, buf, want)? == 0 {
            return Err(PduError::Truncated {
                got: buf.len(),
                want,
            });
        }
    }
    Ok(())
}

/// One read of at most [`CHUNK`] bytes and never past `want` bytes in `buf`; returns the
/// count (0: end of stream). Interrupted reads are retried.
fn fill<R: Read>(r: &mut R, buf: &mut BytesMut, want: usize) -> Result<usize, PduError> {
    let start = buf.len();
    // callers ask only while `buf` is short of `want`, so `n` is at least 1
    let n = want.saturating_sub(start).min(CHUNK);
    buf.resize(start + n, 0);
    loop {
        match r.read(&mut buf[start..]) {
            Ok(got) => {
                buf.truncate(start + got);
                return Ok(got);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(start);
                return Err(e.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::{PDataValue, PDataValueType};
    use std::io::Cursor;

    const LIMITS: Limits = Limits { max_pdata: 1024 };

    fn pdata(body_bytes: usize) -> Vec<u8> {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: 1,
                value_type: PDataValueType::Data,
                is_last: true,
                data: vec![7u8; body_bytes],
            }],
        };
        let mut out = Vec::new();
        dicom_ul::write_pdu(&mut out, &pdu).expect("write");
        out
    }

    #[test]
    fn each_type_has_its_own_bound() {
        let h = |ty: u8, len: u32| {
            let mut v = vec![ty, 0];
            v.extend_from_slice(&len.to_be_bytes());
            LIMITS.check_header(&v)
        };
        assert!(
            h(0x01, 20_000).is_ok(),
            "an A-ASSOCIATE-RQ may exceed max_pdu"
        );
        assert!(matches!(
            h(0x01, 0xffff_ffff),
            Err(PduError::TooLong { .. })
        ));
        assert!(matches!(h(0x01, 10), Err(PduError::TooShort { .. })));
        assert!(h(0x04, 1024).is_ok());
        assert!(matches!(
            h(0x04, 1025),
            Err(PduError::TooLong {
                kind: "P-DATA-TF",
                len: 1025,
                limit: 1024
            })
        ));
        for ty in [0x03, 0x05, 0x06, 0x07] {
            assert!(h(ty, 4).is_ok());
            assert!(matches!(h(ty, 0xffff_fff0), Err(PduError::TooLong { .. })));
        }
        assert!(matches!(h(0x09, 4), Err(PduError::UnknownType(9))));
        assert!(matches!(
            LIMITS.check_header(&[4, 0, 0]),
            Err(PduError::Truncated { got: 3, want: 6 })
        ));
    }

    #[test]
    fn reads_one_pdu_at_a_time_and_never_past_it() {
        let mut wire = pdata(100);
        let first = wire.len();
        wire.extend_from_slice(&pdata(200));
        let mut r = Cursor::new(wire.clone());
        let mut buf = BytesMut::new();
        let p = read_pdu(&mut r, &mut buf, &LIMITS).expect("first");
        assert!(matches!(&p, Pdu::PData { data } if data[0].data.len() == 100));
        assert_eq!(r.position() as usize, first, "read exactly one PDU");
        assert!(buf.is_empty());
        // bytes already buffered (as dicom-ul leaves them after negotiation) are used first
        let mut r = Cursor::new(wire[10..].to_vec());
        let mut buf = BytesMut::from(&wire[..10]);
        assert!(read_pdu(&mut r, &mut buf, &LIMITS).is_ok());
        assert!(read_pdu(&mut r, &mut buf, &LIMITS).is_ok());
        assert!(matches!(
            read_pdu(&mut r, &mut buf, &LIMITS),
            Err(PduError::Closed)
        ));
    }

    #[test]
    fn an_oversized_pdu_is_refused_on_its_header() {
        let wire = pdata(2000);
        let mut r = Cursor::new(wire);
        let mut buf = BytesMut::new();
        let e = read_pdu(&mut r, &mut buf, &LIMITS).unwrap_err();
        assert!(matches!(e, PduError::TooLong { .. }), "{e}");
        assert_eq!(r.position(), HEADER_BYTES as u64, "the body was not read");
        assert!(e.abort_reason().is_some());
        let mut r = Cursor::new(pdata(100)[..50].to_vec());
        assert!(matches!(
            read_pdu(&mut r, &mut BytesMut::new(), &LIMITS),
            Err(PduError::Truncated { got: 50, .. })
        ));
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        // a P-DATA item claiming more than its PDU holds
        let mut bad = vec![0x04, 0, 0, 0, 0, 8, 0, 0, 0, 0xff, 1, 3, 0, 0];
        assert!(matches!(
            parse(&bad, &LIMITS),
            Err(PduError::Malformed {
                kind: "P-DATA-TF",
                ..
            })
        ));
        bad.truncate(8);
        assert!(matches!(
            parse(&bad, &LIMITS),
            Err(PduError::Truncated { .. })
        ));
    }
}
