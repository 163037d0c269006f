// cuda_sim.h: runs cineseg's CUDA kernels as plain C++ on the CPU, so their indexing and
// synchronisation logic is tested in CI on machines without a GPU (the idea of Numba's CUDA
// simulator and Triton's interpreter mode).
//
// How it works:
// - Blocks run one after another. The threads of a block are ucontext fibers on one OS thread,
//   each with its own stack, so kernel locals are per-thread as on a GPU.
// - `__shared__` is `static`: since blocks run one at a time, a function-static array is exactly
//   one block's shared memory.
// - `__syncthreads()` parks the fiber until every live thread of the block has arrived; warp
//   primitives (shuffles, WMMA calls) park it until every live lane of its warp has arrived. A
//   barrier that can never complete (some threads exited or wait elsewhere) aborts with a
//   message instead of hanging: that is a real kernel bug.
// - Atomics are plain read-modify-writes (one OS thread).
// - WMMA fragments hold the whole tile in every lane; load/mma/store are computed redundantly
//   per lane. Kernels must treat fragments as opaque (as CUDA requires), which keeps this valid.
// - __half is a 16-bit IEEE binary16 with round-to-nearest-even conversion, as on the GPU.
//
// Not emulated: memory-model races between threads of different blocks, bank conflicts,
// occupancy, timing. A kernel passing here can still be slow or racy across blocks on a GPU.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

namespace cuda_sim {

enum class State { Run, Block, Warp, Done };

struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  uint3 tid;
  State state;
};

struct Sim {
  std::vector<Fiber> fibers;
  ucontext_t sched;
  int cur = -1;
  uint3 bid{0, 0, 0};
  uint3 bdim{1, 1, 1};
  uint3 gdim{1, 1, 1};
  std::function<void()> body;
  std::vector<uint64_t> shfl;  // one exchange slot per thread
};

inline Sim &sim() {
  static Sim s;
  return s;
}

[[noreturn]] inline void fail(const char *what) {
  std::fprintf(stderr, "cuda_sim: %s (block %u,%u,%u)\n", what, sim().bid.x, sim().bid.y, sim().bid.z);
  std::abort();
}

inline void entry() {
  Sim &s = sim();
  s.body();
  s.fibers[s.cur].state = State::Done;
  swapcontext(&s.fibers[s.cur].ctx, &s.sched);
}

inline void park(State st) {
  Sim &s = sim();
  if (s.cur < 0) fail("barrier outside a kernel");
  s.fibers[s.cur].state = st;
  swapcontext(&s.fibers[s.cur].ctx, &s.sched);
}

inline int linear_tid() {
  const Sim &s = sim();
  const uint3 t = s.fibers[s.cur].tid;
  return int(t.x + s.bdim.x * (t.y + s.bdim.y * t.z));
}

// Releases completed barriers; returns false when nothing can run (deadlock).
inline bool release(Sim &s) {
  const int n = int(s.fibers.size());
  bool any_run = false, any_done = false, all_block = true;
  for (auto &f : s.fibers) {
    any_run |= f.state == State::Run;
    any_done |= f.state == State::Done;
    if (f.state != State::Done && f.state != State::Block) all_block = false;
  }
  if (any_run) return true;
  bool released = false;
  for (int w0 = 0; w0 < n; w0 += 32) {
    bool waiting = false, complete = true;
    for (int i = w0; i < std::min(n, w0 + 32); ++i) {
      waiting |= s.fibers[i].state == State::Warp;
      if (s.fibers[i].state != State::Done && s.fibers[i].state != State::Warp) complete = false;
    }
    if (waiting && complete) {
      for (int i = w0; i < std::min(n, w0 + 32); ++i)
        if (s.fibers[i].state == State::Warp) s.fibers[i].state = State::Run;
      released = true;
    }
  }
  if (released) return true;
  if (all_block) {
    bool any_block = false;
    for (auto &f : s.fibers) any_block |= f.state == State::Block;
    if (!any_block) return false;  // all done
    if (any_done) fail("__syncthreads() reached after some threads of the block returned");
    for (auto &f : s.fibers) f.state = State::Run;
    return true;
  }
  fail("deadlock: threads wait at different barriers (divergent __syncthreads or warp call)");
}

// Runs `body` (the kernel call) for every thread of every block.
inline void launch(dim3 grid, dim3 block, std::function<void()> body) {
  Sim &s = sim();
  const size_t nthreads = size_t(block.x) * block.y * block.z;
  if (nthreads == 0 || nthreads > 1024) fail("block size must be 1..1024 threads");
  const size_t stack_size = 256 * 1024;
  s.fibers.resize(nthreads);
  s.shfl.assign(nthreads, 0);
  s.body = std::move(body);
  s.bdim = {block.x, block.y, block.z};
  s.gdim = {grid.x, grid.y, grid.z};
  for (auto &f : s.fibers)
    if (f.stack.size() != stack_size) f.stack.assign(stack_size, 0);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        s.bid = {bx, by, bz};
        for (size_t i = 0; i < nthreads; ++i) {
          Fiber &f = s.fibers[i];
          f.tid = {unsigned(i % block.x), unsigned((i / block.x) % block.y), unsigned(i / (size_t(block.x) * block.y))};
          f.state = State::Run;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, entry, 0);
        }
        for (;;) {
          for (size_t i = 0; i < nthreads; ++i) {
            if (s.fibers[i].state != State::Run) continue;
            s.cur = int(i);
            swapcontext(&s.sched, &s.fibers[i].ctx);
          }
          s.cur = -1;
          if (!release(s)) break;
        }
      }
  s.cur = -1;
}

// Waits for the whole warp (all live lanes) and exchanges one 64-bit value per lane.
template <class T>
inline T exchange(T v, int src_lane) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 64 bits");
  Sim &s = sim();
  const int me = linear_tid();
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  s.shfl[me] = bits;
  park(State::Warp);
  const int src = (me / 32) * 32 + (src_lane & 31);
  uint64_t got = (src < int(s.shfl.size())) ? s.shfl[src] : bits;
  park(State::Warp);  // nobody overwrites a slot before all lanes have read
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}

}  // namespace cuda_sim

#define threadIdx (cuda_sim::sim().fibers[cuda_sim::sim().cur].tid)
#define blockIdx (cuda_sim::sim().bid)
#define blockDim (cuda_sim::sim().bdim)
#define gridDim (cuda_sim::sim().gdim)

inline void __syncthreads() { cuda_sim::park(cuda_sim::State::Block); }
inline void __syncwarp(unsigned = 0xffffffffu) { cuda_sim::park(cuda_sim::State::Warp); }

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int = 32) {
  return cuda_sim::exchange(v, (cuda_sim::linear_tid() % 32) ^ mask);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int = 32) {
  const int lane = cuda_sim::linear_tid() % 32;
  const int src = lane + int(delta);
  T r = cuda_sim::exchange(v, src < 32 ? src : lane);
  return src < 32 ? r : v;
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src_lane, int = 32) {
  return cuda_sim::exchange(v, src_lane);
}

inline float atomicAdd(float *p, float v) {
  float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double *p, double v) {
  double old = *p;
  *p = old + v;
  return old;
}
inline int atomicAdd(int *p, int v) {
  int old = *p;
  *p = old + v;
  return old;
}
inline int atomicOr(int *p, int v) {
  int old = *p;
  *p = old | v;
  return old;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }

// ---- binary16 ----
struct __half {
  uint16_t bits;
};

inline __half __float2half_rn(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  __half h;
  if (mag >= 0x7f800000u) {  // inf or nan
    h.bits = uint16_t(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0u));
    return h;
  }
  if (mag >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
    h.bits = uint16_t(sign | 0x7c00u);
    return h;
  }
  if (mag < 0x38800000u) {  // subnormal half (or zero)
    if (mag < 0x33000000u) {  // below half of the smallest subnormal
      h.bits = uint16_t(sign);
      return h;
    }
    const uint32_t e = mag >> 23;
    const uint32_t m = (mag & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // so that the result is in units of 2^-24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
    h.bits = uint16_t(sign | r);
    return h;
  }
  uint32_t r = ((mag - 0x38000000u) >> 13);
  const uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  h.bits = uint16_t(sign | r);
  return h;
}
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t e = (h.bits >> 10) & 0x1fu;
  const uint32_t m = h.bits & 0x3ffu;
  uint32_t x;
  if (e == 0) {
    if (m == 0) {
      x = sign;
    } else {
      float f = std::ldexp(float(m), -24);
      return sign ? -f : f;
    }
  } else if (e == 31) {
    x = sign | 0x7f800000u | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// ---- WMMA (nvcuda::wmma) emulation: fragments hold the whole tile in every lane ----
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K>
struct tile_dims;
template <int M, int N, int K>
struct tile_dims<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile_dims<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct tile_dims<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = tile_dims<Use, M, N, K>::rows;
  static constexpr int cols = tile_dims<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[rows * cols];  // row-major tile
};

inline float to_f(float v) { return v; }
inline float to_f(__half v) { return __half2float(v); }

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, T v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

template <class Use, int M, int N, int K, class T, class L>
inline void load_tile(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm, bool col) {
  __syncwarp();  // warp-collective: every lane must call it
  for (int r = 0; r < f.rows; ++r)
    for (int c = 0; c < f.cols; ++c) f.x[r * f.cols + c] = col ? p[size_t(c) * ldm + r] : p[size_t(r) * ldm + c];
}

template <class Use, int M, int N, int K, class T>
inline void load_matrix_sync(fragment<Use, M, N, K, T, row_major> &f, const T *p, unsigned ldm) {
  load_tile(f, p, ldm, false);
}
template <class Use, int M, int N, int K, class T>
inline void load_matrix_sync(fragment<Use, M, N, K, T, col_major> &f, const T *p, unsigned ldm) {
  load_tile(f, p, ldm, true);
}
template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T, void> &f, const T *p, unsigned ldm, layout_t l) {
  load_tile(f, p, ldm, l == mem_col_major);
}
template <int M, int N, int K, class T>
inline void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T, void> &f, unsigned ldm, layout_t l) {
  __syncwarp();
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) {
      if (l == mem_col_major)
        p[size_t(c) * ldm + r] = f.x[r * N + c];
      else
        p[size_t(r) * ldm + c] = f.x[r * N + c];
    }
}
// D = A * B + C with fp16 inputs and fp32 accumulation (products of binary16 values are exact
// in fp32, as on the tensor cores; the summation order differs, within fp32 rounding).
template <int M, int N, int K, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float, void> &d, const fragment<matrix_a, M, N, K, __half, LA> &a,
                     const fragment<matrix_b, M, N, K, __half, LB> &b, const fragment<accumulator, M, N, K, float, void> &c) {
  __syncwarp();
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s += to_f(a.x[i * K + k]) * to_f(b.x[k * N + j]);
      out[i * N + j] = s;
    }
  std::memcpy(d.x, out, sizeof(out));
}
}  // namespace wmma
}  // namespace nvcuda

// Launch helper for drivers: SIM_LAUNCH(kernel, grid, block, args...)
#define SIM_LAUNCH(kernel, grid, block, ...) cuda_sim::launch((grid), (block), [&]() { kernel(__VA_ARGS__); })
