// CUDA launchers of sh.h: the same kernel bodies as csrc/cpu/sh.cpp.
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"
#include "eyefast/sh.h"

namespace eyefast {
namespace cuda {

template <typename T>
int sh_encode_forward(const T* dirs, int64_t n, int32_t degree, T* out, void* stream) {
  return static_cast<int>(for_each_cuda(n, ShForward<T>{dirs, degree * degree, out}, stream));
}
template <typename T>
int sh_encode_backward(const T* dirs, int64_t n, int32_t degree, const T* grad_out, T* grad_dirs, void* stream) {
  return static_cast<int>(for_each_cuda(n, ShBackward<T>{dirs, grad_out, degree * degree, grad_dirs}, stream));
}

template int sh_encode_forward<float>(const float*, int64_t, int32_t, float*, void*);
template int sh_encode_forward<double>(const double*, int64_t, int32_t, double*, void*);
template int sh_encode_backward<float>(const float*, int64_t, int32_t, const float*, float*, void*);
template int sh_encode_backward<double>(const double*, int64_t, int32_t, const double*, double*, void*);

}  // namespace cuda
}  // namespace eyefast
