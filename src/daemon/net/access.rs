//! Who may associate, and when we refuse everyone: AE-title allow-lists (checked by dicom-ul
//! during negotiation) and transient rejections when we are at the association limit or the
//! spool disk is nearly full, answered before any negotiation work.

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, UserIdentity,
};
use dicom_ul::Pdu;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
            log::warn!("association refused: calling AE title {calling:?} is not allowed");
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        let ok = if self.called.is_empty() {
            called == this_ae_title.trim()
        } else {
            self.called.iter().any(|a| a.trim() == called)
        };
        if !ok {
            log::warn!("association refused: called AE title {called:?} is not ours");
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        Ok(())
    }
}

/// Why we refuse an association before negotiating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_associations` are already open.
    TooManyAssociations,
    /// The spool file system is nearly full.
    DiskNearlyFull,
}

/// Reads the A-ASSOCIATE-RQ (bounded in size and time) and answers with a transient
/// A-ASSOCIATE-RJ, so the sender knows to retry later instead of seeing a dropped connection.
pub fn refuse(mut stream: TcpStream, why: Refusal) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 6];
    if stream.read_exact(&mut head).is_ok() && head[0] == 0x01 {
        let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as u64;
        // discard the request body, at most 64 KiB (a real A-ASSOCIATE-RQ is far smaller)
        let _ = std::io::copy(
            &mut (&mut stream).take(len.min(65536)),
            &mut std::io::sink(),
        );
    }
    let reason = match why {
        Refusal::TooManyAssociations => {
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
    let mut buf = Vec::new();
    if dicom_ul::write_pdu(&mut buf, &pdu).is_ok() {
        let _ = stream.write_all(&buf);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
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
