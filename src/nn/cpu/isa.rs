//! Which vector instructions the CPU backend uses: detected once at run time, so one binary runs
//! its best path on an AVX2-only EPYC, an AVX-512 Xeon and a Jetson's ARM cores, and forced
//! with `--cpu-path` or `CINESEG_CPU_PATH` so every path can be tested and compared on one
//! machine.
//!
//! What a path governs: cineseg's own loops (Winograd transforms, im2col, epilogues) are
//! compiled once per path with `#[target_feature]` and chosen by [`selected`]. The GEMMs run in
//! the `gemm` crate, which picks its micro-kernel from CPUID itself (AVX-512 when the CPU has
//! it, built in through its `x86-v4` feature) and cannot be told otherwise; forcing `avx2` on
//! an AVX-512 machine therefore changes cineseg's loops only, and [`CpuInfo::gemm_kernel`] says
//! which GEMM kernel runs.
//!
//! The default is the path measured fastest ([`CpuPath::best`]), which is not always the widest.
//!
//! AMX and AVX512-BF16 are detected (CPUID, and for AMX the Linux permission to use the tile
//! registers, `arch_prctl(ARCH_REQ_XCOMP_PERM)`) and reported. The bf16 convolutions
//! (`--precision`, `cpu::bf16`) use AVX512-BF16 where present; there is no AMX kernel.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// An instruction-set path of the CPU backend, from least to most capable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuPath {
    /// Baseline of the target (SSE2 on x86-64): what the compiler emits without extra features.
    Generic,
    /// x86-64 with AVX2 and FMA (Haswell, Zen).
    Avx2,
    /// x86-64 with AVX-512 F/BW/VL/DQ (Skylake-SP and later, Zen 4).
    Avx512,
    /// AArch64 NEON (Jetson Orin, Graviton): the baseline of every AArch64 CPU.
    Neon,
}

impl CpuPath {
    /// Every path, for tests that run each supported one.
    pub const ALL: [CpuPath; 4] = [
        CpuPath::Generic,
        CpuPath::Avx2,
        CpuPath::Avx512,
        CpuPath::Neon,
    ];

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            CpuPath::Generic => true,
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            CpuPath::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512dq")
            }
            #[cfg(target_arch = "aarch64")]
            CpuPath::Neon => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The widest path this CPU supports.
    pub fn widest() -> CpuPath {
        CpuPath::ALL
            .iter()
            .rev()
            .copied()
            .find(|p| p.supported())
            .unwrap_or(CpuPath::Generic)
    }

    /// The default: the path measured fastest, not the widest. On a 2-core Xeon with AVX-512
    /// (2026-12-03, `cineseg --cpu-path P bench --no-anchors`, two interleaved runs) the
    /// baseline copies of the Winograd transforms and epilogues beat the AVX2 copies by ~5 %
    /// and the AVX-512 copies by ~15 % end to end (infer b1 19.5 / 18.5 / 16.3 img/s): these
    /// loops are bound by memory, and the GEMM (the `gemm` crate's AVX-512 kernel either way)
    /// carries the arithmetic. So x86-64 defaults to `generic` until a path wins a measurement.
    ///
    /// Re-measured after the loops were written in 16-value chunks (`cpu::lanes`) and the
    /// BatchNorm backward lost its branch (same Xeon, 2026-12-03, `cineseg demo`, three
    /// interleaved runs): generic 34.2, avx2 31.3, avx512 30.1 img/s; the training step
    /// (`bench`, two runs) generic 3.5-4.1 img/s against avx512 3.1. Generic stays the default.
    pub fn best() -> CpuPath {
        if cfg!(target_arch = "aarch64") {
            CpuPath::widest()
        } else {
            CpuPath::Generic
        }
    }
}

impl fmt::Display for CpuPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuPath::Generic => "generic",
            CpuPath::Avx2 => "avx2",
            CpuPath::Avx512 => "avx512",
            CpuPath::Neon => "neon",
        })
    }
}

impl FromStr for CpuPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "generic" | "baseline" => Ok(CpuPath::Generic),
            "avx2" => Ok(CpuPath::Avx2),
            "avx512" | "avx-512" => Ok(CpuPath::Avx512),
            "neon" => Ok(CpuPath::Neon),
            other => Err(format!(
                "unknown CPU path {other:?}: expected generic, avx2, avx512 or neon"
            )),
        }
    }
}

/// Defines a function compiled once per [`CpuPath`] (the body with `#[target_feature]` for AVX2
/// and AVX-512, plain otherwise) that runs the copy of the [`selected`] path. For loops the
/// compiler vectorises: the same source, 4, 8 or 16 lanes wide.
macro_rules! per_path {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }
            match $crate::nn::cpu::isa::selected() {
                // SAFETY: `selected` returns only paths whose features this CPU has.
                #[cfg(target_arch = "x86_64")]
                $crate::nn::cpu::isa::CpuPath::Avx2 => unsafe { avx2($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::nn::cpu::isa::CpuPath::Avx512 => unsafe { avx512($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}
pub(crate) use per_path;

static SELECTED: OnceLock<CpuPath> = OnceLock::new();

/// Chooses the path for this process: `requested` (from `--cpu-path`), else `CINESEG_CPU_PATH`,
/// else the best the CPU has. Fails when the requested path cannot run here. The first call
/// wins; later calls return what was chosen.
pub fn select(requested: Option<CpuPath>) -> Result<CpuPath, String> {
    if let Some(p) = SELECTED.get() {
        return Ok(*p);
    }
    let env = match std::env::var("CINESEG_CPU_PATH") {
        Ok(v) if !v.trim().is_empty() => Some(v.parse::<CpuPath>()?),
        _ => None,
    };
    let path = match requested.or(env) {
        Some(p) if !p.supported() => {
            return Err(format!(
                "CPU path {p} is not supported by this processor ({}); supported: {}",
                CpuInfo::get().model,
                CpuPath::ALL
                    .iter()
                    .filter(|p| p.supported())
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        Some(p) => p,
        None => CpuPath::best(),
    };
    Ok(*SELECTED.get_or_init(|| path))
}

/// The path in use (the best supported one when [`select`] was never called).
pub fn selected() -> CpuPath {
    if let Some(p) = SELECTED.get() {
        return *p;
    }
    match select(None) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("{e}; using the generic path");
            *SELECTED.get_or_init(|| CpuPath::Generic)
        }
    }
}

/// What the processor is and has.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuInfo {
    /// Model name (`/proc/cpuinfo`), or the architecture when unknown.
    pub model: String,
    /// Vector features found, in the names `lscpu` uses.
    pub features: Vec<&'static str>,
    /// Whether Linux granted this process the AMX tile registers.
    pub amx_permitted: bool,
}

impl CpuInfo {
    /// Detects once per process.
    pub fn get() -> &'static CpuInfo {
        static INFO: OnceLock<CpuInfo> = OnceLock::new();
        INFO.get_or_init(detect)
    }

    /// The micro-kernel family the `gemm` crate runs on this CPU (its own CPUID choice).
    pub fn gemm_kernel(&self) -> &'static str {
        if self.features.contains(&"avx512f") {
            "avx512f"
        } else if self.features.contains(&"fma") {
            "fma (avx2)"
        } else if self.features.contains(&"neon") {
            "neon"
        } else {
            "scalar"
        }
    }

    /// One line for logs and the benchmark.
    pub fn describe(&self, path: CpuPath) -> String {
        format!(
            "{}; features: {}{}; cineseg path {path}; gemm kernel {}",
            self.model,
            self.features.join(" "),
            if self.features.contains(&"amx_bf16") {
                if self.amx_permitted {
                    " (AMX granted by the kernel)"
                } else {
                    " (AMX not granted by the kernel)"
                }
            } else {
                ""
            },
            self.gemm_kernel()
        )
    }
}

fn model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(target_arch = "x86_64")]
fn detect() -> CpuInfo {
    let mut features = Vec::new();
    macro_rules! probe {
        ($($name:tt => $label:expr),*) => {
            $(if is_x86_feature_detected!($name) { features.push($label); })*
        };
    }
    probe!("avx2" => "avx2", "fma" => "fma", "f16c" => "f16c", "avx512f" => "avx512f",
        "avx512bw" => "avx512bw", "avx512vl" => "avx512vl", "avx512dq" => "avx512dq",
        "avx512vnni" => "avx512_vnni", "avx512bf16" => "avx512_bf16", "avx512fp16" => "avx512_fp16");
    // AMX is not in `is_x86_feature_detected!` on stable: CPUID leaf 7, sub-leaf 0, EDX bits
    // 22 (AMX-BF16), 24 (AMX-TILE), 25 (AMX-INT8).
    // CPUID is safe to call on x86-64; leaf 7 is checked against the maximum leaf first.
    let edx = {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        if __cpuid(0).eax >= 7 {
            __cpuid_count(7, 0).edx
        } else {
            0
        }
    };
    let amx_tile = edx & (1 << 24) != 0;
    if edx & (1 << 22) != 0 {
        features.push("amx_bf16");
    }
    if amx_tile {
        features.push("amx_tile");
    }
    CpuInfo {
        model: model_name(),
        features,
        amx_permitted: amx_tile && request_amx(),
    }
}

#[cfg(target_arch = "aarch64")]
fn detect() -> CpuInfo {
    let mut features = vec!["neon"];
    if std::arch::is_aarch64_feature_detected!("bf16") {
        features.push("bf16");
    }
    if std::arch::is_aarch64_feature_detected!("fp16") {
        features.push("fp16");
    }
    CpuInfo {
        model: model_name(),
        features,
        amx_permitted: false,
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> CpuInfo {
    CpuInfo {
        model: model_name(),
        features: Vec::new(),
        amx_permitted: false,
    }
}

/// Asks Linux for the AMX tile data state (XTILEDATA, feature 18); without it the first tile
/// instruction faults. Returns whether it was granted.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_amx() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes this process's permitted
    // extended state; it takes two integer arguments and touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_amx() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for p in CpuPath::ALL {
            assert_eq!(p.to_string().parse::<CpuPath>(), Ok(p));
        }
        assert!("sse9".parse::<CpuPath>().is_err());
    }

    #[test]
    fn the_best_path_is_supported_and_generic_always_is() {
        assert!(CpuPath::Generic.supported());
        assert!(CpuPath::best().supported() && CpuPath::widest().supported());
        let info = CpuInfo::get();
        assert!(!info.model.is_empty());
        println!("{}", info.describe(CpuPath::best()));
    }
}
