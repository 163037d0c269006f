//! Device memory as raw addresses, behind a trait so the training composition (`train`) runs
//! on the GPU ([`Launcher`]) and, in tests, on the CPU kernel simulator, where a "device
//! address" is simply a host pointer (tests/train_sim.rs).

use super::launch::{Launch, Launcher};
use crate::nn::NnError;
use cudarc::driver::{result, CudaSlice};
use std::any::Any;

/// An owned device allocation. The owner (a `CudaSlice`, or host memory in the simulator) is
/// kept alive here; kernels only ever see `addr`.
pub struct Buf {
    addr: u64,
    bytes: usize,
    _owner: Box<dyn Any + Send>,
}

impl Buf {
    /// Wraps an allocation of `bytes` at `addr` that `owner` keeps alive.
    pub fn new(addr: u64, bytes: usize, owner: Box<dyn Any + Send>) -> Self {
        Buf {
            addr,
            bytes,
            _owner: owner,
        }
    }

    /// Address of element `off` when the buffer holds values of type `T`.
    pub fn at<T>(&self, off: usize) -> u64 {
        debug_assert!(
            (off * std::mem::size_of::<T>()) <= self.bytes,
            "offset {off} past a {}-byte buffer",
            self.bytes
        );
        self.addr + (off * std::mem::size_of::<T>()) as u64
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Allocation and copies, in the same stream order as the launches.
pub trait DeviceMem {
    /// A zero-filled allocation of `bytes` (at least 256-byte aligned, as cudaMalloc is).
    fn alloc(&self, bytes: usize) -> Result<Buf, NnError>;
    /// Zeroes `bytes` at `addr` (queued).
    fn zero(&self, addr: u64, bytes: usize) -> Result<(), NnError>;
    /// Copies `src` to `addr` (the host buffer may be reused as soon as this returns).
    fn upload(&self, addr: u64, src: &[u8]) -> Result<(), NnError>;
    /// Copies from `addr` into `dst` after all queued work, and waits for it.
    fn download(&self, addr: u64, dst: &mut [u8]) -> Result<(), NnError>;
}

/// Everything the training step needs from a device.
pub trait Device: Launch + DeviceMem {}
impl<T: Launch + DeviceMem + ?Sized> Device for T {}

fn dev(what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> NnError {
    move |e| NnError::Device(format!("{what}: {e}"))
}

impl DeviceMem for Launcher {
    fn alloc(&self, bytes: usize) -> Result<Buf, NnError> {
        let s: CudaSlice<u8> = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(dev("allocating training buffers"))?;
        let addr = super::launch::addr(&s, &self.stream, 0);
        Ok(Buf::new(addr, bytes, Box::new(s)))
    }

    fn zero(&self, addr: u64, bytes: usize) -> Result<(), NnError> {
        self.stream
            .context()
            .bind_to_thread()
            .map_err(dev("binding the CUDA context"))?;
        // SAFETY: `addr..addr+bytes` lies inside a live `Buf` of this backend (callers pass
        // ranges of their own buffers); the memset is ordered on the backend's only stream.
        unsafe { result::memset_d8_async(addr, 0, bytes, self.stream.cu_stream()) }
            .map_err(dev("zeroing a buffer"))
    }

    fn upload(&self, addr: u64, src: &[u8]) -> Result<(), NnError> {
        self.stream
            .context()
            .bind_to_thread()
            .map_err(dev("binding the CUDA context"))?;
        // SAFETY: destination as in `zero`. The source is pageable host memory, which
        // cuMemcpyHtoDAsync stages before returning, so `src` may be dropped afterwards.
        unsafe { result::memcpy_htod_async(addr, src, self.stream.cu_stream()) }
            .map_err(dev("uploading to the GPU"))
    }

    fn download(&self, addr: u64, dst: &mut [u8]) -> Result<(), NnError> {
        self.stream
            .context()
            .bind_to_thread()
            .map_err(dev("binding the CUDA context"))?;
        // SAFETY: source as in `zero`; we wait for the stream before `dst` is read or dropped.
        unsafe { result::memcpy_dtoh_async(dst, addr, self.stream.cu_stream()) }
            .map_err(dev("downloading from the GPU"))?;
        self.stream
            .synchronize()
            .map_err(dev("waiting for the GPU"))
    }
}
