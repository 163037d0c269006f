//! DICOM networking on dicom-ul: the DIMSE command sets we build ourselves ([`dimse`]), the
//! syntaxes we accept ([`syntax`]), the storage service provider ([`scp`]) with its defences
//! against hostile peers (bounded PDU reading, [`pdu`]; the first-PDU check, [`gate`];
//! connection slots, [`slots`]; time limits, [`deadlines`]; who may associate, [`access`]) and the storage user that sends
//! results ([`scu`]); socket options for speed ([`tcp`]).

pub mod access;
pub mod deadlines;
pub mod dimse;
pub mod gate;
pub mod pdu;
pub mod scp;
pub mod scu;
pub mod slots;
pub mod syntax;
pub mod tcp;
