//! The first PDU of a connection, looked at before dicom-ul reads it. `TcpStream::peek` shows
//! the header without consuming it: a first PDU that is not an A-ASSOCIATE-RQ, or that claims
//! more than [`ASSOCIATE_MAX`] bytes, is refused on its 6 bytes, so nothing a peer claims is
//! ever buffered. The connection then waits, within its negotiation deadline, until the whole
//! request is in the socket buffer; only then does it compete for an association slot, so a
//! peer that sends half a request holds no slot.

use super::pdu::{Limits, PduError, ASSOCIATE_MAX, HEADER_BYTES};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Pause between two peeks while a request is still arriving.
const POLL: Duration = Duration::from_millis(20);

/// Why a connection never delivered a usable A-ASSOCIATE-RQ.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The first PDU is another type, or its header is out of bounds.
    #[error("first PDU refused: {0}")]
    Refused(PduError),
    /// The first PDU was not an A-ASSOCIATE-RQ.
    #[error("first PDU is {0}, not an A-ASSOCIATE-RQ")]
    NotAssociateRq(&'static str),
    /// The peer closed before sending a whole request.
    #[error("closed after {0} bytes, before a whole A-ASSOCIATE-RQ")]
    Closed(usize),
    /// The negotiation deadline passed first.
    #[error("no whole A-ASSOCIATE-RQ within the negotiation deadline ({0} bytes arrived)")]
    Deadline(usize),
    /// The socket failed.
    #[error("reading the A-ASSOCIATE-RQ: {0}")]
    Io(#[from] std::io::Error),
}

/// Waits until a whole, bounded A-ASSOCIATE-RQ is readable on `stream` (nothing is consumed)
/// and returns its body length. `limits` is the connection's; the request's own bound is
/// [`ASSOCIATE_MAX`] whatever `max_pdu` says.
pub fn await_associate_rq(
    stream: &TcpStream,
    limits: &Limits,
    deadline: Instant,
) -> Result<u32, GateError> {
    let mut head = [0u8; HEADER_BYTES];
    let mut seen = 0usize;
    let mut want = HEADER_BYTES;
    let mut body: Vec<u8> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(GateError::Deadline(seen));
        }
        stream.set_read_timeout(Some(left))?;
        let peeked = if want == HEADER_BYTES {
            stream.peek(&mut head)
        } else {
            stream.peek(&mut body)
        };
        let n = match peeked {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(GateError::Deadline(seen));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(GateError::Closed(seen));
        }
        // the type byte alone decides a wrong first PDU
        if head[0] != 0x01 {
            let kind = limits.bounds(head[0]).map_err(GateError::Refused)?.0;
            return Err(GateError::NotAssociateRq(kind));
        }
        if want == HEADER_BYTES && n == HEADER_BYTES {
            let (_, len) = limits.check_header(&head).map_err(GateError::Refused)?;
            debug_assert!(len <= ASSOCIATE_MAX);
            want = HEADER_BYTES + len as usize;
            body = vec![0u8; want];
            continue;
        }
        if n >= want {
            return Ok((want - HEADER_BYTES) as u32);
        }
        if n == seen {
            std::thread::sleep(POLL.min(left));
        }
        seen = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (s, _) = l.accept().expect("accept");
        (c, s)
    }

    const LIMITS: Limits = Limits { max_pdata: 1024 };

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(600)
    }

    #[test]
    fn a_whole_request_larger_than_max_pdu_passes_unconsumed() {
        let (mut c, s) = pair();
        let mut rq = vec![0x01, 0, 0, 0, 0x20, 0];
        rq.resize(HEADER_BYTES + 0x2000, 0x41);
        c.write_all(&rq).expect("write");
        assert_eq!(
            await_associate_rq(&s, &LIMITS, soon()).expect("whole"),
            0x2000
        );
        let mut back = vec![0u8; rq.len()];
        assert_eq!(s.peek(&mut back).expect("still there"), rq.len());
    }

    #[test]
    fn wrong_type_huge_claim_half_request_and_silence_are_refused() {
        let (mut c, s) = pair();
        c.write_all(&[0x04, 0, 0, 0, 0, 10]).expect("write");
        assert!(matches!(
            await_associate_rq(&s, &LIMITS, soon()),
            Err(GateError::NotAssociateRq("P-DATA-TF"))
        ));
        let (mut c, s) = pair();
        c.write_all(&[0x01, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3])
            .expect("write");
        assert!(matches!(
            await_associate_rq(&s, &LIMITS, soon()),
            Err(GateError::Refused(PduError::TooLong { .. }))
        ));
        let (mut c, s) = pair();
        c.write_all(&[0x01, 0, 0, 0, 1, 0, 1, 2, 3]).expect("write");
        let t0 = Instant::now();
        assert!(matches!(
            await_associate_rq(&s, &LIMITS, soon()),
            Err(GateError::Deadline(9))
        ));
        assert!(t0.elapsed() < Duration::from_secs(2));
        let (_c, s) = pair();
        assert!(matches!(
            await_associate_rq(&s, &LIMITS, soon()),
            Err(GateError::Deadline(0))
        ));
        let (c, s) = pair();
        drop(c);
        assert!(matches!(
            await_associate_rq(&s, &LIMITS, soon()),
            Err(GateError::Closed(0))
        ));
    }
}
