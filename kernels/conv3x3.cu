// 3x3 convolution, stride 1, padding 1, NHWC fp16, as an implicit GEMM on the tensor cores
// (WMMA 16x16x16, fp16 inputs, fp32 accumulation): forward with fused epilogues, data gradient
// (the forward kernel on flipped, transposed weights) and weight gradient.
//
// GEMM view (same as the CPU backend, src/nn/cpu/conv3x3.rs):
//   forward  Y[m][co] = sum_k A[m][k] * W[k][co],  m = pixel, k = tap * cin + ci, tap = ky*3+kx,
//            A[m][k] = x[pixel m shifted by (ky-1, kx-1)][ci] or 0 outside the image (never
//            materialised: tiles are gathered straight from x, hence "implicit").
//   dgrad    dX = conv3x3_fwd(dY, Wd) with Wd[(tap*cout+co)][ci] = W_oihw[co][ci][8-tap].
//   wgrad    dW[k][co] = sum_m A[m][k] * dY[m][co], reduced over pixel ranges split across
//            blocks (grid.z) and added with fp32 atomics straight into the OIHW gradient.
#include "common.cuh"

#define CONV_BM 64   // pixels per block tile
#define CONV_BN 64   // output channels per block tile
#define CONV_BK 32   // reduction slice
#define CONV_THREADS 128
#define A_LD (CONV_BK + 8)
#define B_LD (CONV_BN + 8)
#define C_LD (CONV_BN + 4)

// Pixel index m of an h x w image batch -> image, row, column.
struct Pix {
  int img, y, x;
};
__device__ __forceinline__ Pix pix_of(long long m, int h, int w) {
  Pix p;
  p.img = int(m / (h * w));
  int rem = int(m - (long long)p.img * h * w);
  p.y = rem / w;
  p.x = rem - p.y * w;
  return p;
}

// Offset of im2col element (pixel m, reduction index k) in x, or -1 for zero padding.
__device__ __forceinline__ long long im2col_off(Pix p, int k, int h, int w, int cin, int ldx) {
  int tap = k / cin, ci = k - tap * cin;
  int yy = p.y + tap / 3 - 1, xx = p.x + tap % 3 - 1;
  if (yy < 0 || yy >= h || xx < 0 || xx >= w) return -1;
  return ((long long)(p.img * h + yy) * w + xx) * ldx + ci;
}

// Gathers the A tile (CONV_BM pixels x CONV_BK reduction values) into shared memory. Vector
// path (8 halves at once) when every 8-aligned run of k lies inside one tap and is 16-byte
// aligned in memory: cin and ldx multiples of 8.
__device__ __forceinline__ void load_a_tile(__half *As, const __half *x, long long m0, int k0, long long M, int K, int h,
                                            int w, int cin, int ldx, bool vec) {
  const int tid = threadIdx.x;
  if (vec) {
    for (int c = tid; c < CONV_BM * (CONV_BK / 8); c += CONV_THREADS) {
      int r = c / (CONV_BK / 8), kk = (c % (CONV_BK / 8)) * 8;
      long long m = m0 + r;
      int k = k0 + kk;
      uint4 v = {0u, 0u, 0u, 0u};
      if (m < M && k < K) {
        long long off = im2col_off(pix_of(m, h, w), k, h, w, cin, ldx);
        if (off >= 0) v = *reinterpret_cast<const uint4 *>(x + off);
      }
      *reinterpret_cast<uint4 *>(As + r * A_LD + kk) = v;
    }
  } else {
    for (int e = tid; e < CONV_BM * CONV_BK; e += CONV_THREADS) {
      int r = e / CONV_BK, kk = e % CONV_BK;
      long long m = m0 + r;
      int k = k0 + kk;
      __half v = f2h(0.0f);
      if (m < M && k < K) {
        long long off = im2col_off(pix_of(m, h, w), k, h, w, cin, ldx);
        if (off >= 0) v = x[off];
      }
      As[r * A_LD + kk] = v;
    }
  }
}

// Loads a (rows x CONV_BN) slice of a row-major [rows_total x ncols] fp16 matrix.
__device__ __forceinline__ void load_rows(__half *Bs, int ld_s, const __half *src, long long ld_src, long long r0,
                                          long long rows_total, int rows, int c0, int ncols, bool vec) {
  const int tid = threadIdx.x;
  if (vec) {
    for (int c = tid; c < rows * (CONV_BN / 8); c += CONV_THREADS) {
      int r = c / (CONV_BN / 8), cc = (c % (CONV_BN / 8)) * 8;
      uint4 v = {0u, 0u, 0u, 0u};
      if (r0 + r < rows_total && c0 + cc < ncols) v = *reinterpret_cast<const uint4 *>(src + (r0 + r) * ld_src + c0 + cc);
      *reinterpret_cast<uint4 *>(Bs + r * ld_s + cc) = v;
    }
  } else {
    for (int e = tid; e < rows * CONV_BN; e += CONV_THREADS) {
      int r = e / CONV_BN, cc = e % CONV_BN;
      __half v = f2h(0.0f);
      if (r0 + r < rows_total && c0 + cc < ncols) v = src[(r0 + r) * ld_src + c0 + cc];
      Bs[r * ld_s + cc] = v;
    }
  }
}

// Forward (and, with dgrad-packed weights and no epilogue, the data gradient).
//   x: pixels x cin (row stride ldx); wpk: [(tap*cin+ci) x cout] fp16; y: pixels x cout (row
//   stride ldy). Epilogue, in this order: + bias[co] (if bias), ReLU (if relu), round to fp16,
//   store; and if stats: stats[co] += v, stats[cout+co] += v*v over the rounded values (the
//   BatchNorm statistics of training mode, so no second pass over y is needed).
CS_EXTERN __global__ void __launch_bounds__(CONV_THREADS)
    conv3x3_fwd(const __half *__restrict__ x, int ldx, const __half *__restrict__ wpk, __half *__restrict__ y, int ldy,
                const float *__restrict__ bias, int relu, double *__restrict__ stats, int n, int h, int w, int cin,
                int cout) {
  __shared__ __align__(32) __half As[CONV_BM * A_LD];
  __shared__ __align__(32) __half Bs[CONV_BK * B_LD];
  __shared__ __align__(32) float Cs[CONV_BM * C_LD];
  const long long M = (long long)n * h * w;
  const int K = 9 * cin;
  const long long m0 = (long long)blockIdx.x * CONV_BM;
  const int n0 = blockIdx.y * CONV_BN;
  const int warp = threadIdx.x / 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const bool avec = (cin % 8 == 0) && (ldx % 8 == 0);
  const bool bvec = (cout % 8 == 0);

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = 0; k0 < K; k0 += CONV_BK) {
    load_a_tile(As, x, m0, k0, M, K, h, w, cin, ldx, avec);
    load_rows(Bs, B_LD, wpk, cout, k0, K, CONV_BK, n0, cout, bvec);
    __syncthreads();
    for (int kk = 0; kk < CONV_BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[2];
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], As + (wm + 16 * i) * A_LD + kk, A_LD);
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Bs + kk * B_LD + wn + 16 * j, B_LD);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm + 16 * i) * C_LD + wn + 16 * j, acc[i][j], C_LD, wmma::mem_row_major);
  __syncthreads();

  // Epilogue: threads walk the tile with the channel fastest (coalesced NHWC stores).
  for (int e = threadIdx.x; e < CONV_BM * CONV_BN; e += CONV_THREADS) {
    int r = e / CONV_BN, c = e % CONV_BN;
    long long m = m0 + r;
    int co = n0 + c;
    if (m >= M || co >= cout) continue;
    float v = Cs[r * C_LD + c];
    if (bias) v += bias[co];
    if (relu) v = fmaxf(v, 0.0f);
    __half hv = f2h(v);
    y[m * ldy + co] = hv;
    Cs[r * C_LD + c] = h2f(hv);
  }
  if (stats) {
    __syncthreads();
    // Column sums of the rounded tile: 2 threads per channel, then one fp64 atomic each.
    int c = threadIdx.x % CONV_BN, half_ = threadIdx.x / CONV_BN;
    int rows = (int)(M - m0 < CONV_BM ? M - m0 : CONV_BM);
    float s = 0.0f, q = 0.0f;
    for (int r = half_; r < rows; r += CONV_THREADS / CONV_BN) {
      float v = Cs[r * C_LD + c];
      s += v;
      q += v * v;
    }
    if (n0 + c < cout) {
      atomicAdd(&stats[n0 + c], (double)s);
      atomicAdd(&stats[cout + n0 + c], (double)q);
    }
  }
}

// Weight gradient: dw_oihw[co][ci][tap] += sum over pixels of A[m][tap*cin+ci] * dy[m][co].
// Grid (ceil(9cin/64), ceil(cout/64), splits); block z reduces pixels
// [z*pixels_per_split, (z+1)*pixels_per_split). dw must be zeroed (or hold a gradient to add to).
CS_EXTERN __global__ void __launch_bounds__(CONV_THREADS)
    conv3x3_wgrad(const __half *__restrict__ x, int ldx, const __half *__restrict__ dy, int lddy, float *__restrict__ dw,
                  int n, int h, int w, int cin, int cout, long long pixels_per_split) {
  __shared__ __align__(32) __half Xs[CONV_BK * B_LD];  // [pixel][k]
  __shared__ __align__(32) __half Ds[CONV_BK * B_LD];  // [pixel][co]
  __shared__ __align__(32) float Cs[CONV_BM * C_LD];   // [k][co]
  const long long M = (long long)n * h * w;
  const int K = 9 * cin;
  const int k0 = blockIdx.x * CONV_BM;
  const int n0 = blockIdx.y * CONV_BN;
  const long long p_begin = (long long)blockIdx.z * pixels_per_split;
  const long long p_end = p_begin + pixels_per_split < M ? p_begin + pixels_per_split : M;
  const int warp = threadIdx.x / 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const bool xvec = (cin % 8 == 0) && (ldx % 8 == 0);
  const bool dvec = (cout % 8 == 0) && (lddy % 8 == 0);

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (long long p0 = p_begin; p0 < p_end; p0 += CONV_BK) {
    // Xs[p][kk] = A[p0+p][k0+kk]
    if (xvec) {
      for (int c = threadIdx.x; c < CONV_BK * (CONV_BM / 8); c += CONV_THREADS) {
        int p = c / (CONV_BM / 8), kk = (c % (CONV_BM / 8)) * 8;
        uint4 v = {0u, 0u, 0u, 0u};
        if (p0 + p < p_end && k0 + kk < K) {
          long long off = im2col_off(pix_of(p0 + p, h, w), k0 + kk, h, w, cin, ldx);
          if (off >= 0) v = *reinterpret_cast<const uint4 *>(x + off);
        }
        *reinterpret_cast<uint4 *>(Xs + p * B_LD + kk) = v;
      }
    } else {
      for (int e = threadIdx.x; e < CONV_BK * CONV_BM; e += CONV_THREADS) {
        int p = e / CONV_BM, kk = e % CONV_BM;
        __half v = f2h(0.0f);
        if (p0 + p < p_end && k0 + kk < K) {
          long long off = im2col_off(pix_of(p0 + p, h, w), k0 + kk, h, w, cin, ldx);
          if (off >= 0) v = x[off];
        }
        Xs[p * B_LD + kk] = v;
      }
    }
    load_rows(Ds, B_LD, dy, lddy, p0, p_end, CONV_BK, n0, cout, dvec);
    __syncthreads();
    for (int kp = 0; kp < CONV_BK; kp += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::col_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[2];
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], Xs + kp * B_LD + wm + 16 * i, B_LD);
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Ds + kp * B_LD + wn + 16 * j, B_LD);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm + 16 * i) * C_LD + wn + 16 * j, acc[i][j], C_LD, wmma::mem_row_major);
  __syncthreads();
  for (int e = threadIdx.x; e < CONV_BM * CONV_BN; e += CONV_THREADS) {
    int r = e / CONV_BN, c = e % CONV_BN;
    int k = k0 + r, co = n0 + c;
    if (k >= K || co >= cout) continue;
    int tap = k / cin, ci = k - tap * cin;
    atomicAdd(&dw[((long long)co * cin + ci) * 9 + tap], Cs[r * C_LD + c]);
  }
}

// fp32 OIHW master weights -> fp16 packed forward weights (optionally scaled per output channel:
// the folded BatchNorm of inference) and, if `dgrad` is not null, fp16 data-gradient weights.
CS_EXTERN __global__ void conv3x3_pack(const float *__restrict__ w_oihw, const float *__restrict__ scale,
                                       __half *__restrict__ fwd, __half *__restrict__ dgrad, int cin, int cout) {
  GRID_LOOP(i, (long long)cout * cin * 9) {
    int tap = int(i % 9);
    int ci = int((i / 9) % cin);
    int co = int(i / (9LL * cin));
    float v = w_oihw[i];
    fwd[((long long)tap * cin + ci) * cout + co] = f2h(scale ? v * scale[co] : v);
    if (dgrad) dgrad[((long long)(8 - tap) * cout + co) * cin + ci] = f2h(v);
  }
}
