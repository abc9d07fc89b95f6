// CPU launchers of sh.h.
#include "eyefast/sh.h"

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

template <typename T>
void sh_encode_forward(const T* dirs, int64_t n, int32_t degree, T* out) {
  for_each(n, ShForward<T>{dirs, degree * degree, out});
}
template <typename T>
void sh_encode_backward(const T* dirs, int64_t n, int32_t degree, const T* grad_out, T* grad_dirs) {
  for_each(n, ShBackward<T>{dirs, grad_out, degree * degree, grad_dirs});
}

template void sh_encode_forward<float>(const float*, int64_t, int32_t, float*);
template void sh_encode_forward<double>(const double*, int64_t, int32_t, double*);
template void sh_encode_backward<float>(const float*, int64_t, int32_t, const float*, float*);
template void sh_encode_backward<double>(const double*, int64_t, int32_t, const double*, double*);

}  // namespace cpu
}  // namespace eyefast
