//! DICOM networking on dicom-ul: the DIMSE command sets we build ourselves ([`dimse`]), the
//! syntaxes we accept ([`syntax`]), the storage service provider ([`scp`]) and the storage
//! user that sends results ([`scu`]).

pub mod access;
pub mod dimse;
pub mod scp;
pub mod scu;
pub mod syntax;
