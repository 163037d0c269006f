//! The C-STORE / C-ECHO service provider. A connection first has `negotiation_timeout_s` to
//! deliver a whole, bounded A-ASSOCIATE-RQ ([`super::gate`]); only then does it take one of
//! `max_associations` slots ([`super::slots`]; more are refused with a transient rejection), so
//! idle or junk connections cannot lock a scanner out. Established associations have idle and
//! total time limits ([`super::deadlines`]), every PDU is bounded on its header before it is
//! buffered ([`super::pdu`]), and the success status of an instance is sent only after
//! [`crate::daemon::spool::Incoming::commit`] returned. Command sets may arrive in several
//! fragments and PDUs may carry several PDVs; data fragments stream straight into the spool.

use super::access::{self, refuse, AeAllowList, Refusal};
use super::deadlines::Deadlines;
use super::dimse::{self, status, Command};
use super::gate::{self, GateError};
use super::pdu::{self, Limits, PduError};
use super::slots::{SlotLimits, Slots, Ticket};
use super::syntax::{is_storage_class, STORAGE_CLASSES, TRANSFER_SYNTAXES, VERIFICATION};
use super::tcp;
use crate::daemon::config::ServerConfig;
use crate::daemon::fsio::free_space;
use crate::daemon::spool::{Incoming, Spool, Stored};
use crate::daemon::DaemonError;
use crate::text::printable;
use dicom_ul::association::{Association, SyncAssociation};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{Pdu, ServerAssociation, ServerAssociationOptions};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest command set accepted (a real one is a few hundred bytes).
const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Shared state of the listener and its association threads.
struct Shared {
    cfg: ServerConfig,
    spool: Arc<Spool>,
    spool_dir: PathBuf,
    slots: Arc<Slots>,
    refusing: AtomicUsize,
    stop: AtomicBool,
    next_id: AtomicU64,
    deadlines: Deadlines,
}

impl Shared {
    fn limits(&self) -> Limits {
        Limits {
            max_pdata: self.cfg.max_pdu,
        }
    }
}

/// A bound listener, not yet serving.
pub struct Scp {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Stops a serving [`Scp`].
#[derive(Clone)]
pub struct ScpHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl ScpHandle {
    /// Stops accepting; open associations finish on their own time limits.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }

    /// Associations established now (connections still negotiating are not counted).
    pub fn active(&self) -> usize {
        self.shared.slots.established()
    }
}

impl Scp {
    /// Binds `cfg.listen`; instances go to `spool`, whose file system is watched for space.
    pub fn bind(
        cfg: &ServerConfig,
        spool: Arc<Spool>,
        spool_dir: PathBuf,
    ) -> Result<Scp, DaemonError> {
        let listener = TcpListener::bind(&cfg.listen)
            .map_err(|e| DaemonError::Net(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let slots = Slots::new(SlotLimits {
            associations: cfg.max_associations,
            negotiating: cfg.max_negotiating,
            per_address: cfg.max_connections_per_address,
        });
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            spool,
            spool_dir,
            slots,
            refusing: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            deadlines: Deadlines::default(),
        });
        Ok(Scp { listener, shared })
    }

    /// The address actually bound (port 0 in the config picks a free one).
    pub fn local_addr(&self) -> Result<SocketAddr, DaemonError> {
        self.listener
            .local_addr()
            .map_err(|e| DaemonError::Net(e.to_string()))
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> Result<ScpHandle, DaemonError> {
        Ok(ScpHandle {
            shared: self.shared.clone(),
            addr: self.local_addr()?,
        })
    }

    /// Accepts connections until stopped. Per-address and negotiating bounds are checked at
    /// accept; the association bound once the connection's whole request has arrived.
    pub fn serve(self) {
        let sh = self.shared.clone();
        std::thread::Builder::new()
            .name("scp-watchdog".into())
            .spawn(move || sh.deadlines.watch(&sh.stop))
            .ok();
        for conn in self.listener.incoming() {
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let (stream, addr) = match conn.and_then(|s| s.peer_addr().map(|a| (s, a))) {
                Ok(p) => p,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    continue;
                }
            };
            let peer = addr.to_string();
            let sh = self.shared.clone();
            let ticket = match sh.slots.admit(addr.ip()) {
                Ok(t) if !disk_nearly_full(&sh) => t,
                Ok(_) => {
                    refuse_later(&sh, stream, &peer, Refusal::DiskNearlyFull);
                    continue;
                }
                Err(why) => {
                    refuse_later(&sh, stream, &peer, why);
                    continue;
                }
            };
            let spawned = std::thread::Builder::new()
                .name("scp-assoc".into())
                .spawn(move || connection(&sh, stream, &peer, ticket));
            if let Err(e) = spawned {
                log::error!("cannot start a thread for a connection: {e}");
            }
        }
    }
}

/// Answers a refused connection with a transient A-ASSOCIATE-RJ on a thread of its own; past
/// twice `max_associations` such threads, refusals are just closed connections.
fn refuse_later(sh: &Arc<Shared>, stream: TcpStream, peer: &str, why: Refusal) {
    log::warn!("refusing association from {peer}: {why}");
    if sh.refusing.fetch_add(1, Ordering::SeqCst) >= sh.cfg.max_associations * 2 {
        sh.refusing.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let sh2 = sh.clone();
    let spawned = std::thread::Builder::new()
        .name("scp-refuse".into())
        .spawn(move || {
            refuse(stream, why);
            sh2.refusing.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        sh.refusing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection, from accept to close, on its own thread; a panic ends only this one.
fn connection(sh: &Shared, stream: TcpStream, peer: &str, mut ticket: Ticket) {
    let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
    let negotiation = Duration::from_secs(
        sh.cfg
            .negotiation_timeout_s
            .min(sh.cfg.association_timeout_s),
    );
    sh.deadlines
        .set(id, "negotiation", negotiation, peer, &stream);
    let deadline = Instant::now() + negotiation;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if admit_request(sh, &stream, peer, &mut ticket, deadline) {
            serve_association(sh, id, stream, peer);
        }
    }));
    if r.is_err() {
        log::error!(
            "connection {id} from {peer}: handler panicked; other associations are unaffected"
        );
    }
    sh.deadlines.remove(id);
}

/// Waits for the whole A-ASSOCIATE-RQ and takes an association slot; false (the connection
/// answered and closed) if the request is refused or never completes.
fn admit_request(
    sh: &Shared,
    stream: &TcpStream,
    peer: &str,
    ticket: &mut Ticket,
    deadline: Instant,
) -> bool {
    match gate::await_associate_rq(stream, &sh.limits(), deadline) {
        Ok(_) => {}
        Err(GateError::Refused(e)) => {
            log::warn!("refusing connection from {peer}: {e}");
            access::refuse_first_pdu(stream, !matches!(e, PduError::UnknownType(_)));
            return false;
        }
        Err(e @ GateError::NotAssociateRq(_)) => {
            log::warn!("aborting connection from {peer}: {e}");
            access::refuse_first_pdu(stream, false);
            return false;
        }
        Err(GateError::Closed(0)) => {
            log::debug!("connection from {peer} closed without a request");
            return false;
        }
        Err(e) => {
            log::warn!("closing connection from {peer}: {e}");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return false;
        }
    }
    if let Err(why) = ticket.establish() {
        log::warn!("refusing association from {peer}: {why}");
        match stream.try_clone() {
            Ok(s) => refuse(s, why),
            Err(_) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        return false;
    }
    true
}

fn disk_nearly_full(sh: &Shared) -> bool {
    match free_space(&sh.spool_dir) {
        Ok((frac, bytes)) => {
            frac * 100.0 < sh.cfg.min_free_percent || (bytes as f64) < sh.cfg.min_free_gb * 1e9
        }
        Err(e) => {
            log::error!("cannot check free space: {e}");
            true
        }
    }
}

fn options(
    cfg: &ServerConfig,
) -> ServerAssociationOptions<'_, AeAllowList, dicom_ul::association::server::DefaultNegotiation> {
    let idle = Duration::from_secs(cfg.idle_timeout_s);
    let mut o = ServerAssociationOptions::new()
        .ae_access_control(AeAllowList {
            calling: cfg.calling_ae_allow.clone(),
            called: cfg.called_ae_allow.clone(),
        })
        .ae_title(cfg.ae_title.as_str())
        .max_pdu_length(cfg.max_pdu)
        .strict(false)
        .read_timeout(idle)
        .write_timeout(idle)
        .with_abstract_syntax(VERIFICATION);
    for a in STORAGE_CLASSES {
        o = o.with_abstract_syntax(a);
    }
    for t in TRANSFER_SYNTAXES {
        o = o.with_transfer_syntax(t);
    }
    o
}

/// One instance being received on an association.
struct Transfer<'s> {
    cmd: Command,
    pc_id: u8,
    incoming: Option<Incoming<'s>>,
    /// A failure decided before the data finished arriving (the data is still consumed).
    refused: Option<u16>,
}

/// Negotiates (the whole request is already in the socket buffer, checked by the gate, so
/// dicom-ul's lenient read of it is bounded) and serves one association until it ends.
fn serve_association(sh: &Shared, id: u64, stream: TcpStream, peer: &str) {
    let opts = options(&sh.cfg);
    let mut assoc = match opts.establish(stream) {
        Ok(a) => a,
        Err(e) => {
            log::warn!(
                "association from {peer} not established: {}",
                printable(&e.to_string())
            );
            return;
        }
    };
    let total = Duration::from_secs(sh.cfg.association_timeout_s);
    sh.deadlines
        .set(id, "association", total, peer, assoc.inner_stream());
    log::info!(
        "association from {peer} (\"{}\" calling \"{}\") established",
        printable(assoc.peer_ae_title()),
        printable(assoc.called_ae_title())
    );
    let limits = sh.limits();
    let (mut stored, mut duplicates) = (0usize, 0usize);
    let mut cmd_buf: Vec<u8> = Vec::new();
    let mut current: Option<Transfer<'_>> = None;
    tcp::no_delay(assoc.inner_stream());
    loop {
        let received = {
            let (socket, buffer) = assoc.get_mut();
            tcp::quick_ack(socket);
            pdu::read_pdu(socket, buffer, &limits)
        };
        let pdu = match received {
            Ok(p) => p,
            Err(e) => {
                if let Some(reason) = e.abort_reason() {
                    log::warn!("aborting association from {peer}: {e}");
                    access::abort(assoc.inner_stream(), reason);
                } else if current.is_some() {
                    log::warn!("association from {peer} ended mid-instance ({e}); the partial instance was discarded and not acknowledged");
                } else {
                    log::warn!("association from {peer} ended without release: {e}");
                }
                return;
            }
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    match on_pdv(sh, &mut assoc, &mut cmd_buf, &mut current, pdv) {
                        Ok(Some(Stored::New)) => stored += 1,
                        Ok(Some(Stored::Duplicate)) => duplicates += 1,
                        Ok(None) => {}
                        Err(e) => {
                            log::warn!(
                                "aborting association from {peer}: {}",
                                printable(&e.to_string())
                            );
                            let _ = assoc.abort();
                            return;
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                let _ = assoc.send(&Pdu::ReleaseRP);
                log::info!("association from {peer} released: {stored} instances stored, {duplicates} duplicates");
                return;
            }
            Pdu::AbortRQ { .. } => {
                log::warn!("association from {peer} aborted by the peer");
                return;
            }
            other => {
                log::warn!(
                    "unexpected {} from {peer} on an established association; aborting",
                    pdu_name(&other)
                );
                access::abort(
                    assoc.inner_stream(),
                    dicom_ul::pdu::AbortRQServiceProviderReason::UnexpectedPdu,
                );
                return;
            }
        }
    }
}

/// A PDU's name for a log line (its contents are peer data and stay out of the log).
fn pdu_name(p: &Pdu) -> &'static str {
    match p {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        _ => "unknown PDU",
    }
}

fn respond(
    assoc: &mut ServerAssociation<TcpStream>,
    pc_id: u8,
    cmd: &Command,
    field: u16,
    code: u16,
) -> Result<(), DaemonError> {
    let bytes = dimse::response(cmd, field, code)?;
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: bytes,
        }],
    };
    assoc
        .send(&pdu)
        .map_err(|e| DaemonError::Net(format!("sending a response: {e}")))
}

/// Handles one PDV; returns the spool outcome when an instance finished.
fn on_pdv<'s>(
    sh: &'s Shared,
    assoc: &mut ServerAssociation<TcpStream>,
    cmd_buf: &mut Vec<u8>,
    current: &mut Option<Transfer<'s>>,
    pdv: PDataValue,
) -> Result<Option<Stored>, DaemonError> {
    match pdv.value_type {
        PDataValueType::Command => {
            if current.is_some() {
                return Err(DaemonError::Net(
                    "command fragment while a data set was expected".into(),
                ));
            }
            cmd_buf.extend_from_slice(&pdv.data);
            if cmd_buf.len() > MAX_COMMAND_BYTES {
                return Err(DaemonError::Net(format!(
                    "command set over {MAX_COMMAND_BYTES} bytes"
                )));
            }
            if !pdv.is_last {
                return Ok(None);
            }
            let cmd = dimse::parse(&std::mem::take(cmd_buf))?;
            start_command(sh, assoc, current, cmd, pdv.presentation_context_id)?;
            Ok(None)
        }
        PDataValueType::Data => {
            let t = current
                .as_mut()
                .ok_or_else(|| DaemonError::Net("data fragment without a command".into()))?;
            if t.pc_id != pdv.presentation_context_id {
                return Err(DaemonError::Net(
                    "data fragment on another presentation context".into(),
                ));
            }
            if let Some(inc) = t.incoming.as_mut() {
                if let Err(e) = inc.write(&pdv.data) {
                    log::error!("spool write failed: {e}");
                    t.incoming = None;
                    t.refused = Some(status::OUT_OF_RESOURCES);
                }
            }
            if !pdv.is_last {
                return Ok(None);
            }
            let Some(t) = current.take() else {
                return Ok(None);
            };
            let (code, outcome) = match (t.refused, t.incoming) {
                (Some(code), _) => (code, None),
                (None, None) => (status::PROCESSING_FAILURE, None),
                (None, Some(inc)) => match inc.commit() {
                    Ok(s) => (status::SUCCESS, Some(s)),
                    Err(DaemonError::Rejected {
                        sop,
                        status,
                        reason,
                    }) => {
                        log::warn!("instance {sop} refused with status 0x{status:04X}: {reason}");
                        (status, None)
                    }
                    Err(DaemonError::BadObject(e)) => {
                        log::warn!("instance refused: {}", printable(&e.to_string()));
                        (status::CANNOT_UNDERSTAND, None)
                    }
                    Err(e) => {
                        log::error!("instance not stored: {}", printable(&e.to_string()));
                        (status::OUT_OF_RESOURCES, None)
                    }
                },
            };
            respond(assoc, t.pc_id, &t.cmd, dimse::C_STORE_RSP, code)?;
            Ok(outcome)
        }
    }
}

fn start_command<'s>(
    sh: &'s Shared,
    assoc: &mut ServerAssociation<TcpStream>,
    current: &mut Option<Transfer<'s>>,
    cmd: Command,
    pc_id: u8,
) -> Result<(), DaemonError> {
    let pc = assoc
        .presentation_contexts()
        .iter()
        .find(|p| p.id == pc_id && p.reason == PresentationContextResultReason::Acceptance)
        .cloned();
    match cmd.field {
        dimse::C_ECHO_RQ => respond(assoc, pc_id, &cmd, dimse::C_ECHO_RSP, status::SUCCESS),
        dimse::C_STORE_RQ => {
            if !cmd.has_data_set {
                return respond(
                    assoc,
                    pc_id,
                    &cmd,
                    dimse::C_STORE_RSP,
                    status::CANNOT_UNDERSTAND,
                );
            }
            let mut t = Transfer {
                cmd,
                pc_id,
                incoming: None,
                refused: None,
            };
            match pc {
                None => t.refused = Some(status::SOP_CLASS_NOT_SUPPORTED),
                Some(_) if !is_storage_class(&t.cmd.sop_class) => {
                    t.refused = Some(status::SOP_CLASS_NOT_SUPPORTED)
                }
                Some(_) if t.cmd.sop_instance.is_empty() => {
                    t.refused = Some(status::CANNOT_UNDERSTAND)
                }
                Some(_) if disk_nearly_full(sh) => t.refused = Some(status::OUT_OF_RESOURCES),
                Some(pc) => {
                    match sh
                        .spool
                        .begin(&t.cmd.sop_instance, &t.cmd.sop_class, &pc.transfer_syntax)
                    {
                        Ok(inc) => t.incoming = Some(inc),
                        Err(e) => {
                            log::error!("cannot start receiving: {e}");
                            t.refused = Some(status::OUT_OF_RESOURCES);
                        }
                    }
                }
            }
            *current = Some(t);
            Ok(())
        }
        other => {
            log::warn!("unsupported DIMSE command 0x{other:04x}");
            respond(assoc, pc_id, &cmd, other | 0x8000, 0x0211)
        }
    }
}
