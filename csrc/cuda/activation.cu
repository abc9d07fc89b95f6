// CUDA launchers of activation.h: the same bodies as csrc/cpu/activation.cpp.
#include "eyefast/activation.h"
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"

namespace eyefast {
namespace cuda {

namespace {
// A row body's element(k) over rows * H threads: one element per thread.
template <class Body>
struct Elements {
  Body b;
  __device__ __forceinline__ void operator()(int64_t k) const { b.element(k); }
};
template <class Body>
cudaError_t for_each_element(int64_t rows, int64_t H, const Body& b, void* stream) {
  return for_each_cuda(rows * H, Elements<Body>{b}, stream);
}
}  // namespace

template <typename T>
int softplus_forward(const T* z, int64_t n, SoftplusParams<T> p, T* y, void* stream) {
  return static_cast<int>(for_each_cuda(n, SoftplusForward<T>{z, p, y}, stream));
}

template <typename T>
int softplus_bias_rows(T* h, const T* bias, int64_t rows, int64_t H, SoftplusParams<T> p, T* y, T* d, bool write_z,
                       const T* wrow, T* gh, void* stream) {
  // one thread per element (the CPU walks rows; the same per-element body, activation.h)
  cudaError_t e;
  if (gh) {
    e = write_z ? for_each_element(rows, H, SoftplusBiasRows<T, true, true, true>{h, bias, H, p, y, d, wrow, gh}, stream)
                : for_each_element(rows, H, SoftplusBiasRows<T, true, false, true>{h, bias, H, p, y, d, wrow, gh}, stream);
  } else if (d) {
    e = write_z ? for_each_element(rows, H, SoftplusBiasRows<T, true, true>{h, bias, H, p, y, d, wrow, gh}, stream)
                : for_each_element(rows, H, SoftplusBiasRows<T, true, false>{h, bias, H, p, y, d, wrow, gh}, stream);
  } else {
    e = write_z ? for_each_element(rows, H, SoftplusBiasRows<T, false, true>{h, bias, H, p, y, d, wrow, gh}, stream)
                : for_each_element(rows, H, SoftplusBiasRows<T, false, false>{h, bias, H, p, y, d, wrow, gh}, stream);
  }
  return static_cast<int>(e);
}

template <typename T>
int softplus_double_backward_rows(const T* gg, const T* grow, const T* z, int64_t rows, int64_t H,
                                  SoftplusParams<T> p, T* g_g, T* g_z, void* stream) {
  return static_cast<int>(
      for_each_element(rows, H, SoftplusDoubleBackwardRows<T>{gg, grow, z, H, p, g_g, g_z}, stream));
}

template <typename T>
int softplus_backward(const T* g, const T* z, int64_t n, SoftplusParams<T> p, T* out, void* stream) {
  return static_cast<int>(for_each_cuda(n, SoftplusBackward<T>{g, z, p, out}, stream));
}

template <typename T>
int softplus_double_backward(const T* gg, const T* g, const T* z, int64_t n, SoftplusParams<T> p, T* g_g, T* g_z,
                             void* stream) {
  cudaError_t e = cudaSuccess;
  if (g_g && g_z) {
    e = for_each_cuda(n, SoftplusDoubleBackward<T, true, true>{gg, g, z, p, g_g, g_z}, stream);
  } else if (g_g) {
    e = for_each_cuda(n, SoftplusDoubleBackward<T, true, false>{gg, g, z, p, g_g, g_z}, stream);
  } else if (g_z) {
    e = for_each_cuda(n, SoftplusDoubleBackward<T, false, true>{gg, g, z, p, g_g, g_z}, stream);
  }
  return static_cast<int>(e);
}

#define EF_INSTANTIATE(T)                                                                                       \
  template int softplus_forward<T>(const T*, int64_t, SoftplusParams<T>, T*, void*);                            \
  template int softplus_bias_rows<T>(T*, const T*, int64_t, int64_t, SoftplusParams<T>, T*, T*, bool,       \
                                     const T*, T*, void*);                                                  \
  template int softplus_double_backward_rows<T>(const T*, const T*, const T*, int64_t, int64_t,            \
                                                SoftplusParams<T>, T*, T*, void*);                          \
  template int softplus_backward<T>(const T*, const T*, int64_t, SoftplusParams<T>, T*, void*);                 \
  template int softplus_double_backward<T>(const T*, const T*, const T*, int64_t, SoftplusParams<T>, T*, T*, \
                                           void*);
EF_INSTANTIATE(float)
EF_INSTANTIATE(double)
#undef EF_INSTANTIATE

}  // namespace cuda
}  // namespace eyefast
