//! Opening the GPU without ever panicking. cudarc's dynamic loader panics when a library is
//! missing (docs/CRATES.md 1.2), so every library is probed with `is_culib_present` (a plain
//! dlopen) before the first call into it; after that, cudarc returns `Result`s.

use cudarc::driver::{CudaContext, CudaStream};
use std::sync::Arc;

/// An opened device: context, the stream all work goes to, and what it is for the logs.
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub name: String,
    /// Compute capability (major, minor); tensor-core kernels need 7.0 or newer.
    pub cc: (i32, i32),
}

/// True when libnvrtc can be loaded, i.e. run-time compilation of the embedded kernel sources
/// is possible. Checked before every NVRTC call for the same reason as libcuda.
pub fn nvrtc_present() -> bool {
    // SAFETY: only dlopens candidate library names; no symbol is called.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Opens device `ordinal`, or says in one sentence why not.
pub fn open(ordinal: usize) -> Result<Gpu, String> {
    if std::env::var_os("CINESEG_NO_CUDA").is_some() {
        return Err("CINESEG_NO_CUDA is set".into());
    }
    // SAFETY: only dlopens candidate library names; no symbol is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("the CUDA driver library (libcuda.so) is not installed".into());
    }
    let count = CudaContext::device_count()
        .map_err(|e| format!("the CUDA driver did not initialise ({e})"))?;
    if count <= ordinal as i32 {
        return Err(format!("no CUDA device {ordinal} ({count} found)"));
    }
    let ctx =
        CudaContext::new(ordinal).map_err(|e| format!("cannot open CUDA device {ordinal}: {e}"))?;
    let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
    let cc = ctx
        .compute_capability()
        .map_err(|e| format!("cannot query {name}: {e}"))?;
    if cc.0 < 7 {
        return Err(format!(
            "{name} has compute capability {}.{}; the fp16 tensor-core kernels need 7.0 or newer",
            cc.0, cc.1
        ));
    }
    let stream = ctx
        .new_stream()
        .map_err(|e| format!("cannot create a stream on {name}: {e}"))?;
    Ok(Gpu {
        ctx,
        stream,
        name,
        cc,
    })
}
