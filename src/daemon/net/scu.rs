//! The storage service user that sends our results to the destination PACS. One association per
//! result set; each file's outcome is classified as stored, worth retrying (network trouble,
//! out of resources, a transient association rejection) or permanent (the peer refuses the
//! object), so the sender can retry the former and dead-letter the latter.

use super::dimse::{self, status};
use super::syntax::{EXPLICIT_LE, IMPLICIT_LE};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What happened to one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The peer has it (success or warning status).
    Stored,
    /// Try again later.
    Transient(String),
    /// The peer will never take it as it is.
    Permanent(String),
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `host:port`.
    pub address: String,
    /// The peer's AE title.
    pub called: String,
    /// Ours.
    pub calling: String,
    /// Connection and response timeout.
    pub timeout: Duration,
}

struct Item {
    path: PathBuf,
    class: String,
    sop: String,
    obj: dicom_object::DefaultDicomObject,
}

/// Sends every file in one association; returns one outcome per file, in order.
pub fn send_files(peer: &Peer, files: &[PathBuf]) -> Vec<(PathBuf, Outcome)> {
    let mut out: Vec<(PathBuf, Outcome)> = Vec::with_capacity(files.len());
    let mut items = Vec::new();
    for f in files {
        match dicom_object::open_file(f) {
            Ok(obj) => {
                let class = obj
                    .meta()
                    .media_storage_sop_class_uid()
                    .trim_end_matches('\0')
                    .to_string();
                let sop = obj
                    .meta()
                    .media_storage_sop_instance_uid()
                    .trim_end_matches('\0')
                    .to_string();
                items.push(Item {
                    path: f.clone(),
                    class,
                    sop,
                    obj,
                });
            }
            Err(e) => out.push((
                f.clone(),
                Outcome::Permanent(format!("unreadable result file: {e}")),
            )),
        }
    }
    if items.is_empty() {
        return out;
    }
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(peer.calling.as_str())
        .called_ae_title(peer.called.as_str())
        .connection_timeout(peer.timeout)
        .read_timeout(peer.timeout)
        .write_timeout(peer.timeout);
    let mut classes: Vec<&str> = items.iter().map(|i| i.class.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    for c in &classes {
        opts = opts.with_presentation_context(*c, vec![EXPLICIT_LE, IMPLICIT_LE]);
    }
    let mut assoc = match opts.establish(peer.address.as_str()) {
        Ok(a) => a,
        Err(e) => {
            let msg = format!(
                "association with {} ({}) failed: {e}",
                peer.called, peer.address
            );
            let permanent = matches!(&e, dicom_ul::association::Error::Rejected { association_rj, .. } if association_rj.result == dicom_ul::pdu::AssociationRJResult::Permanent);
            for i in items {
                out.push((
                    i.path,
                    if permanent {
                        Outcome::Permanent(msg.clone())
                    } else {
                        Outcome::Transient(msg.clone())
                    },
                ));
            }
            return out;
        }
    };
    // Without these a Nagle-held last segment waited for the peer's delayed acknowledgement:
    // ~45 ms per object sent to dcmtk's storescp (see `super::tcp`).
    super::tcp::no_delay(assoc.inner_stream());
    let mut broken: Option<String> = None;
    for (n, i) in items.into_iter().enumerate() {
        if let Some(b) = &broken {
            out.push((i.path, Outcome::Transient(b.clone())));
            continue;
        }
        let pc = assoc
            .presentation_contexts()
            .iter()
            .find(|p| {
                p.abstract_syntax.trim_end_matches('\0') == i.class
                    && p.reason == PresentationContextResultReason::Acceptance
            })
            .cloned();
        let Some(pc) = pc else {
            out.push((
                i.path,
                Outcome::Permanent(format!(
                    "{} does not accept SOP class {}",
                    peer.called, i.class
                )),
            ));
            continue;
        };
        let result = (|| -> Result<u16, String> {
            let ts = TransferSyntaxRegistry
                .get(pc.transfer_syntax.trim_end_matches('\0'))
                .ok_or_else(|| format!("unknown transfer syntax {}", pc.transfer_syntax))?;
            let mut data = Vec::new();
            i.obj
                .write_dataset_with_ts(&mut data, ts)
                .map_err(|e| format!("encoding {}: {e}", i.path.display()))?;
            let cmd = dimse::store_request((n % 65535 + 1) as u16, &i.class, &i.sop)
                .map_err(|e| e.to_string())?;
            assoc
                .send(&Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id: pc.id,
                        value_type: PDataValueType::Command,
                        is_last: true,
                        data: cmd,
                    }],
                })
                .map_err(|e| format!("sending: {e}"))?;
            let mut w = assoc.send_pdata(pc.id);
            w.write_all(&data).map_err(|e| format!("sending: {e}"))?;
            w.finish().map_err(|e| format!("sending: {e}"))?;
            let mut cmd_bytes = Vec::new();
            loop {
                super::tcp::quick_ack(assoc.inner_stream());
                match assoc
                    .receive()
                    .map_err(|e| format!("waiting for the response: {e}"))?
                {
                    Pdu::PData { data } => {
                        for v in data {
                            cmd_bytes.extend_from_slice(&v.data);
                            if v.is_last && v.value_type == PDataValueType::Command {
                                let rsp = dimse::parse(&cmd_bytes).map_err(|e| e.to_string())?;
                                return rsp
                                    .status
                                    .ok_or_else(|| "response without status".to_string());
                            }
                        }
                    }
                    other => return Err(format!("unexpected PDU {other:?}")),
                }
            }
        })();
        match result {
            Ok(code) if status::is_stored(code) => out.push((i.path, Outcome::Stored)),
            Ok(code) if status::is_transient(code) => {
                out.push((i.path, Outcome::Transient(format!("status 0x{code:04X}"))))
            }
            Ok(code) => out.push((
                i.path,
                Outcome::Permanent(format!("rejected with status 0x{code:04X}")),
            )),
            Err(e) => {
                broken = Some(e.clone());
                out.push((i.path, Outcome::Transient(e)));
            }
        }
    }
    if broken.is_none() {
        let _ = assoc.release();
    }
    out
}

/// Sends every DICOM file under `dir` (recursively, sorted).
pub fn send_dir(peer: &Peer, dir: &Path) -> Vec<(PathBuf, Outcome)> {
    let mut files = Vec::new();
    collect_dcm_files(dir, &mut files);
    files.sort();
    send_files(peer, &files)
}

/// Appends every `*.dcm` file under `dir` (recursively) to `out`; unreadable folders are
/// skipped. Shared with the sender's dead-letter handling.
pub(crate) fn collect_dcm_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                collect_dcm_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "dcm") {
                out.push(p);
            }
        }
    }
}
