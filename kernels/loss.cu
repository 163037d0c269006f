// Softmax + cross-entropy + soft Dice, fused, with the marginal variant for partial labels:
// where sample s did not draw class c, c is merged into background for that sample and enters
// Dice only through samples that drew it. The exact math of src/nn/loss.rs, in three kernels:
//   loss_fwd      per pixel: softmax, CE term, Dice sums -> acc (fp64 atomics)
//   loss_finalize one thread: CE mean, Dice per class, loss; coefficients for the gradient
//   loss_bwd      per pixel: d loss / d logits, times the loss scale
// Logits are fp32, N x HW x K (NHWC). labelled is n x k bytes (1 = drawn), background always 1.
#include "common.cuh"

#define LOSS_MAXK 16
#define DICE_EPS 1e-5

// acc layout: [0,k) intersection, [k,2k) prob sums, [2k,3k) label counts, [3k] sum of -log p.
__device__ __forceinline__ void softmax_row(const float *l, int k, float *p) {
  float m = l[0];
  for (int c = 1; c < k; ++c) m = fmaxf(m, l[c]);
  float s = 0.0f;
  for (int c = 0; c < k; ++c) {
    p[c] = expf(l[c] - m);
    s += p[c];
  }
  for (int c = 0; c < k; ++c) p[c] /= s;
}

__device__ __forceinline__ bool in_bg(const unsigned char *labelled, int s, int k, int c) {
  return c == 0 || !labelled[s * k + c];
}

CS_EXTERN __global__ void loss_fwd(const float *__restrict__ logits, const unsigned char *__restrict__ labels,
                                   const unsigned char *__restrict__ labelled, int n, long long hw, int k,
                                   double *__restrict__ acc) {
  double part[3 * LOSS_MAXK + 1];
  for (int j = 0; j < 3 * k + 1; ++j) part[j] = 0.0;
  GRID_LOOP(i, (long long)n * hw) {
    int s = int(i / hw);
    float p[LOSS_MAXK];
    softmax_row(logits + i * k, k, p);
    int l = labels[i];
    double pl = 0.0;
    if (in_bg(labelled, s, k, l)) {
      for (int c = 0; c < k; ++c)
        if (in_bg(labelled, s, k, c)) pl += p[c];
    } else {
      pl = p[l];
    }
    part[3 * k] -= log(pl > 1e-300 ? pl : 1e-300);
    for (int c = 1; c < k; ++c) {
      if (!labelled[s * k + c]) continue;
      part[k + c] += p[c];
      if (l == c) {
        part[c] += p[c];
        part[2 * k + c] += 1.0;
      }
    }
  }
  // Every lane reaches this point (the loop above ended for all), so warp shuffles are safe.
  for (int j = 0; j < 3 * k + 1; ++j) {
    double v = warp_sum_d(part[j]);
    if (threadIdx.x % 32 == 0 && v != 0.0) atomicAdd(&acc[j], v);
  }
}

// out: [0] loss, [1] cross-entropy, [2, 2+k) Dice per class (NaN where absent),
// [2+k, 2+2k) 1.0 where the class is present in the batch's labelled set, [2+2k] Dice weight.
CS_EXTERN __global__ void loss_finalize(const double *__restrict__ acc, const unsigned char *__restrict__ labelled,
                                        int n, long long hw, int k, double *__restrict__ out) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const double total = (double)n * (double)hw;
  const double ce = acc[3 * k] / total;
  int nfg = 0;
  double dsum = 0.0;
  const double nan = sqrt(-1.0);
  out[2] = nan;
  out[2 + k] = 0.0;
  for (int c = 1; c < k; ++c) {
    bool present = false;
    for (int s = 0; s < n; ++s) present = present || labelled[s * k + c];
    out[2 + k + c] = present ? 1.0 : 0.0;
    if (present) {
      double d = (2.0 * acc[c] + DICE_EPS) / (acc[k + c] + acc[2 * k + c] + DICE_EPS);
      out[2 + c] = d;
      dsum += d;
      ++nfg;
    } else {
      out[2 + c] = nan;
    }
  }
  const double dice_loss = nfg ? 1.0 - dsum / nfg : 0.0;
  out[0] = ce + dice_loss;
  out[1] = ce;
  out[2 + 2 * k] = nfg ? 1.0 / nfg : 0.0;
}

// dlogits = scale * d loss / d logits (fp32).
CS_EXTERN __global__ void loss_bwd(const float *__restrict__ logits, const unsigned char *__restrict__ labels,
                                   const unsigned char *__restrict__ labelled, const double *__restrict__ acc,
                                   const double *__restrict__ out, int n, long long hw, int k, float scale,
                                   float *__restrict__ dlogits) {
  const double total = (double)n * (double)hw;
  const double wdice = out[2 + 2 * k];
  GRID_LOOP(i, (long long)n * hw) {
    int s = int(i / hw);
    float p[LOSS_MAXK];
    double dp[LOSS_MAXK];
    softmax_row(logits + i * k, k, p);
    int l = labels[i];
    double dot = 0.0;
    for (int c = 0; c < k; ++c) {
      dp[c] = 0.0;
      if (c > 0 && labelled[s * k + c] && out[2 + k + c] != 0.0) {
        double den = acc[k + c] + acc[2 * k + c] + DICE_EPS;
        double num = 2.0 * acc[c] + DICE_EPS;
        double g = (l == c) ? 1.0 : 0.0;
        dp[c] = -wdice * (2.0 * g * den - num) / (den * den);
      }
      dot += p[c] * dp[c];
    }
    bool bg = in_bg(labelled, s, k, l);
    double pl = 0.0;
    if (bg) {
      for (int c = 0; c < k; ++c)
        if (in_bg(labelled, s, k, c)) pl += p[c];
    } else {
      pl = p[l];
    }
    if (pl < 1e-300) pl = 1e-300;
    for (int c = 0; c < k; ++c) {
      bool tgt = bg ? in_bg(labelled, s, k, c) : (c == l);
      double dce = p[c] - (tgt ? p[c] / pl : 0.0);
      dlogits[i * k + c] = (float)((dce / total + p[c] * (dp[c] - dot)) * scale);
    }
  }
}
