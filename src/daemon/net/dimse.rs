//! DIMSE command sets for C-STORE and C-ECHO, built and parsed here because dicom-ul stops at
//! the upper layer. Commands are always Implicit VR Little Endian (PS3.7 6.3.1).

use crate::daemon::DaemonError;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// C-STORE-RQ.
pub const C_STORE_RQ: u16 = 0x0001;
/// C-STORE-RSP.
pub const C_STORE_RSP: u16 = 0x8001;
/// C-ECHO-RQ.
pub const C_ECHO_RQ: u16 = 0x0030;
/// C-ECHO-RSP.
pub const C_ECHO_RSP: u16 = 0x8030;
/// CommandDataSetType value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;

/// DIMSE status codes we send or interpret.
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: out of resources (the spool disk is full); the sender may retry later.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (e.g. no SeriesInstanceUID).
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand (the bytes are not a DICOM data set).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Processing failure (an error on our side).
    pub const PROCESSING_FAILURE: u16 = 0x0110;

    /// Whether a C-STORE failure is worth retrying later (out of resources, or a warning-free
    /// refusal class the peer may lift); everything else is permanent for that object.
    pub fn is_transient(code: u16) -> bool {
        (code & 0xFF00) == 0xA700 || code == PROCESSING_FAILURE
    }

    /// Success or warning (0xB000 family, 0x0107, 0x0116): the peer has the object.
    pub fn is_stored(code: u16) -> bool {
        code == SUCCESS || (code & 0xF000) == 0xB000 || code == 0x0107 || code == 0x0116
    }
}

const COMMAND_FIELD: Tag = Tag(0x0000, 0x0100);
const AFFECTED_SOP_CLASS: Tag = Tag(0x0000, 0x0002);
const MESSAGE_ID: Tag = Tag(0x0000, 0x0110);
const MESSAGE_ID_RESPONDED: Tag = Tag(0x0000, 0x0120);
const PRIORITY: Tag = Tag(0x0000, 0x0700);
const DATA_SET_TYPE: Tag = Tag(0x0000, 0x0800);
const STATUS: Tag = Tag(0x0000, 0x0900);
const AFFECTED_SOP_INSTANCE: Tag = Tag(0x0000, 0x1000);

/// The fields of a received command that matter to us.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// C-STORE-RQ, C-ECHO-RQ, ...
    pub field: u16,
    /// Message ID (requests) or the ID responded to (responses).
    pub message_id: u16,
    /// Affected SOP class UID (trailing padding removed).
    pub sop_class: String,
    /// Affected SOP instance UID (trailing padding removed).
    pub sop_instance: String,
    /// Whether a data set follows.
    pub has_data_set: bool,
    /// Status (responses only).
    pub status: Option<u16>,
}

fn uid_value(uid: &str) -> PrimitiveValue {
    let mut s = uid.trim_end_matches(['\0', ' ']).to_string();
    if s.len() % 2 == 1 {
        s.push('\0');
    }
    PrimitiveValue::from(s)
}

fn encode(elements: Vec<DataElement<InMemDicomObject>>) -> Result<Vec<u8>, DaemonError> {
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(160);
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| DaemonError::Net(format!("encoding a command set: {e}")))?;
    Ok(out)
}

/// A C-STORE-RSP or C-ECHO-RSP (`response_field`) for request `rq` with `status`.
pub fn response(
    rq: &Command,
    response_field: u16,
    status_code: u16,
) -> Result<Vec<u8>, DaemonError> {
    let mut el = vec![
        DataElement::new(COMMAND_FIELD, VR::US, PrimitiveValue::from(response_field)),
        DataElement::new(
            MESSAGE_ID_RESPONDED,
            VR::US,
            PrimitiveValue::from(rq.message_id),
        ),
        DataElement::new(DATA_SET_TYPE, VR::US, PrimitiveValue::from(NO_DATA_SET)),
        DataElement::new(STATUS, VR::US, PrimitiveValue::from(status_code)),
    ];
    if !rq.sop_class.is_empty() {
        el.push(DataElement::new(
            AFFECTED_SOP_CLASS,
            VR::UI,
            uid_value(&rq.sop_class),
        ));
    }
    if !rq.sop_instance.is_empty() {
        el.push(DataElement::new(
            AFFECTED_SOP_INSTANCE,
            VR::UI,
            uid_value(&rq.sop_instance),
        ));
    }
    encode(el)
}

/// A C-STORE-RQ for one instance, followed by its data set.
pub fn store_request(
    message_id: u16,
    sop_class: &str,
    sop_instance: &str,
) -> Result<Vec<u8>, DaemonError> {
    encode(vec![
        DataElement::new(AFFECTED_SOP_CLASS, VR::UI, uid_value(sop_class)),
        DataElement::new(COMMAND_FIELD, VR::US, PrimitiveValue::from(C_STORE_RQ)),
        DataElement::new(MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
        DataElement::new(AFFECTED_SOP_INSTANCE, VR::UI, uid_value(sop_instance)),
    ])
}

/// Parses a complete command set (all its fragments joined).
pub fn parse(bytes: &[u8]) -> Result<Command, DaemonError> {
    // Peer bytes: lengths and nesting are bounded before the parser allocates or recurses.
    crate::dicom::precheck::check_implicit_dataset(bytes)
        .map_err(|e| DaemonError::Net(format!("unreadable command set: {e}")))?;
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| DaemonError::Net(format!("unreadable command set: {e}")))?;
    let int = |tag: Tag| obj.element(tag).ok().and_then(|e| e.to_int::<u16>().ok());
    let text = |tag: Tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    let field = int(COMMAND_FIELD)
        .ok_or_else(|| DaemonError::Net("command set without CommandField".into()))?;
    let is_response = field & 0x8000 != 0;
    let message_id = if is_response {
        int(MESSAGE_ID_RESPONDED)
    } else {
        int(MESSAGE_ID)
    }
    .unwrap_or(0);
    Ok(Command {
        field,
        message_id,
        sop_class: text(AFFECTED_SOP_CLASS),
        sop_instance: text(AFFECTED_SOP_INSTANCE),
        has_data_set: int(DATA_SET_TYPE)
            .map(|v| v != NO_DATA_SET)
            .unwrap_or(false),
        status: int(STATUS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_request_and_response_round_trip() {
        let rq_bytes = store_request(7, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.45").expect("encode");
        let rq = parse(&rq_bytes).expect("parse");
        assert_eq!(
            (rq.field, rq.message_id, rq.has_data_set),
            (C_STORE_RQ, 7, true)
        );
        assert_eq!(rq.sop_instance, "1.2.3.45");
        assert_eq!(rq.sop_class, "1.2.840.10008.5.1.4.1.1.4");
        let rsp = parse(&response(&rq, C_STORE_RSP, status::OUT_OF_RESOURCES).expect("encode"))
            .expect("parse");
        assert_eq!(
            (rsp.field, rsp.message_id, rsp.has_data_set),
            (C_STORE_RSP, 7, false)
        );
        assert_eq!(rsp.status, Some(status::OUT_OF_RESOURCES));
        assert_eq!(rsp.sop_instance, "1.2.3.45");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn status_classes() {
        assert!(status::is_transient(0xA700) && status::is_transient(0xA701));
        assert!(!status::is_transient(0xC000) && !status::is_transient(0xA900));
        assert!(status::is_stored(0) && status::is_stored(0xB007) && !status::is_stored(0xA900));
    }
}
