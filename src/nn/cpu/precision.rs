//! The arithmetic of the CPU backend's convolution GEMMs: f32, or bf16 operands with f32 sums
//! where the processor multiplies bf16 natively. Chosen once per process from `--precision`
//! or `CINESEG_PRECISION`, like the CPU path (`auto` by default: bf16 where native and measured
//! faster); libraries and tests that never choose get f32,
//! so numerical tests against f32 goldens mean the same on every machine.
//!
//! What bf16 changes (PyTorch's CPU autocast does the same): the inputs and weights of every
//! 3x3 convolution GEMM (forward, data gradient, weight gradient) are rounded to bf16 as they
//! are packed; products are exact and sums f32. Activations, BatchNorm (statistics and
//! running averages), the loss, the optimizer and the master weights stay f32.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// What a convolution GEMM computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands and sums.
    F32,
    /// bf16 operands (rounded to nearest even), exact products, f32 sums.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// What a user asks for: a precision, or `auto` (bf16 only where it is native and measured
/// faster than f32, see [`super::bf16::calibrate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionChoice {
    F32,
    Bf16,
    Auto,
}

impl FromStr for PrecisionChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(PrecisionChoice::F32),
            "bf16" => Ok(PrecisionChoice::Bf16),
            "auto" => Ok(PrecisionChoice::Auto),
            other => Err(format!(
                "unknown precision {other:?}: expected f32, bf16 or auto"
            )),
        }
    }
}

impl PrecisionChoice {
    /// The precision this choice means on this processor; bf16 where it is not native is an
    /// error naming the processor (an emulated bf16 would be slower than f32 and less exact).
    pub fn resolve(self) -> Result<Precision, String> {
        let native = super::bf16::native();
        match self {
            PrecisionChoice::F32 => Ok(Precision::F32),
            PrecisionChoice::Auto if auto_picks_bf16() => Ok(Precision::Bf16),
            PrecisionChoice::Auto => Ok(Precision::F32),
            PrecisionChoice::Bf16 if native => Ok(Precision::Bf16),
            PrecisionChoice::Bf16 => Err(format!(
                "bf16 is not native on this processor ({}): it needs AVX512-BF16; use \
                 --precision f32 or auto",
                super::isa::CpuInfo::get().model
            )),
        }
    }
}

/// `auto`'s rule: bf16 where it is native and its multiplies are measured at least
/// [`AUTO_MIN_SPEEDUP`](super::bf16::calibrate::AUTO_MIN_SPEEDUP) times the f32 rate.
pub fn auto_picks_bf16() -> bool {
    super::bf16::native()
        && super::bf16::calibrate::speedup_over_f32() >= super::bf16::calibrate::AUTO_MIN_SPEEDUP
}

static SELECTED: OnceLock<Precision> = OnceLock::new();

/// Chooses the precision for this process: `requested` (from `--precision`), else
/// `CINESEG_PRECISION`, else `auto`. The first call wins.
pub fn select(requested: Option<PrecisionChoice>) -> Result<Precision, String> {
    if let Some(p) = SELECTED.get() {
        return Ok(*p);
    }
    let env = match std::env::var("CINESEG_PRECISION") {
        Ok(v) if !v.trim().is_empty() => Some(v.parse::<PrecisionChoice>()?),
        _ => None,
    };
    let p = requested
        .or(env)
        .unwrap_or(PrecisionChoice::Auto)
        .resolve()?;
    Ok(*SELECTED.get_or_init(|| p))
}

/// The precision in use: what [`select`] chose, or f32 when it was never called.
pub fn selected() -> Precision {
    SELECTED.get().copied().unwrap_or(Precision::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_auto_is_bf16_exactly_where_native() {
        assert_eq!("BF16".parse::<PrecisionChoice>(), Ok(PrecisionChoice::Bf16));
        assert!("fp8".parse::<PrecisionChoice>().is_err());
        let native = crate::nn::cpu::bf16::native();
        let auto = PrecisionChoice::Auto
            .resolve()
            .expect("auto always resolves");
        assert_eq!(auto == Precision::Bf16, auto_picks_bf16());
        assert!(auto == Precision::F32 || native);
        assert_eq!(PrecisionChoice::Bf16.resolve().is_ok(), native);
        println!(
            "bf16/f32 multiply rate on this core: {:.2}; auto picks {auto}",
            crate::nn::cpu::bf16::calibrate::speedup_over_f32()
        );
    }
}
