// CUDA launchers of refract.h: the same kernel bodies as csrc/cpu/refract.cpp.
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"
#include "eyefast/refract.h"

namespace eyefast {
namespace cuda {

template <typename T>
int refract_forward(const T* dirs, const T* normals, const T* eta, int64_t eta_stride, int64_t n, T* out,
                    T* reflectance, uint8_t* tir, CheckRecord* check, void* stream) {
  if (check) {
    int e = check_record_init(check, stream);
    if (e) return e;
  }
  return static_cast<int>(
      for_each_cuda(n, RefractForward<T>{dirs, normals, eta, eta_stride, out, reflectance, tir, check}, stream));
}

template <typename T>
int refract_backward(const T* dirs, const T* normals, const T* eta, int64_t eta_stride, int64_t n, const T* g_out,
                     const T* g_reflectance, T* g_dirs, T* g_normals, T* g_eta, void* stream) {
  return static_cast<int>(for_each_cuda(
      n, RefractBackward<T>{dirs, normals, eta, eta_stride, g_out, g_reflectance, g_dirs, g_normals, g_eta}, stream));
}

template int refract_forward<float>(const float*, const float*, const float*, int64_t, int64_t, float*, float*,
                                    uint8_t*, CheckRecord*, void*);
template int refract_forward<double>(const double*, const double*, const double*, int64_t, int64_t, double*,
                                     double*, uint8_t*, CheckRecord*, void*);
template int refract_backward<float>(const float*, const float*, const float*, int64_t, int64_t, const float*,
                                     const float*, float*, float*, float*, void*);
template int refract_backward<double>(const double*, const double*, const double*, int64_t, int64_t,
                                      const double*, const double*, double*, double*, double*, void*);

}  // namespace cuda
}  // namespace eyefast
