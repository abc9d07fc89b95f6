// CPU launchers of refract.h.
#include "eyefast/refract.h"

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

template <typename T>
void refract_forward(const T* dirs, const T* normals, const T* eta, int64_t eta_stride, int64_t n, T* out,
                     T* reflectance, uint8_t* tir, CheckRecord* check) {
  if (check) check_init(check);
  for_each_checked(n, RefractForward<T>{dirs, normals, eta, eta_stride, out, reflectance, tir, check}, check);
}

template <typename T>
void refract_backward(const T* dirs, const T* normals, const T* eta, int64_t eta_stride, int64_t n,
                      const T* g_out, const T* g_reflectance, T* g_dirs, T* g_normals, T* g_eta) {
  for_each(n, RefractBackward<T>{dirs, normals, eta, eta_stride, g_out, g_reflectance, g_dirs, g_normals, g_eta});
}

template void refract_forward<float>(const float*, const float*, const float*, int64_t, int64_t, float*, float*,
                                     uint8_t*, CheckRecord*);
template void refract_forward<double>(const double*, const double*, const double*, int64_t, int64_t, double*,
                                      double*, uint8_t*, CheckRecord*);
template void refract_backward<float>(const float*, const float*, const float*, int64_t, int64_t, const float*,
                                      const float*, float*, float*, float*);
template void refract_backward<double>(const double*, const double*, const double*, int64_t, int64_t,
                                       const double*, const double*, double*, double*, double*);

}  // namespace cpu
}  // namespace eyefast
