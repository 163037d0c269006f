//! The kernel simulator (kernels/sim/lib.cpp) as a CUDA "device": compiled with the system's C++
//! compiler into a shared library and loaded, with host memory standing in for device memory
//! (a device address is a host pointer). The real launch code and the GPU compositions
//! (training in src/nn/cuda/train/, inference in src/nn/cuda/infer.rs) run against it
//! unchanged, so every launch's order, offsets and argument list is checked without a GPU.
#![allow(dead_code)]

use cineseg::nn::cuda::device::{Buf, DeviceMem};
use cineseg::nn::cuda::launch::{Arg, Launch};
use cineseg::nn::NnError;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// One kernel argument as kernels/sim/lib.cpp reads it.
#[repr(C)]
struct Slot {
    tag: i32,
    bits: u64,
}

type LaunchFn =
    unsafe extern "C" fn(*const c_char, *const u32, *const u32, *const Slot, i32) -> i32;
type ErrorFn = unsafe extern "C" fn() -> *const c_char;

/// The simulator library; launches are serialised (it has one global scheduler).
pub struct Sim {
    lib: libloading::Library,
}

static LOCK: Mutex<()> = Mutex::new(());

pub fn sim() -> Result<&'static Sim, String> {
    static SIM: OnceLock<Result<Sim, String>> = OnceLock::new();
    SIM.get_or_init(|| {
        let cxx = std::env::var("CXX")
            .ok()
            .into_iter()
            .chain(["g++".to_string(), "clang++".to_string()])
            .find(|c| {
                Command::new(c)
                    .arg("--version")
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            });
        let cxx = cxx.ok_or("no C++ compiler (CXX, g++, clang++)")?;
        let so: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libcineseg_sim.so");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/sim/lib.cpp");
        let out = Command::new(&cxx)
            .args([
                "-std=c++17",
                "-O2",
                "-Wall",
                "-Wno-unused-function",
                "-shared",
                "-fPIC",
                "-o",
            ])
            .arg(&so)
            .arg(&src)
            .output()
            .map_err(|e| format!("{cxx}: {e}"))?;
        assert!(
            out.status.success(),
            "simulator library does not compile:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY: our own library, with no initialisers besides C++ statics.
        let lib = unsafe { libloading::Library::new(&so) }
            .map_err(|e| format!("loading {}: {e}", so.display()))?;
        Ok(Sim { lib })
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// The simulator, or prints "skipped: <why>" and returns from the test.
macro_rules! need_sim {
    () => {
        match sim() {
            Ok(s) => s,
            Err(why) => {
                println!("skipped: {why}");
                return;
            }
        }
    };
}

impl Launch for Sim {
    fn launch(
        &self,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[Arg],
    ) -> Result<(), NnError> {
        let slots: Vec<Slot> = args
            .iter()
            .map(|a| match *a {
                Arg::P(v) => Slot { tag: 0, bits: v },
                Arg::I(v) => Slot {
                    tag: 1,
                    bits: v as i64 as u64,
                },
                Arg::L(v) => Slot {
                    tag: 2,
                    bits: v as u64,
                },
                Arg::F(v) => Slot {
                    tag: 3,
                    bits: v.to_bits() as u64,
                },
            })
            .collect();
        let cname =
            CString::new(name).map_err(|_| NnError::Device("kernel name with NUL".into()))?;
        let (g, b) = ([grid.0, grid.1, grid.2], [block.0, block.1, block.2]);
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: symbols of kernels/sim/lib.cpp with these exact signatures; every pointer
        // argument is an address inside a live `Buf` of this test (host memory).
        unsafe {
            let f: libloading::Symbol<LaunchFn> = self
                .lib
                .get(b"cineseg_sim_launch")
                .map_err(|e| NnError::Device(e.to_string()))?;
            if f(
                cname.as_ptr(),
                g.as_ptr(),
                b.as_ptr(),
                slots.as_ptr(),
                slots.len() as i32,
            ) != 0
            {
                let e: libloading::Symbol<ErrorFn> = self
                    .lib
                    .get(b"cineseg_sim_error")
                    .map_err(|e| NnError::Device(e.to_string()))?;
                return Err(NnError::Device(
                    CStr::from_ptr(e()).to_string_lossy().into_owned(),
                ));
            }
        }
        Ok(())
    }

    fn sms(&self) -> usize {
        2
    }
}

/// 256-byte aligned host memory, like cudaMalloc's.
#[repr(C, align(256))]
#[derive(Clone, Copy)]
struct Chunk([u8; 256]);

impl DeviceMem for Sim {
    fn alloc(&self, bytes: usize) -> Result<Buf, NnError> {
        let v = vec![Chunk([0; 256]); bytes.div_ceil(256).max(1)];
        let addr = v.as_ptr() as u64;
        Ok(Buf::new(addr, bytes, Box::new(v)))
    }
    fn zero(&self, addr: u64, bytes: usize) -> Result<(), NnError> {
        // SAFETY: callers pass ranges inside their own `Buf`s.
        unsafe { std::ptr::write_bytes(addr as *mut u8, 0, bytes) };
        Ok(())
    }
    fn upload(&self, addr: u64, src: &[u8]) -> Result<(), NnError> {
        // SAFETY: as in `zero`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), addr as *mut u8, src.len()) };
        Ok(())
    }
    fn download(&self, addr: u64, dst: &mut [u8]) -> Result<(), NnError> {
        // SAFETY: as in `zero`.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }
}
