// Shared helpers of cineseg's kernels. Every kernel file includes this first.
//
// Conventions (all kernels):
// - Activations are NHWC fp16 (`__half`), channels fastest, like the CPU backend. A tensor may
//   be a channel slice of a wider buffer (the decoder's [skip, up] concatenation): then it is
//   given as a pointer to its first channel plus `ld`, the row stride in elements.
// - Accumulation is fp32 (tensor cores) and per-channel statistics are fp64 atomics, so sums
//   over a whole batch do not lose the small terms.
// - Kernel names are `extern "C"` so the host looks them up by plain name.
// - Built three ways: nvcc (PTX and cubins, build.rs), NVRTC from the embedded source (our
//   headers inlined by build.rs), and g++ against sim/cuda_sim.h for CPU tests (CINESEG_SIM).
#pragma once

#ifdef CINESEG_SIM
#include "sim/cuda_sim.h"
#else
#include <cuda_fp16.h>
#include <mma.h>
#endif

using namespace nvcuda;

#define CS_EXTERN extern "C"

__device__ __forceinline__ float h2f(__half v) { return __half2float(v); }
__device__ __forceinline__ __half f2h(float v) { return __float2half_rn(v); }
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ bool finite_f(float v) { return v - v == 0.0f; }  // false for inf, nan

// Sum over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Global linear index and stride of a 1-D grid-stride loop, 64-bit so that batch 128 at 192x192
// with 256 channels (1.2e9 values) cannot overflow.
#define GRID_LOOP(i, n) \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); i += (long long)blockDim.x * gridDim.x)
