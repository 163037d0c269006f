// AdamW on fp32 master weights (with an optional fp16 copy written in the same pass) and
// dynamic loss scaling. Gradients arrive multiplied by the loss scale; a step whose gradients
// overflowed (inf/NaN anywhere) is skipped and the scale halved, and after `interval` clean
// steps the scale doubles. Same update order as src/train/adamw.rs (PyTorch's).
#include "common.cuh"

// flag = 1 if any of g[0..n) is inf or NaN (flag must be 0 before the first call of a step).
CS_EXTERN __global__ void grad_overflow(const float *__restrict__ g, long long n, int *__restrict__ flag) {
  bool bad = false;
  GRID_LOOP(i, n) bad = bad || !finite_f(g[i]);
  if (bad) *flag = 1;  // benign race: every writer writes 1
}

// One AdamW update of one tensor. decay = 1 - lr * weight_decay (1 for vectors), step_size =
// lr / (1 - beta1^t), inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t), inv_scale = 1 / loss scale.
CS_EXTERN __global__ void adamw_step(float *__restrict__ p, const float *__restrict__ g, float *__restrict__ m,
                                     float *__restrict__ v, __half *__restrict__ p16, long long n, float beta1,
                                     float beta2, float eps, float decay, float step_size, float inv_sqrt_bc2,
                                     float inv_scale, const int *__restrict__ overflow) {
  if (overflow && *overflow) return;
  GRID_LOOP(i, n) {
    float gi = g[i] * inv_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
    float pi = p[i] * decay - step_size * mi / denom;
    p[i] = pi;
    if (p16) p16[i] = f2h(pi);
  }
}

// state = [scale, clean steps] (floats), flag from grad_overflow; resets the flag.
CS_EXTERN __global__ void loss_scale_update(float *__restrict__ state, int *__restrict__ flag, int interval,
                                            float max_scale) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  if (*flag) {
    state[0] = fmaxf(state[0] * 0.5f, 1.0f);
    state[1] = 0.0f;
  } else {
    state[1] += 1.0f;
    if (state[1] >= (float)interval) {
      state[0] = fminf(state[0] * 2.0f, max_scale);
      state[1] = 0.0f;
    }
  }
  *flag = 0;
}
