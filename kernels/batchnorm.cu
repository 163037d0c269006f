// BatchNorm in training mode (batch statistics) fused with the ReLU that always follows it in
// the U-Net: statistics finalisation, normalise + ReLU, and the backward pass. The per-channel
// sums of the forward come from the convolution's epilogue (conv3x3_fwd `stats`), so the raw
// convolution output is read once here. Inference never runs these: BatchNorm is folded into
// the convolution weights there. Mirrors src/nn/cpu/batchnorm.rs.
#include "common.cuh"

// stats = [sum(c), sum of squares(c)] over `count` values per channel (fp64). Writes mean,
// 1/sqrt(var + eps) and the affine scale/shift of the normalisation; when running_mean is not
// null, updates the running statistics like PyTorch (unbiased variance, `momentum`).
CS_EXTERN __global__ void bn_finalize(const double *__restrict__ stats, long long count, const float *__restrict__ gamma,
                                      const float *__restrict__ beta, float *__restrict__ running_mean,
                                      float *__restrict__ running_var, float momentum, float eps, float *__restrict__ mean,
                                      float *__restrict__ invstd, float *__restrict__ scale, float *__restrict__ shift, int c) {
  GRID_LOOP(ch, c) {
    double mu = stats[ch] / (double)count;
    double var = stats[c + ch] / (double)count - mu * mu;
    if (var < 0.0) var = 0.0;
    float is = (float)(1.0 / sqrt(var + (double)eps));
    float muf = (float)mu;
    mean[ch] = muf;
    invstd[ch] = is;
    float s = gamma[ch] * is;
    scale[ch] = s;
    shift[ch] = beta[ch] - muf * s;
    if (running_mean) {
      double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
      running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mu);
      running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * var * unbias);
    }
  }
}

// y = relu(z * scale + shift), per channel; z and y may be channel slices (ldz, ldy).
CS_EXTERN __global__ void bn_apply_relu(const __half *__restrict__ z, int ldz, __half *__restrict__ y, int ldy,
                                        const float *__restrict__ scale, const float *__restrict__ shift, long long rows,
                                        int c) {
  GRID_LOOP(i, rows * c) {
    long long r = i / c;
    int ch = int(i - r * c);
    float v = h2f(z[r * ldz + ch]) * scale[ch] + shift[ch];
    y[r * ldy + ch] = f2h(fmaxf(v, 0.0f));
  }
}

#define BNR_TX 32
#define BNR_TY 8
// Backward reduction: sums[ch] += sum dz, sums[c+ch] += sum dz * xhat, dz = dy * (y > 0),
// xhat = (z - mean) * invstd. Block (32, 8): 32 channels x 8 rows; grid (ceil(c/32), row blocks).
CS_EXTERN __global__ void bn_bwd_reduce(const __half *__restrict__ dy, int lddy, const __half *__restrict__ z, int ldz,
                                        const __half *__restrict__ y, int ldy, const float *__restrict__ mean,
                                        const float *__restrict__ invstd, double *__restrict__ sums, long long rows,
                                        int c) {
  __shared__ float red[2][BNR_TY][BNR_TX];
  const int ch = blockIdx.x * BNR_TX + threadIdx.x;
  float s = 0.0f, sx = 0.0f;
  if (ch < c) {
    const float mu = mean[ch], is = invstd[ch];
    for (long long r = (long long)blockIdx.y * BNR_TY + threadIdx.y; r < rows; r += (long long)gridDim.y * BNR_TY) {
      if (h2f(y[r * ldy + ch]) > 0.0f) {
        float d = h2f(dy[r * lddy + ch]);
        s += d;
        sx += d * (h2f(z[r * ldz + ch]) - mu) * is;
      }
    }
  }
  red[0][threadIdx.y][threadIdx.x] = s;
  red[1][threadIdx.y][threadIdx.x] = sx;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    double a = 0.0, b = 0.0;
    for (int t = 0; t < BNR_TY; ++t) {
      a += red[0][t][threadIdx.x];
      b += red[1][t][threadIdx.x];
    }
    atomicAdd(&sums[ch], a);
    atomicAdd(&sums[c + ch], b);
  }
}

// dz_in = gamma * invstd * (dz - sum_dz / N - xhat * sum_dzx / N), N = rows (the input gradient
// of the convolution output z).
CS_EXTERN __global__ void bn_bwd_dx(const __half *__restrict__ dy, int lddy, const __half *__restrict__ z, int ldz,
                                    const __half *__restrict__ y, int ldy, const float *__restrict__ gamma,
                                    const float *__restrict__ mean, const float *__restrict__ invstd,
                                    const double *__restrict__ sums, __half *__restrict__ dx, int lddx, long long rows,
                                    int c) {
  const float inv_n = 1.0f / (float)rows;
  GRID_LOOP(i, rows * c) {
    long long r = i / c;
    int ch = int(i - r * c);
    float d = h2f(y[r * ldy + ch]) > 0.0f ? h2f(dy[r * lddy + ch]) : 0.0f;
    float xhat = (h2f(z[r * ldz + ch]) - mean[ch]) * invstd[ch];
    float g = gamma[ch] * invstd[ch] * (d - (float)sums[ch] * inv_n - xhat * (float)sums[c + ch] * inv_n);
    dx[r * lddx + ch] = f2h(g);
  }
}

// dgamma += sum dz * xhat, dbeta += sum dz (fp32 gradients, still multiplied by the loss scale).
CS_EXTERN __global__ void bn_param_grads(const double *__restrict__ sums, float *__restrict__ dgamma,
                                         float *__restrict__ dbeta, int c) {
  GRID_LOOP(ch, c) {
    dbeta[ch] += (float)sums[ch];
    dgamma[ch] += (float)sums[c + ch];
  }
}
