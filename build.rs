//! Build script. The CUDA kernel compilation (nvcc, embedded PTX/cubins and sources) is added by
//! the CUDA backend; for now it only declares that nothing outside `kernels/` matters.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
}
