//! Who may associate, and when we refuse everyone: AE-title allow-lists (checked by dicom-ul
//! during negotiation), transient rejections when a connection limit is reached or the spool
//! disk is nearly full (answered before any negotiation work), and the abort sent to a peer
//! whose PDUs break the rules. AE titles are peer text and reach the log only escaped.

use crate::text::printable;
use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderASCEReason, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, UserIdentity,
};
use dicom_ul::Pdu;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a refused or aborted peer gets to read our answer before the socket closes.
const LINGER: Duration = Duration::from_millis(500);

/// Bytes read and thrown away from a refused peer while it reads our answer.
const LINGER_BYTES: u64 = 1 << 20;

/// Calling and called AE-title allow-lists.
#[derive(Debug, Clone)]
pub struct AeAllowList {
    /// Allowed calling AE titles; empty: any.
    pub calling: Vec<String>,
    /// Accepted called AE titles; empty: our own only.
    pub called: Vec<String>,
}

impl AccessControl for AeAllowList {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling: &str,
        called: &str,
        _user: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let calling = calling.trim();
        let called = called.trim();
        if !self.calling.is_empty() && !self.calling.iter().any(|a| a.trim() == calling) {
            log::warn!(
                "association refused: calling AE title \"{}\" is not allowed",
                printable(calling)
            );
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        let ok = if self.called.is_empty() {
            called == this_ae_title.trim()
        } else {
            self.called.iter().any(|a| a.trim() == called)
        };
        if !ok {
            log::warn!(
                "association refused: called AE title \"{}\" is not ours",
                printable(called)
            );
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        Ok(())
    }
}

/// Why we refuse an association before negotiating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_associations` are already established.
    TooManyAssociations,
    /// `max_negotiating` connections have not finished their request yet.
    TooManyNegotiating,
    /// The peer's address has `max_connections_per_address` connections open.
    TooManyFromAddress,
    /// The spool file system is nearly full.
    DiskNearlyFull,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::TooManyAssociations => "max_associations are established",
            Refusal::TooManyNegotiating => "max_negotiating connections are still negotiating",
            Refusal::TooManyFromAddress => "max_connections_per_address are open from this address",
            Refusal::DiskNearlyFull => "the spool disk is nearly full",
        })
    }
}

/// Reads the A-ASSOCIATE-RQ (at most 64 KiB, within 2 s in all) and answers with a transient
/// A-ASSOCIATE-RJ, so the sender knows to retry later instead of seeing a dropped connection.
pub fn refuse(mut stream: TcpStream, why: Refusal) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 6];
    if read_by(&mut stream, &mut head, deadline) && head[0] == 0x01 {
        let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        // discard the request body (a real A-ASSOCIATE-RQ is far smaller than 64 KiB)
        let mut body = vec![0u8; len.min(super::pdu::ASSOCIATE_MAX as usize)];
        let _ = read_by(&mut stream, &mut body, deadline);
    }
    let reason = match why {
        Refusal::TooManyAssociations
        | Refusal::TooManyNegotiating
        | Refusal::TooManyFromAddress => {
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded
        }
        Refusal::DiskNearlyFull => {
            AssociationRJServiceProviderPresentationReason::TemporaryCongestion
        }
    };
    let pdu = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(reason),
    });
    answer_and_close(&stream, &pdu);
}

/// Reads exactly `buf.len()` bytes before `deadline`; false if the peer is slower or closes.
fn read_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> bool {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    true
}

/// Answers a first PDU that broke the rules without reading it: an A-ASSOCIATE-RJ (permanent,
/// "no reason given") for an A-ASSOCIATE-RQ out of bounds, an A-ABORT for any other PDU.
pub fn refuse_first_pdu(stream: &TcpStream, was_associate_rq: bool) {
    let pdu = if was_associate_rq {
        Pdu::AssociationRJ(AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceProviderASCE(
                AssociationRJServiceProviderASCEReason::NoReasonGiven,
            ),
        })
    } else {
        Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(AbortRQServiceProviderReason::UnexpectedPdu),
        }
    };
    answer_and_close(stream, &pdu);
}

/// Sends an A-ABORT from the service provider for `reason`, then closes.
pub fn abort(stream: &TcpStream, reason: AbortRQServiceProviderReason) {
    let pdu = Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    };
    answer_and_close(stream, &pdu);
}

/// Writes `pdu`, stops sending, and reads (and drops) what the peer still sends for a moment,
/// bounded in time and bytes, so that closing with unread data does not reset the connection
/// before the peer has read the answer.
pub fn answer_and_close(stream: &TcpStream, pdu: &Pdu) {
    let mut buf = Vec::new();
    let mut s = stream;
    let _ = s.set_write_timeout(Some(LINGER));
    if dicom_ul::write_pdu(&mut buf, pdu).is_ok() {
        let _ = s.write_all(&buf);
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 16 * 1024];
    let mut drained = 0u64;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n as u64,
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists() {
        let open = AeAllowList {
            calling: vec![],
            called: vec![],
        };
        assert!(open.check_access("CINESEG", "ANY", "CINESEG", None).is_ok());
        assert_eq!(
            open.check_access("CINESEG", "ANY", "OTHER", None),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        let strict = AeAllowList {
            calling: vec!["SCANNER".into()],
            called: vec!["CINESEG".into(), "ALIAS".into()],
        };
        assert!(strict
            .check_access("CINESEG", "SCANNER ", "ALIAS", None)
            .is_ok());
        assert_eq!(
            strict.check_access("CINESEG", "INTRUDER", "CINESEG", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
    }
}
