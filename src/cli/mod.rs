//! The command-line interface: argument definitions and one module per command. `main.rs`
//! only parses and calls [`run`]; everything here returns errors instead of exiting, so the
//! commands are testable.

mod adapt_cmd;
mod bench_cmd;
mod demo;
mod docs_cmd;
mod eval;
mod experiment_cmd;
mod finetune_cmd;
mod import;
mod inspect_cmd;
mod models_cmd;
mod progress;
mod segment_cmd;
mod segment_dicom;
mod serve_cmd;
mod train_cmd;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// Fraction of patients held out for validation, fixed by patient id (never re-drawn).
pub const VALIDATION_FRACTION: f64 = 0.2;

/// File name of the shipped model inside `models/`.
pub const SHIPPED_MODEL: &str = "cineseg-acdc.safetensors";

/// The exit statuses, as `--help` documents them; [`CliError::exit_code`] implements them.
pub const EXIT_STATUS_HELP: &str = "Exit status: 0 success; 1 other failure; 2 usage error \
(bad arguments, missing files); 3 bad input data (unreadable or unusable DICOM, NIfTI or frame \
store); 4 model problem (model file unreadable or invalid, device error).";

#[derive(Parser, Debug)]
#[command(
    name = "cineseg",
    version,
    about = "Cardiac cine MRI segmentation beside the scanner: LV, myocardium and RV in every frame, EDV/ESV/EF/mass, on CPU or GPU.",
    after_help = EXIT_STATUS_HELP,
    long_about = "Cardiac cine MRI segmentation beside the scanner.\n\nTypical use:\n  cineseg demo                                   # synthetic cine, segmented by the shipped model\n  cineseg segment patient_4d.nii.gz --out out/   # masks + volumes for a NIfTI cine\n  cineseg import --acdc ../shared/data/acdc/training --out acdc.store\n  cineseg train --data acdc.store --out runs/base  # train a model (resumable)\n  cineseg eval --data ../shared/data/acdc/training # Dice, HD95, volume and EF errors"
)]
pub struct Cli {
    /// Log level: error, warn, info, debug, trace (or a tracing filter such as cineseg=debug).
    #[arg(long, global = true, default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,
    /// CPU threads for the compute backend (0 = all cores).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// Vector instructions of the CPU backend: generic, avx2, avx512 (x86-64) or neon (AArch64).
    /// Default: the best this processor has (or $CINESEG_CPU_PATH). Forcing a path changes
    /// cineseg's own loops; the GEMM library always picks its kernel from CPUID.
    #[arg(long, global = true)]
    pub cpu_path: Option<crate::nn::cpu::isa::CpuPath>,
    /// Arithmetic of the CPU convolutions: f32; bf16 (inputs and weights rounded to bf16, f32
    /// sums, f32 BatchNorm and master weights; needs AVX512-BF16); or auto, bf16 only where
    /// the processor multiplies it natively. Default: auto (or $CINESEG_PRECISION).
    #[arg(long, global = true)]
    pub precision: Option<crate::nn::cpu::precision::PrecisionChoice>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a synthetic cine series (a phantom), segment it with the shipped model, and write
    /// masks, volumes and overlay PNGs.
    Demo(demo::DemoArgs),
    /// Turn a labelled dataset folder (ACDC layout) into a memory-mapped frame store for training.
    Import(import::ImportArgs),
    /// Train a U-Net on a frame store (checkpoints every epoch; rerun the same command to resume).
    Train(train_cmd::TrainArgs),
    /// Fine-tune a model on a new site's labelled frames (frozen encoder, then everything;
    /// subsets, partial labels, time budget; rerun the same command to resume).
    Finetune(finetune_cmd::FinetuneArgs),
    /// Adapt a model to a new scanner without labels: re-estimate BatchNorm statistics on its images.
    Adapt(adapt_cmd::AdaptArgs),
    /// The model registry: list versions, add one, promote (only if better on the site's
    /// held-out patients), roll back.
    Models(models_cmd::ModelsArgs),
    /// Experiments that regenerate the tables in docs/ (`experiment transfer`).
    Experiment(experiment_cmd::ExperimentArgs),
    /// Segment a NIfTI image or cine (3D or 4D): label NIfTI on the input grid + volumes JSON.
    Segment(segment_cmd::SegmentArgs),
    /// Evaluate a model against expert labels: Dice, 95% Hausdorff, volume/EF/mass agreement.
    Eval(eval::EvalArgs),
    /// Summarise a DICOM folder: series, slices, phases, spacing, orientation, corrections.
    Inspect(inspect_cmd::InspectArgs),
    /// Run the scanner-side daemon: receive cine series over DICOM (C-STORE), segment them,
    /// write SEG/overlays/reports and send them on (see cineseg.example.toml).
    Serve(serve_cmd::ServeArgs),
    /// Measure CPU speed next to PyTorch and ONNX Runtime (from ../shared-venv) on this machine.
    Bench(bench_cmd::BenchArgs),
    /// Print a shell completion script: `cineseg completions bash > /etc/bash_completion.d/cineseg`.
    Completions(docs_cmd::CompletionsArgs),
    /// Print the manual page (roff): `cineseg man > cineseg.1; man ./cineseg.1`.
    Man,
}

/// Accepts a level name or a tracing filter directive; anything else is a usage error (it was
/// silently replaced by `info`).
fn parse_log_level(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let plain = s.trim().to_ascii_lowercase();
    if LEVELS.contains(&plain.as_str()) {
        return Ok(plain);
    }
    // A directive such as `cineseg=debug` or `warn,cineseg::daemon=trace`: every part must
    // name a known level after its `=`.
    let ok = !plain.is_empty()
        && plain.split(',').all(|d| {
            let level = d.rsplit('=').next().unwrap_or("");
            d.contains('=') && LEVELS.contains(&level) || LEVELS.contains(&d)
        });
    if ok && tracing_subscriber::EnvFilter::try_new(s).is_ok() {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a log level: use one of {} or a filter such as cineseg=debug",
            LEVELS.join(", ")
        ))
    }
}

/// Everything a command can fail with, mapped to an exit code by `main`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Nn(#[from] crate::nn::NnError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Import(#[from] crate::store::ImportError),
    #[error(transparent)]
    Segment(#[from] crate::segment::SegmentError),
    #[error("{0}")]
    Analysis(#[from] crate::analysis::AnalysisError),
    #[error("{0}")]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// Unreadable or unusable DICOM input (bad input data, exit status 3). The error names the
    /// file itself, so callers add no path of their own.
    #[error(transparent)]
    Dicom(#[from] crate::dicom::DicomError),
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// Exit status: 2 usage, 3 bad input data, 4 model problems, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Io(_)
            | CliError::Store(_)
            | CliError::Import(_)
            | CliError::Segment(_)
            | CliError::Dicom(_) => 3,
            CliError::Nn(_) => 4,
            _ => 1,
        }
    }

    /// A file-system error on `path`.
    pub fn file(path: &Path, source: std::io::Error) -> Self {
        CliError::File {
            path: path.into(),
            source,
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let threads = cli.threads;
    let path = crate::nn::cpu::isa::select(cli.cpu_path).map_err(CliError::Usage)?;
    let precision = crate::nn::cpu::precision::select(cli.precision).map_err(CliError::Usage)?;
    log::debug!(
        "CPU: {}; precision {precision}",
        crate::nn::cpu::isa::CpuInfo::get().describe(path)
    );
    match cli.command {
        Command::Demo(a) => demo::run(a, threads),
        Command::Import(a) => import::run(a, threads),
        Command::Train(a) => train_cmd::run(a, threads),
        Command::Finetune(a) => finetune_cmd::run(a, threads),
        Command::Adapt(a) => adapt_cmd::run(a, threads),
        Command::Models(a) => models_cmd::run(a, threads),
        Command::Experiment(a) => experiment_cmd::run(a, threads),
        Command::Segment(a) => segment_cmd::run(a, threads),
        Command::Eval(a) => eval::run(a, threads),
        Command::Inspect(a) => inspect_cmd::run(a),
        Command::Bench(a) => bench_cmd::run(a, threads),
        Command::Serve(a) => serve_cmd::run(a),
        Command::Completions(a) => docs_cmd::completions(a),
        Command::Man => docs_cmd::man(),
    }
}

/// The shipped model: `$CINESEG_MODEL`, else `models/` next to the executable's project or the
/// current directory, else the source checkout the binary was built from.
pub fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CINESEG_MODEL") {
        return PathBuf::from(p);
    }
    let mut candidates = vec![PathBuf::from("models").join(SHIPPED_MODEL)];
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            candidates.push(anc.join("models").join(SHIPPED_MODEL));
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(SHIPPED_MODEL),
    );
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

/// Loads a model, with a hint when it is the shipped one and missing.
pub fn load_model(path: Option<&Path>) -> Result<crate::nn::Model, CliError> {
    let p = path
        .map(Path::to_path_buf)
        .unwrap_or_else(default_model_path);
    if !p.is_file() {
        return Err(CliError::Usage(format!(
            "model file {} not found (pass --model, or set CINESEG_MODEL)",
            p.display()
        )));
    }
    Ok(crate::nn::Model::load(&p)?)
}

/// Creates an output directory (and parents).
pub fn ensure_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::file(dir, e))
}

/// Writes a JSON value, pretty-printed.
pub fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Usage(e.to_string()))?;
    std::fs::write(path, s + "\n").map_err(|e| CliError::file(path, e))
}
