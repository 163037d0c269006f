//! Fuzz the upper-layer PDU reader the SCP uses on every association
//! (`cineseg::daemon::net::pdu::read_pdu`): any byte stream must give PDUs or a typed error,
//! never a panic, and no allocation past the bounds (libFuzzer's -malloc_limit_mb catches
//! those). The stream is read PDU after PDU, as on an association, with a small `max_pdu` and
//! with the largest one the config allows; the reader must never consume more bytes than the
//! PDUs it returned, and a PDU it returns must respect its type's bound.
#![no_main]

use cineseg::daemon::net::pdu::{read_pdu, Limits, PduError, HEADER_BYTES};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    for max_pdata in [1024u32, 1 << 24] {
        let limits = Limits { max_pdata };
        let mut r = Cursor::new(data);
        let mut buf = bytes::BytesMut::new();
        let mut consumed = 0usize;
        loop {
            match read_pdu(&mut r, &mut buf, &limits) {
                Ok(_) => {
                    let head = &data[consumed..consumed + HEADER_BYTES];
                    let (_, len) = limits.check_header(head).expect("a returned PDU had a good header");
                    consumed += HEADER_BYTES + len as usize;
                    assert_eq!(r.position() as usize, consumed, "read past the PDU");
                }
                // end of input, or a typed refusal (which ends an association)
                Err(PduError::Closed | PduError::Truncated { .. }) | Err(_) => break,
            }
        }
    }
});
