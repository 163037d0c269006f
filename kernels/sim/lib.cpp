// The kernel simulator as a shared library with one entry point, `cineseg_sim_launch`, that
// launches any kernel by name with arguments as the Rust `Launch` trait passes them (tagged
// 64-bit slots). tests/train_sim.rs loads it and runs the CUDA backend's own launch code
// (src/nn/cuda/launch.rs, src/nn/cuda/train/) against it, with host memory as "device" memory.
//
// Unlike cuLaunchKernel, this checks every argument against the kernel's C++ signature: count,
// and pointer/int/long long/float kind. A launch wrapper with a wrong argument list fails here
// with a message instead of corrupting memory on the GPU.
#define CINESEG_SIM
#include "../adamw.cu"
#include "../batchnorm.cu"
#include "../conv3x3.cu"
#include "../head.cu"
#include "../loss.cu"
#include "../pool.cu"
#include "../tensor.cu"
#include "../upconv.cu"

#include <string>
#include <type_traits>
#include <utility>

namespace {

// Argument kinds, as src/nn/cuda/launch.rs `Arg`.
enum Tag : int { TAG_P = 0, TAG_I = 1, TAG_L = 2, TAG_F = 3 };

struct Slot {
  int tag;
  uint64_t bits;
};

std::string g_error;

template <class T>
constexpr int tag_of() {
  if constexpr (std::is_pointer_v<T>) return TAG_P;
  else if constexpr (std::is_same_v<T, int>) return TAG_I;
  else if constexpr (std::is_same_v<T, long long>) return TAG_L;
  else if constexpr (std::is_same_v<T, float>) return TAG_F;
  else return -1;
}

template <class T>
T value_of(const Slot &s) {
  if constexpr (std::is_pointer_v<T>) return reinterpret_cast<T>(static_cast<uintptr_t>(s.bits));
  else if constexpr (std::is_same_v<T, int>) return static_cast<int>(static_cast<int64_t>(s.bits));
  else if constexpr (std::is_same_v<T, long long>) return static_cast<long long>(s.bits);
  else {
    float f;
    uint32_t b = static_cast<uint32_t>(s.bits);
    std::memcpy(&f, &b, 4);
    return f;
  }
}

template <class... Ts, size_t... Is>
bool check(const Slot *a, std::index_sequence<Is...>) {
  bool ok = true;
  ((ok = ok && a[Is].tag == tag_of<Ts>()), ...);
  return ok;
}

template <class... Ts, size_t... Is>
void call_kernel(void (*k)(Ts...), const Slot *a, std::index_sequence<Is...>) {
  k(value_of<Ts>(a[Is])...);
}

template <class... Ts>
int dispatch(const char *name, void (*k)(Ts...), dim3 g, dim3 b, const Slot *a, int n) {
  static_assert(((tag_of<Ts>() >= 0) && ...), "kernel parameter of an unsupported type");
  if (n != int(sizeof...(Ts))) {
    g_error = std::string(name) + ": " + std::to_string(n) + " arguments given, the kernel takes " + std::to_string(sizeof...(Ts));
    return 1;
  }
  if (!check<Ts...>(a, std::index_sequence_for<Ts...>{})) {
    g_error = std::string(name) + ": argument kinds do not match the kernel signature";
    return 1;
  }
  cuda_sim::launch(g, b, [&]() { call_kernel(k, a, std::index_sequence_for<Ts...>{}); });
  return 0;
}

}  // namespace

#define KERNEL(k) \
  if (nm == #k) return dispatch(#k, k, g, b, args, nargs);

extern "C" {

// Runs kernel `name` to completion. Returns 0, or 1 with a message for cineseg_sim_error().
int cineseg_sim_launch(const char *name, const unsigned *grid, const unsigned *block, const Slot *args, int nargs) {
  const std::string nm(name);
  const dim3 g(grid[0], grid[1], grid[2]), b(block[0], block[1], block[2]);
  KERNEL(conv3x3_fwd) KERNEL(conv3x3_wgrad) KERNEL(conv3x3_pack)
  KERNEL(bn_finalize) KERNEL(bn_apply_relu) KERNEL(bn_bwd_reduce) KERNEL(bn_bwd_dx) KERNEL(bn_param_grads)
  KERNEL(maxpool2_fwd) KERNEL(maxpool2_bwd)
  KERNEL(upconv2_fwd) KERNEL(upconv2_bwd_data) KERNEL(upconv2_wgrad) KERNEL(upconv2_pack)
  KERNEL(head_fwd) KERNEL(head_bwd_data) KERNEL(head_wgrad)
  KERNEL(loss_fwd) KERNEL(loss_finalize) KERNEL(loss_bwd)
  KERNEL(grad_overflow) KERNEL(adamw_step) KERNEL(loss_scale_update)
  KERNEL(f32_to_f16) KERNEL(f16_to_f32) KERNEL(copy_channels) KERNEL(channel_sums_f16)
  g_error = "unknown kernel " + nm;
  return 1;
}

const char *cineseg_sim_error() { return g_error.c_str(); }
}
