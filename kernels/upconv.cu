// 2x2 stride-2 transposed convolution with bias, writing straight into its channel slice of
// the decoder's concatenation buffer; data gradient, weight gradient and bias gradient.
// Weights packed as on the CPU (src/nn/cpu/upconv.rs): wpk[ci][tap * cout + co], tap = a*2+b,
// where output pixel (2y+a, 2x+b) takes input pixel (y, x). SIMT fp32 accumulation: these are
// ~4 % of the network's FLOPs.
#include "common.cuh"

// y (n x 2h x 2w, row stride ldy, pointer at the first channel of the slice) = upconv(x) + bias.
CS_EXTERN __global__ void upconv2_fwd(const __half *__restrict__ x, int ldx, const __half *__restrict__ wpk,
                                      const float *__restrict__ bias, __half *__restrict__ y, int ldy, int n, int h,
                                      int w, int cin, int cout) {
  const int H = 2 * h, W = 2 * w;
  GRID_LOOP(i, (long long)n * H * W * cout) {
    int co = int(i % cout);
    long long q = i / cout;
    int X = int(q % W), Y = int((q / W) % H), img = int(q / ((long long)W * H));
    int tap = (Y % 2) * 2 + X % 2;
    const __half *xr = x + ((long long)(img * h + Y / 2) * w + X / 2) * ldx;
    float s = bias[co];
    for (int ci = 0; ci < cin; ++ci) s += h2f(xr[ci]) * h2f(wpk[(long long)ci * 4 * cout + tap * cout + co]);
    y[q * ldy + co] = f2h(s);
  }
}

// dx[p][ci] = sum over taps and co of dy[out(p, tap)][co] * wpk[ci][tap*cout+co]. dx dense.
CS_EXTERN __global__ void upconv2_bwd_data(const __half *__restrict__ dy, int lddy, const __half *__restrict__ wpk,
                                           __half *__restrict__ dx, int n, int h, int w, int cin, int cout) {
  const int W = 2 * w;
  GRID_LOOP(i, (long long)n * h * w * cin) {
    int ci = int(i % cin);
    long long p = i / cin;
    int xx = int(p % w), yy = int((p / w) % h), img = int(p / ((long long)w * h));
    float s = 0.0f;
    for (int tap = 0; tap < 4; ++tap) {
      long long q = (long long)(img * 2 * h + 2 * yy + tap / 2) * W + 2 * xx + tap % 2;
      const __half *dr = dy + q * lddy;
      const __half *wr = wpk + (long long)ci * 4 * cout + tap * cout;
      for (int co = 0; co < cout; ++co) s += h2f(dr[co]) * h2f(wr[co]);
    }
    dx[i] = f2h(s);
  }
}

// dw_iohw[ci][co][tap] += sum over input pixels in this block's range of x[p][ci] * dy[out(p,tap)][co].
// Grid (ceil(cin*cout*4 / blockDim.x), splits); blockIdx.y reduces pixels
// [y*pixels_per_split, (y+1)*pixels_per_split) and adds with an fp32 atomic.
CS_EXTERN __global__ void upconv2_wgrad(const __half *__restrict__ x, int ldx, const __half *__restrict__ dy, int lddy,
                                        float *__restrict__ dw, int n, int h, int w, int cin, int cout,
                                        long long pixels_per_split) {
  const long long P = (long long)n * h * w;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long long)cin * cout * 4) return;
  const int tap = int(i % 4), co = int((i / 4) % cout), ci = int(i / (4LL * cout));
  const long long p0 = (long long)blockIdx.y * pixels_per_split;
  const long long p1 = p0 + pixels_per_split < P ? p0 + pixels_per_split : P;
  float s = 0.0f;
  for (long long p = p0; p < p1; ++p) {
    int xx = int(p % w), yy = int((p / w) % h), img = int(p / ((long long)w * h));
    long long q = (long long)(img * 2 * h + 2 * yy + tap / 2) * (2 * w) + 2 * xx + tap % 2;
    s += h2f(x[p * ldx + ci]) * h2f(dy[q * lddy + co]);
  }
  atomicAdd(&dw[i], s);
}

// fp32 IOHW master weights -> fp16 packed [ci][tap*cout+co].
CS_EXTERN __global__ void upconv2_pack(const float *__restrict__ w_iohw, __half *__restrict__ wpk, int cin, int cout) {
  GRID_LOOP(i, (long long)cin * cout * 4) {
    int tap = int(i % 4), co = int((i / 4) % cout), ci = int(i / (4LL * cout));
    wpk[(long long)ci * 4 * cout + tap * cout + co] = f2h(w_iohw[i]);
  }
}
