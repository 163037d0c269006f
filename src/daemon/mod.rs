//! The scanner-side daemon (`cineseg serve`): receive cine series over DICOM, keep them durably,
//! segment them in a streaming pipeline, write and send the results, and lose nothing across a
//! crash.
//!
//! Data flow: [`net::scp`] acknowledges an instance only after [`spool::Spool`] has fsync'd it;
//! the spool closes a series into a [`queue::JobQueue`] job (one file per job, moved by atomic
//! renames); [`pipeline`] turns jobs into results (through [`crate::analysis::series`] and [`crate::report::results`]); [`sender`] stores them at the
//! destination with retries and a dead-letter folder. [`server::Daemon`] wires it together.
//!
//! Corrected contours that come back as DICOM SEG are kept by [`overnight::labels`]; the
//! [`overnight`] hook fine-tunes on them in a nightly window and hands a promoted model to the
//! inference stage, which swaps it in between series.

pub mod config;
pub mod error;
mod fsio;
pub mod health;
pub mod net;
pub mod overnight;
pub mod pipeline;
pub mod queue;
pub mod sender;
pub mod server;
pub mod spool;

pub use config::Config;
pub use error::{DaemonError, StageError};
pub use server::Daemon;
