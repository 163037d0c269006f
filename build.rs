//! Build script: compiles the CUDA kernels (`kernels/*.cu`) and embeds them in the crate.
//!
//! For every kernel file it writes into `OUT_DIR/kernels.rs` one `KernelImage` with:
//! - the source, with its `#include "*.cuh"` lines inlined, always (NVRTC compiles it at run time
//!   when no prebuilt image loads, e.g. a build without nvcc or a future GPU);
//! - when nvcc is found and a CUDA feature (`cuda`, `cuda-jetson`) is on: PTX for the virtual architecture
//!   `compute_80` (JIT-compiled by newer drivers for newer GPUs) and a fatbin with cubins for
//!   sm_80 (A100), sm_87 (Jetson Orin) and sm_90 (H100) plus that PTX.
//!
//! nvcc is looked up in `$NVCC`, `$CUDA_HOME/bin`, `$CUDA_PATH/bin`, then `PATH`. When it is
//! present, a kernel that does not compile fails the build: a kernel error must never silently
//! turn into an NVRTC failure on the scanner's GPU. Without nvcc the build succeeds with a
//! warning. `CINESEG_SKIP_NVCC=1` skips nvcc on purpose (quick CPU-only iterations);
//! `CINESEG_CUDA_ARCHS` (default `80,87,90`) changes the cubin list.
//!
//! It also writes `OUT_DIR/kernel_defines.rs`: every `#define NAME <integer>` of the kernel
//! sources as a `usize` constant, so the host code that sizes grids and blocks (tile sizes,
//! reduction block shapes, channel limits) reads the kernels' own numbers instead of copies.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=kernels");
    for v in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "PATH",
        "CINESEG_SKIP_NVCC",
        "CINESEG_CUDA_ARCHS",
    ] {
        println!("cargo::rerun-if-env-changed={v}");
    }
    println!("cargo::rustc-check-cfg=cfg(cineseg_prebuilt_kernels)");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kdir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("kernels");
    let sources = kernel_sources(&kdir);

    let cuda = env::var_os("CARGO_FEATURE_GPU").is_some();
    let skip = env::var("CINESEG_SKIP_NVCC")
        .map(|v| v == "1")
        .unwrap_or(false);
    let nvcc = if cuda && !skip { find_nvcc() } else { None };
    if cuda && nvcc.is_none() {
        let why = if skip {
            "CINESEG_SKIP_NVCC=1"
        } else {
            "nvcc not found (NVCC, CUDA_HOME, CUDA_PATH, PATH)"
        };
        println!("cargo::warning=CUDA kernels not precompiled: {why}; the GPU backend will compile them with NVRTC at run time");
    }

    let mut entries = Vec::new();
    for src in &sources {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("kernel file names are UTF-8")
            .to_string();
        let flat = flatten(src, &kdir, 0);
        let flat_path = out.join(format!("{stem}.flat.cu"));
        fs::write(&flat_path, &flat)
            .unwrap_or_else(|e| panic!("writing {}: {e}", flat_path.display()));
        let (ptx, fatbin) = match &nvcc {
            Some(nvcc) => compile(nvcc, src, &kdir, &out, &stem),
            None => (None, None),
        };
        entries.push((stem, flat_path, ptx, fatbin));
    }
    if nvcc.is_some() {
        println!("cargo::rustc-cfg=cineseg_prebuilt_kernels");
    }
    write_table(&out.join("kernels.rs"), &entries);
    write_defines(&out.join("kernel_defines.rs"), &kdir);
}

/// Integer `#define`s of `kernels/*.cu` and `kernels/*.cuh` as Rust constants. A name defined
/// twice with different values fails the build (the host could not know which one it means).
fn write_defines(dst: &Path, kdir: &Path) {
    let mut files: Vec<PathBuf> = fs::read_dir(kdir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kdir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("cu" | "cuh")))
        .collect();
    files.sort();
    let mut defs: Vec<(String, u64, String)> = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        let file = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("#define") {
                continue;
            }
            let (Some(name), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(v) = value.parse::<u64>() else {
                continue;
            };
            if let Some((_, old, at)) = defs.iter().find(|d| d.0 == name) {
                assert_eq!(*old, v, "{name} is {old} in {at} but {v} in {file}");
                continue;
            }
            defs.push((name.to_string(), v, file.clone()));
        }
    }
    let mut rs = String::from("// Generated by build.rs from the #defines of kernels/.\n");
    for (name, v, file) in &defs {
        rs.push_str(&format!(
            "/// `{name}` of kernels/{file}.\npub const {name}: usize = {v};\n"
        ));
    }
    fs::write(dst, rs).unwrap_or_else(|e| panic!("writing {}: {e}", dst.display()));
}

/// `kernels/*.cu`, sorted so the generated table is stable.
fn kernel_sources(kdir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(kdir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kdir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    v.sort();
    v
}

/// The source with every `#include "x.cuh"` (a header of ours) replaced by the header's text,
/// so NVRTC needs no include path for our own headers.
fn flatten(path: &Path, kdir: &Path, depth: usize) -> String {
    assert!(depth < 8, "include nesting too deep at {}", path.display());
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let t = line.trim();
        let local = t
            .strip_prefix("#include \"")
            .and_then(|r| r.strip_suffix('"'));
        match local {
            Some(name) if name.ends_with(".cuh") => {
                out.push_str(&format!("// ---- begin {name} ----\n"));
                out.push_str(&flatten(&kdir.join(name), kdir, depth + 1));
                out.push_str(&format!("// ---- end {name} ----\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "NVCC={} does not exist", p.display());
        return Some(p);
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = env::var_os(var) {
            let p = PathBuf::from(home).join("bin").join("nvcc");
            if p.exists() {
                return Some(p);
            }
        }
    }
    let ok = Command::new("nvcc")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then(|| PathBuf::from("nvcc"))
}

/// Include directories that a pip-installed nvcc does not find by itself (CCCL headers).
fn nvcc_includes(nvcc: &Path) -> Vec<PathBuf> {
    let Some(bin) = nvcc.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Vec::new();
    };
    let inc = bin.join("..").join("include");
    [inc.join("cccl"), inc]
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
}

/// Compiles one kernel file to PTX and to a fatbin; panics with nvcc's output on failure.
fn compile(
    nvcc: &Path,
    src: &Path,
    kdir: &Path,
    out: &Path,
    stem: &str,
) -> (Option<PathBuf>, Option<PathBuf>) {
    let archs = env::var("CINESEG_CUDA_ARCHS").unwrap_or_else(|_| "80,87,90".into());
    let mut common: Vec<String> = vec![
        "-std=c++17".into(),
        "-O3".into(),
        format!("-I{}", kdir.display()),
    ];
    common.extend(
        nvcc_includes(nvcc)
            .iter()
            .map(|p| format!("-I{}", p.display())),
    );
    let ptx = out.join(format!("{stem}.ptx"));
    let fatbin = out.join(format!("{stem}.fatbin"));
    let mut fat_args = vec!["--fatbin".to_string()];
    for a in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        fat_args.push("-gencode".into());
        fat_args.push(format!("arch=compute_{a},code=sm_{a}"));
    }
    fat_args.push("-gencode".into());
    fat_args.push("arch=compute_80,code=compute_80".into());
    let jobs: [(Vec<String>, &PathBuf); 2] = [
        (vec!["--ptx".into(), "-arch=compute_80".into()], &ptx),
        (fat_args, &fatbin),
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(args, dst)| {
                let common = &common;
                s.spawn(move || {
                    let o = Command::new(nvcc)
                        .args(args)
                        .args(common)
                        .arg("-o")
                        .arg(dst)
                        .arg(src)
                        .output()
                        .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
                    if !o.status.success() {
                        panic!(
                            "nvcc failed on {} ({}):\n{}{}",
                            src.display(),
                            args.join(" "),
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
    (Some(ptx), Some(fatbin))
}

type Entry = (String, PathBuf, Option<PathBuf>, Option<PathBuf>);

fn write_table(dst: &Path, entries: &[Entry]) {
    let lit = |p: &Path| format!("{:?}", p.display().to_string());
    let mut s = String::from("// Generated by build.rs: one entry per kernels/*.cu.\npub static KERNEL_IMAGES: &[KernelImage] = &[\n");
    for (stem, flat, ptx, fatbin) in entries {
        s.push_str(&format!(
            "    KernelImage {{\n        name: {stem:?},\n        source: include_str!({}),\n",
            lit(flat)
        ));
        match ptx {
            Some(p) => s.push_str(&format!("        ptx: Some(include_str!({})),\n", lit(p))),
            None => s.push_str("        ptx: None,\n"),
        }
        match fatbin {
            Some(p) => s.push_str(&format!(
                "        fatbin: Some(include_bytes!({})),\n",
                lit(p)
            )),
            None => s.push_str("        fatbin: None,\n"),
        }
        s.push_str("    },\n");
    }
    s.push_str("];\n");
    fs::write(dst, s).unwrap_or_else(|e| panic!("writing {}: {e}", dst.display()));
}
