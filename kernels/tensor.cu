// Plain tensor plumbing: fp32 <-> fp16 conversion, channel-slice copies for the decoder's
// concatenation (most producers write into their slice directly; this is for the rest, e.g.
// the network input), and per-channel sums (bias gradients).
#include "common.cuh"

CS_EXTERN __global__ void f32_to_f16(const float *__restrict__ src, __half *__restrict__ dst, long long n) {
  GRID_LOOP(i, n) dst[i] = f2h(src[i]);
}

CS_EXTERN __global__ void f16_to_f32(const __half *__restrict__ src, float *__restrict__ dst, long long n) {
  GRID_LOOP(i, n) dst[i] = h2f(src[i]);
}

// dst[r * ldd + ch] = src[r * lds + ch] for ch < c: copies a tensor into (or out of) a channel
// slice of a wider buffer.
CS_EXTERN __global__ void copy_channels(const __half *__restrict__ src, int lds, __half *__restrict__ dst, int ldd,
                                        long long rows, int c) {
  GRID_LOOP(i, rows * c) {
    long long r = i / c;
    int ch = int(i - r * c);
    dst[r * ldd + ch] = src[r * lds + ch];
  }
}

#define CSUM_TX 32
#define CSUM_TY 8
// out[ch] += sum over rows of src[r * ld + ch] (fp64 accumulation), block (32, 8).
CS_EXTERN __global__ void channel_sums_f16(const __half *__restrict__ src, int ld, long long rows, int c,
                                           float *__restrict__ out) {
  __shared__ float red[CSUM_TY][CSUM_TX];
  const int ch = blockIdx.x * CSUM_TX + threadIdx.x;
  float s = 0.0f;
  if (ch < c)
    for (long long r = (long long)blockIdx.y * CSUM_TY + threadIdx.y; r < rows; r += (long long)gridDim.y * CSUM_TY)
      s += h2f(src[r * ld + ch]);
  red[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    float a = 0.0f;
    for (int t = 0; t < CSUM_TY; ++t) a += red[t][threadIdx.x];
    atomicAdd(&out[ch], a);
  }
}
