//! `cineseg serve --config cineseg.toml`: the scanner-side daemon. Runs until SIGTERM or
//! SIGINT, then drains (stops accepting, lets open associations and series in flight finish,
//! exits within `--drain-timeout`); a restart, even after `kill -9`, resumes every
//! acknowledged series.

use super::CliError;
use crate::daemon::{Config, Daemon};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (see cineseg.example.toml).
    #[arg(long)]
    config: PathBuf,
    /// Seconds SIGTERM/SIGINT waits for open associations and series in flight before the
    /// process exits anyway (systemd's default stop timeout is 90 s; stay below it).
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
}

/// Set by the signal handler; polled by the main thread.
static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_signal: libc::c_int) {
    // Only an atomic store: the one thing that is async-signal-safe here.
    TERMINATE.store(true, Ordering::SeqCst);
}

/// Routes SIGTERM and SIGINT to [`on_terminate`] instead of killing the process.
fn install_terminate_handler() -> Result<(), CliError> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a handler that only stores an atomic is valid; the
        // pointer outlives the call.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_terminate as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(CliError::File {
                path: "sigaction(SIGTERM/SIGINT)".into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

pub fn run(a: ServeArgs) -> Result<(), CliError> {
    let cfg = Config::load(&a.config)?;
    let model = super::load_model(cfg.pipeline.model.as_deref())?;
    let model_file = cfg
        .pipeline
        .model
        .clone()
        .unwrap_or_else(super::default_model_path);
    let model_name = model_file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    install_terminate_handler()?;
    let daemon = Daemon::start(&cfg, model, &model_name, &model_file)?;
    println!(
        "cineseg serve: listening on {} as {}",
        daemon.addr(),
        cfg.server.ae_title
    );
    while !TERMINATE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    log::info!(
        "termination requested: draining (no new associations; up to {} s for open ones and \
         series in flight)",
        a.drain_timeout
    );
    let clean = daemon.drain(Duration::from_secs(a.drain_timeout));
    log::info!(
        "cineseg serve stopped{}",
        if clean {
            " cleanly"
        } else {
            " at the drain limit"
        }
    );
    Ok(())
}
