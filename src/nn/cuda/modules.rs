//! The kernels embedded by build.rs, and loading them onto the device: the fatbin first (cubins
//! for sm_80/87/90: no JIT, no PTX-version trouble with older drivers), then the PTX (JIT for
//! other GPUs), then NVRTC on the embedded source (a build without nvcc).

use super::context::{nvrtc_present, Gpu};
use cudarc::driver::{CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::collections::HashMap;
use std::sync::Arc;

/// One `kernels/*.cu` file as embedded in the binary.
#[derive(Clone, Copy, Debug)]
pub struct KernelImage {
    /// File stem, e.g. `conv3x3`.
    pub name: &'static str,
    /// The source with our headers inlined (for NVRTC).
    pub source: &'static str,
    /// PTX for compute_80, when nvcc was present at build time.
    pub ptx: Option<&'static str>,
    /// Fatbin (cubins + PTX), when nvcc was present at build time.
    pub fatbin: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// True when this binary carries nvcc-built kernels (otherwise NVRTC is needed at run time).
pub fn prebuilt() -> bool {
    KERNEL_IMAGES.iter().all(|k| k.fatbin.is_some())
}

/// All kernel functions by name, loaded once per backend.
pub struct Kernels {
    funcs: HashMap<&'static str, CudaFunction>,
    /// How each file was loaded ("fatbin", "ptx", "nvrtc"), for the logs.
    pub how: Vec<(&'static str, &'static str)>,
    _modules: Vec<Arc<CudaModule>>,
}

/// Kernel names per file; a missing one is a load error, not a panic at first launch.
const FUNCTIONS: &[(&str, &[&str])] = &[
    (
        "adamw",
        &["grad_overflow", "adamw_step", "loss_scale_update"],
    ),
    (
        "batchnorm",
        &[
            "bn_finalize",
            "bn_apply_relu",
            "bn_bwd_reduce",
            "bn_bwd_dx",
            "bn_param_grads",
        ],
    ),
    ("conv3x3", &["conv3x3_fwd", "conv3x3_wgrad", "conv3x3_pack"]),
    ("head", &["head_fwd", "head_bwd_data", "head_wgrad"]),
    ("loss", &["loss_fwd", "loss_finalize", "loss_bwd"]),
    ("pool", &["maxpool2_fwd", "maxpool2_bwd"]),
    (
        "tensor",
        &[
            "f32_to_f16",
            "f16_to_f32",
            "copy_channels",
            "channel_sums_f16",
        ],
    ),
    (
        "upconv",
        &[
            "upconv2_fwd",
            "upconv2_bwd_data",
            "upconv2_wgrad",
            "upconv2_pack",
        ],
    ),
];

fn load_one(gpu: &Gpu, img: &KernelImage) -> Result<(Arc<CudaModule>, &'static str), String> {
    let mut errors = Vec::new();
    if let Some(fb) = img.fatbin {
        match gpu.ctx.load_module(Ptx::from_binary(fb.to_vec())) {
            Ok(m) => return Ok((m, "fatbin")),
            Err(e) => errors.push(format!("fatbin: {e}")),
        }
    }
    if let Some(ptx) = img.ptx {
        match gpu.ctx.load_module(Ptx::from_src(ptx)) {
            Ok(m) => return Ok((m, "ptx")),
            Err(e) => errors.push(format!("ptx: {e}")),
        }
    }
    if !nvrtc_present() {
        errors.push("nvrtc: libnvrtc.so is not installed".into());
        return Err(format!(
            "kernels/{}.cu could not be loaded ({})",
            img.name,
            errors.join("; ")
        ));
    }
    let arch: &'static str = match gpu.cc {
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (9, _) => "compute_90",
        (10.., _) => "compute_90", // newer GPUs JIT compute_90 PTX
        _ => "compute_80",
    };
    let mut include_paths = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(h) = std::env::var_os(var) {
            include_paths.push(
                std::path::Path::new(&h)
                    .join("include")
                    .display()
                    .to_string(),
            );
        }
    }
    include_paths.push("/usr/local/cuda/include".into());
    let opts = CompileOptions {
        arch: Some(arch),
        include_paths,
        options: vec!["-std=c++17".into()],
        ..Default::default()
    };
    match cudarc::nvrtc::compile_ptx_with_opts(img.source, opts) {
        Ok(ptx) => gpu
            .ctx
            .load_module(ptx)
            .map(|m| (m, "nvrtc"))
            .map_err(|e| format!("kernels/{}.cu: nvrtc output did not load: {e}", img.name)),
        Err(e) => {
            errors.push(format!("nvrtc: {e}"));
            Err(format!(
                "kernels/{}.cu could not be loaded ({})",
                img.name,
                errors.join("; ")
            ))
        }
    }
}

impl Kernels {
    /// Loads every embedded kernel file and looks up every function.
    pub fn load(gpu: &Gpu) -> Result<Self, String> {
        let mut funcs = HashMap::new();
        let mut how = Vec::new();
        let mut modules = Vec::new();
        for (file, names) in FUNCTIONS {
            let img = KERNEL_IMAGES
                .iter()
                .find(|k| k.name == *file)
                .ok_or_else(|| format!("kernels/{file}.cu is not embedded"))?;
            let (module, h) = load_one(gpu, img)?;
            for name in *names {
                let f = module
                    .load_function(name)
                    .map_err(|e| format!("kernel {name} missing from kernels/{file}.cu: {e}"))?;
                funcs.insert(*name, f);
            }
            how.push((*file, h));
            modules.push(module);
        }
        Ok(Kernels {
            funcs,
            how,
            _modules: modules,
        })
    }

    /// The function `name` (a name from the table above; anything else is a programming error
    /// reported as an error, not a panic).
    pub fn get(&self, name: &str) -> Result<&CudaFunction, String> {
        self.funcs
            .get(name)
            .ok_or_else(|| format!("kernel {name} not loaded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_file_is_embedded_and_listed() {
        for (file, names) in FUNCTIONS {
            let img = KERNEL_IMAGES
                .iter()
                .find(|k| k.name == *file)
                .unwrap_or_else(|| panic!("{file} not embedded"));
            assert!(
                !img.source.contains("#include \"common.cuh\""),
                "{file}: headers must be inlined for NVRTC"
            );
            for n in *names {
                assert!(
                    img.source.contains(&format!("void {n}("))
                        || img.source.contains(&format!("{n}(")),
                    "{file} lacks {n}"
                );
            }
        }
        assert_eq!(
            KERNEL_IMAGES.len(),
            FUNCTIONS.len(),
            "a kernels/*.cu file is not in FUNCTIONS"
        );
    }
}
