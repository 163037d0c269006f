//! Choosing the compute device at start-up. The same binary must run beside a scanner with a
//! GPU, on a laptop without one, and on a Jetson: `--device auto` picks CUDA when it works and
//! otherwise the CPU with one log line saying why; `--device cuda` insists and fails with a
//! clear error (never a panic: cudarc panics on a missing libcuda, so the CUDA side probes the
//! libraries first, see `nn::cuda::context`).

use super::cpu::CpuBackend;
use super::{Backend, NnError};
use std::str::FromStr;

/// The `--device` choice of the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when a usable GPU is found, else the CPU.
    #[default]
    Auto,
    /// Always the CPU (reproducible runs, debugging, machines whose GPU is busy).
    Cpu,
    /// The GPU or an error: for jobs that would be too slow on the CPU.
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            other => Err(NnError::Device(format!(
                "unknown device {other:?} (expected auto, cpu or cuda)"
            ))),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

/// Opens the CUDA backend, or says why it cannot be used (no cuda feature, no libcuda, no
/// device, kernels that do not load).
#[cfg(feature = "gpu")]
fn open_cuda() -> Result<Box<dyn Backend + Send>, String> {
    super::cuda::CudaBackend::open(0).map(|b| Box::new(b) as Box<dyn Backend + Send>)
}

#[cfg(not(feature = "gpu"))]
fn open_cuda() -> Result<Box<dyn Backend + Send>, String> {
    Err("this cineseg was built without the `cuda` feature".into())
}

/// The backend for `choice`, and a sentence explaining the choice for the log. `threads` is
/// the CPU thread count (0 = all cores) used when the CPU is chosen.
pub fn select(
    choice: DeviceChoice,
    threads: usize,
) -> Result<(Box<dyn Backend + Send>, String), NnError> {
    let cpu = |why: String| -> Result<(Box<dyn Backend + Send>, String), NnError> {
        let b = CpuBackend::new(threads)?;
        let why = format!("{}: {why}", b.describe());
        Ok((Box::new(b), why))
    };
    match choice {
        DeviceChoice::Cpu => cpu("--device cpu".into()),
        DeviceChoice::Cuda => match open_cuda() {
            Ok(b) => {
                let why = format!("{}: --device cuda", b.describe());
                Ok((b, why))
            }
            Err(e) => Err(NnError::Device(format!("--device cuda: {e}"))),
        },
        DeviceChoice::Auto => match open_cuda() {
            Ok(b) => {
                let why = format!("{}: --device auto found a usable GPU", b.describe());
                Ok((b, why))
            }
            Err(e) => {
                let (b, why) = cpu(format!("--device auto fell back to the CPU because {e}"))?;
                log::info!("{why}");
                Ok((b, why))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_names() {
        assert_eq!(
            "auto".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Auto)
        );
        assert_eq!("CPU".parse::<DeviceChoice>().ok(), Some(DeviceChoice::Cpu));
        assert_eq!(
            "cuda".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Cuda)
        );
        assert!("tpu".parse::<DeviceChoice>().is_err());
        for c in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda] {
            assert_eq!(c.to_string().parse::<DeviceChoice>().ok(), Some(c));
        }
    }

    #[test]
    fn cpu_is_always_available() {
        let (b, why) = select(DeviceChoice::Cpu, 1).expect("cpu backend");
        assert!(b.describe().starts_with("cpu"), "{}", b.describe());
        assert!(why.contains("--device cpu"), "{why}");
    }

    /// Without a GPU, auto must fall back with a reason and cuda must fail cleanly (no panic);
    /// with one, both must give the GPU. Either way the test checks that the two agree.
    #[test]
    fn auto_and_cuda_agree() {
        let auto = select(DeviceChoice::Auto, 1).expect("auto never fails");
        match select(DeviceChoice::Cuda, 1) {
            Ok((b, _)) => {
                assert!(b.describe().starts_with("cuda"), "{}", b.describe());
                assert!(auto.0.describe().starts_with("cuda"));
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("--device cuda"), "{msg}");
                assert!(auto.0.describe().starts_with("cpu"));
                assert!(auto.1.contains("fell back"), "{}", auto.1);
                println!("skipped GPU half: no CUDA device ({msg})");
            }
        }
    }
}
