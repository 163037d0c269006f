// 2x2 max-pool, stride 2, with the winning position kept for the backward pass (0..3,
// row-major in the window, first maximum wins ties as in PyTorch). Mirrors src/nn/cpu/pool.rs.
#include "common.cuh"

// x: n x h x w x c (row stride ldx, so it can be the skip slice of a concatenation buffer);
// y, idx: n x h/2 x w/2 x c, dense.
CS_EXTERN __global__ void maxpool2_fwd(const __half *__restrict__ x, int ldx, __half *__restrict__ y,
                                       unsigned char *__restrict__ idx, int n, int h, int w, int c) {
  const int ho = h / 2, wo = w / 2;
  GRID_LOOP(i, (long long)n * ho * wo * c) {
    int ch = int(i % c);
    long long p = i / c;
    int xo = int(p % wo), yo = int((p / wo) % ho), img = int(p / ((long long)wo * ho));
    float best = 0.0f;
    int arg = 0;
    for (int k = 0; k < 4; ++k) {
      long long s = ((long long)(img * h + 2 * yo + k / 2) * w + 2 * xo + k % 2) * ldx + ch;
      float v = h2f(x[s]);
      if (k == 0 || v > best) {
        best = v;
        arg = k;
      }
    }
    y[i] = f2h(best);
    idx[i] = (unsigned char)arg;
  }
}

// dx (n x h x w x c, dense) = gradient routed to the winner of each window, plus `add` (the
// skip connection's gradient, row stride ld_add) when not null. One thread per input value,
// so no atomics and every value of dx is written.
CS_EXTERN __global__ void maxpool2_bwd(const __half *__restrict__ dout, const unsigned char *__restrict__ idx,
                                       const __half *__restrict__ add, int ld_add, __half *__restrict__ dx, int n, int h,
                                       int w, int c) {
  const int ho = h / 2, wo = w / 2;
  GRID_LOOP(i, (long long)n * h * w * c) {
    int ch = int(i % c);
    long long p = i / c;
    int xx = int(p % w), yy = int((p / w) % h), img = int(p / ((long long)w * h));
    float g = 0.0f;
    if (yy / 2 < ho && xx / 2 < wo) {
      long long o = ((long long)(img * ho + yy / 2) * wo + xx / 2) * c + ch;
      if (idx[o] == (unsigned char)((yy % 2) * 2 + xx % 2)) g = h2f(dout[o]);
    }
    if (add) g += h2f(add[p * ld_add + ch]);
    dx[i] = f2h(g);
  }
}
