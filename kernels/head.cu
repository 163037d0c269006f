// The 1x1 output convolution with bias (features -> class logits, fp32 so the loss sees full
// precision) and its backward. Mirrors src/nn/cpu/head.rs.
#include "common.cuh"

#define HEAD_MAXC 512

// logits[p][k] = b[k] + sum_ci x[p][ci] * w[k][ci]; one thread per (pixel, class).
CS_EXTERN __global__ void head_fwd(const __half *__restrict__ x, int ldx, const float *__restrict__ w,
                                   const float *__restrict__ b, float *__restrict__ logits, long long rows, int c, int k) {
  GRID_LOOP(i, rows * k) {
    long long p = i / k;
    int cl = int(i - p * k);
    const __half *xr = x + p * ldx;
    const float *wr = w + (long long)cl * c;
    float s = b[cl];
    for (int ci = 0; ci < c; ++ci) s += h2f(xr[ci]) * wr[ci];
    logits[i] = s;
  }
}

// dx[p][ci] = sum_k dl[p][k] * w[k][ci] (fp16 out; dl already carries the loss scale).
CS_EXTERN __global__ void head_bwd_data(const float *__restrict__ dl, const float *__restrict__ w,
                                        __half *__restrict__ dx, long long rows, int c, int k) {
  GRID_LOOP(i, rows * c) {
    long long p = i / c;
    int ci = int(i - p * c);
    float s = 0.0f;
    for (int cl = 0; cl < k; ++cl) s += dl[p * k + cl] * w[(long long)cl * c + ci];
    dx[i] = f2h(s);
  }
}

// dw[k][ci] += sum_p dl[p][k] * x[p][ci], db[k] += sum_p dl[p][k]. Thread j < k*c handles a
// weight, j in [k*c, k*c + k) a bias; blockIdx.y takes pixels [y*pps, (y+1)*pps).
CS_EXTERN __global__ void head_wgrad(const __half *__restrict__ x, int ldx, const float *__restrict__ dl,
                                     float *__restrict__ dw, float *__restrict__ db, long long rows, int c, int k,
                                     long long pixels_per_split) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= k * c + k) return;
  const long long p0 = (long long)blockIdx.y * pixels_per_split;
  const long long p1 = p0 + pixels_per_split < rows ? p0 + pixels_per_split : rows;
  float s = 0.0f;
  if (j < k * c) {
    const int cl = j / c, ci = j % c;
    for (long long p = p0; p < p1; ++p) s += dl[p * k + cl] * h2f(x[p * ldx + ci]);
    atomicAdd(&dw[j], s);
  } else {
    const int cl = j - k * c;
    for (long long p = p0; p < p1; ++p) s += dl[p * k + cl];
    atomicAdd(&db[cl], s);
  }
}
