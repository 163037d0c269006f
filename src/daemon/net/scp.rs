//! The C-STORE / C-ECHO service provider. One thread per association (at most
//! `max_associations`; more are refused with a transient rejection), idle and total time limits
//! per association (a watchdog shuts down sockets past their deadline, so even a peer trickling
//! bytes cannot hold a slot forever), and the success status of an instance sent only after
//! [`crate::daemon::spool::Incoming::commit`] returned. Command sets may arrive in several
//! fragments and PDUs may carry several PDVs; data fragments stream straight into the spool.

use super::access::{refuse, AeAllowList, Refusal};
use super::dimse::{self, status, Command};
use super::syntax::{is_storage_class, STORAGE_CLASSES, TRANSFER_SYNTAXES, VERIFICATION};
use crate::daemon::config::ServerConfig;
use crate::daemon::fsio::free_space;
use crate::daemon::spool::{Incoming, Spool, Stored};
use crate::daemon::DaemonError;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{Pdu, ServerAssociation, ServerAssociationOptions};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest command set accepted (a real one is a few hundred bytes).
const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Shared state of the listener and its association threads.
struct Shared {
    cfg: ServerConfig,
    spool: Arc<Spool>,
    spool_dir: PathBuf,
    active: AtomicUsize,
    refusing: AtomicUsize,
    stop: AtomicBool,
    next_id: AtomicU64,
    /// Sockets with their hard deadline, shut down by the watchdog when it passes.
    deadlines: Mutex<HashMap<u64, (Instant, TcpStream)>>,
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

    /// Associations being served now.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
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
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            spool,
            spool_dir,
            active: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            deadlines: Mutex::new(HashMap::new()),
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

    /// Accepts associations until stopped.
    pub fn serve(self) {
        let sh = self.shared.clone();
        std::thread::Builder::new()
            .name("scp-watchdog".into())
            .spawn(move || watchdog(&sh))
            .ok();
        for conn in self.listener.incoming() {
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    continue;
                }
            };
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let sh = self.shared.clone();
            let refusal = if sh.active.load(Ordering::SeqCst) >= sh.cfg.max_associations {
                Some(Refusal::TooManyAssociations)
            } else if disk_nearly_full(&sh) {
                Some(Refusal::DiskNearlyFull)
            } else {
                None
            };
            if let Some(why) = refusal {
                log::warn!("refusing association from {peer}: {why:?}");
                // bounded too: past twice the limit, refusals are just closed connections
                if sh.refusing.load(Ordering::SeqCst) < sh.cfg.max_associations * 2 {
                    sh.refusing.fetch_add(1, Ordering::SeqCst);
                    let sh2 = sh.clone();
                    std::thread::spawn(move || {
                        refuse(stream, why);
                        sh2.refusing.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                continue;
            }
            sh.active.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new().name("scp-assoc".into()).spawn(move || {
                let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
                let deadline = Instant::now() + Duration::from_secs(sh.cfg.association_timeout_s);
                if let Ok(clone) = stream.try_clone() {
                    sh.deadlines.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (deadline, clone));
                }
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve_association(&sh, stream, &peer)));
                if r.is_err() {
                    log::error!("association {id} from {peer}: handler panicked; other associations are unaffected");
                }
                sh.deadlines.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                sh.active.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                self.shared.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
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

fn watchdog(sh: &Shared) {
    while !sh.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        let map = sh.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        for (id, (deadline, s)) in map.iter() {
            if now >= *deadline {
                log::warn!("association {id} exceeded its total time limit; closing it");
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
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

fn serve_association(sh: &Shared, stream: TcpStream, peer: &str) {
    let opts = options(&sh.cfg);
    let mut assoc = match opts.establish(stream) {
        Ok(a) => a,
        Err(e) => {
            log::warn!("association from {peer} not established: {e}");
            return;
        }
    };
    log::info!(
        "association from {peer} ({}) established",
        dicom_ul::association::Association::peer_ae_title(&assoc)
    );
    let (mut stored, mut duplicates) = (0usize, 0usize);
    let mut cmd_buf: Vec<u8> = Vec::new();
    let mut current: Option<Transfer<'_>> = None;
    loop {
        let pdu = match assoc.receive() {
            Ok(p) => p,
            Err(e) => {
                if current.is_some() {
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
                            log::warn!("aborting association from {peer}: {e}");
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
                log::warn!("unexpected PDU from {peer}: {other:?}; aborting");
                let _ = assoc.abort();
                return;
            }
        }
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
                        log::warn!("instance refused: {e}");
                        (status::CANNOT_UNDERSTAND, None)
                    }
                    Err(e) => {
                        log::error!("instance not stored: {e}");
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
