//! `cineseg serve --config cineseg.toml`: the scanner-side daemon. Runs until killed; a
//! restart (even after `kill -9`) resumes every acknowledged series.

use super::CliError;
use crate::daemon::{Config, Daemon};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (see cineseg.example.toml).
    #[arg(long)]
    config: PathBuf,
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
    let daemon = Daemon::start(&cfg, model, &model_name, &model_file)?;
    println!(
        "cineseg serve: listening on {} as {}",
        daemon.addr(),
        cfg.server.ae_title
    );
    loop {
        std::thread::park();
    }
}
