// CPU launchers of activation.h: vectorised row loops (for_each_simd) over the same bodies as
// csrc/cuda/activation.cu.
#include "eyefast/activation.h"

#include <algorithm>

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

// Elementwise and cheap per element: chunks of 16K elements keep the parallel overhead small.
constexpr int64_t kActivationGrain = 16384;

template <typename T>
void softplus_forward(const T* z, int64_t n, SoftplusParams<T> p, T* y) {
  for_each_simd(n, SoftplusForward<T>{z, p, y}, kActivationGrain);
}

template <typename T>
void softplus_bias_rows(T* h, const T* bias, int64_t rows, int64_t H, SoftplusParams<T> p, T* y, T* d, bool write_z,
                        const T* wrow, T* gh) {
  const int64_t grain = std::max<int64_t>(1, kActivationGrain / std::max<int64_t>(1, H));
  if (gh) {
    if (write_z) {
      for_each_simd(rows, SoftplusBiasRows<T, true, true, true>{h, bias, H, p, y, d, wrow, gh}, grain);
    } else {
      for_each_simd(rows, SoftplusBiasRows<T, true, false, true>{h, bias, H, p, y, d, wrow, gh}, grain);
    }
  } else if (d) {
    if (write_z) {
      for_each_simd(rows, SoftplusBiasRows<T, true, true>{h, bias, H, p, y, d, wrow, gh}, grain);
    } else {
      for_each_simd(rows, SoftplusBiasRows<T, true, false>{h, bias, H, p, y, d, wrow, gh}, grain);
    }
  } else if (write_z) {
    for_each_simd(rows, SoftplusBiasRows<T, false, true>{h, bias, H, p, y, d, wrow, gh}, grain);
  } else {
    for_each_simd(rows, SoftplusBiasRows<T, false, false>{h, bias, H, p, y, d, wrow, gh}, grain);
  }
}

template <typename T>
void softplus_double_backward_rows(const T* gg, const T* grow, const T* z, int64_t rows, int64_t H,
                                   SoftplusParams<T> p, T* g_g, T* g_z) {
  const int64_t grain = std::max<int64_t>(1, kActivationGrain / std::max<int64_t>(1, H));
  for_each_simd(rows, SoftplusDoubleBackwardRows<T>{gg, grow, z, H, p, g_g, g_z}, grain);
}

template <typename T>
void softplus_backward(const T* g, const T* z, int64_t n, SoftplusParams<T> p, T* out) {
  for_each_simd(n, SoftplusBackward<T>{g, z, p, out}, kActivationGrain);
}

template <typename T>
void softplus_double_backward(const T* gg, const T* g, const T* z, int64_t n, SoftplusParams<T> p, T* g_g, T* g_z) {
  if (g_g && g_z) {
    for_each_simd(n, SoftplusDoubleBackward<T, true, true>{gg, g, z, p, g_g, g_z}, kActivationGrain);
  } else if (g_g) {
    for_each_simd(n, SoftplusDoubleBackward<T, true, false>{gg, g, z, p, g_g, g_z}, kActivationGrain);
  } else if (g_z) {
    for_each_simd(n, SoftplusDoubleBackward<T, false, true>{gg, g, z, p, g_g, g_z}, kActivationGrain);
  }
}

#define EF_INSTANTIATE(T)                                                                                    \
  template void softplus_forward<T>(const T*, int64_t, SoftplusParams<T>, T*);                               \
  template void softplus_bias_rows<T>(T*, const T*, int64_t, int64_t, SoftplusParams<T>, T*, T*, bool,       \
                                      const T*, T*);                                                         \
  template void softplus_double_backward_rows<T>(const T*, const T*, const T*, int64_t, int64_t,            \
                                                 SoftplusParams<T>, T*, T*);                                 \
  template void softplus_backward<T>(const T*, const T*, int64_t, SoftplusParams<T>, T*);                    \
  template void softplus_double_backward<T>(const T*, const T*, const T*, int64_t, SoftplusParams<T>, T*, T*);
EF_INSTANTIATE(float)
EF_INSTANTIATE(double)
#undef EF_INSTANTIATE

}  // namespace cpu
}  // namespace eyefast
