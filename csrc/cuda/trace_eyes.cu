// CUDA launchers of trace_eyes.h: the same kernel bodies as csrc/cpu/trace_eyes.cpp.
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"
#include "eyefast/trace_eyes.h"

namespace eyefast {
namespace cuda {

template <typename T, typename I>
int trace_eyes_forward(const T* origins, const T* dirs, int64_t n, const T* eyes, int32_t n_eyes, T* t, I* eye,
                       I* region, T* normal, T* refr_dir, T* fresnel, T* t_iris, T* iris_uv, CheckRecord* check,
                       void* stream) {
  if (check) {
    int e = check_record_init(check, stream);
    if (e) return e;
  }
  TraceEyesForward<T, I> body{origins, dirs, eyes,    n_eyes, t, eye, region, normal, refr_dir, fresnel,
                              t_iris,  iris_uv, check, n,    nullptr /* geometry derived per ray */};
  const int64_t rows = n > n_eyes ? n : static_cast<int64_t>(n_eyes);  // rows < E check eye i
  return static_cast<int>(for_each_cuda(rows, body, stream));
}

template <typename T, typename I>
int trace_eyes_backward(const T* origins, const T* dirs, int64_t n, const T* eyes, int32_t n_eyes, const T* t,
                        const I* eye, const I* region, const T* g_t, const T* g_normal, const T* g_refr_dir,
                        const T* g_fresnel, const T* g_t_iris, const T* g_iris_uv, T* g_origins, T* g_dirs,
                        T* g_eyes, void* stream) {
  TraceEyesBackward<T, I> body{origins, dirs,       eyes,      t,         eye,      region,
                               g_t,     g_normal,   g_refr_dir, g_fresnel, g_t_iris, g_iris_uv,
                               g_origins, g_dirs,   nullptr};
  // Block-level shared-memory sums of the [E, 12] eye gradients, one global atomic per block and
  // slot (launch_cuda.cuh).
  return static_cast<int>(
      for_each_accumulate_cuda(n, kEyeParams * static_cast<int64_t>(n_eyes), body, g_eyes, stream));
}

#define EF_INSTANTIATE(T, I)                                                                                    \
  template int trace_eyes_forward<T, I>(const T*, const T*, int64_t, const T*, int32_t, T*, I*, I*, T*, T*, T*, \
                                        T*, T*, CheckRecord*, void*);                                           \
  template int trace_eyes_backward<T, I>(const T*, const T*, int64_t, const T*, int32_t, const T*, const I*,    \
                                         const I*, const T*, const T*, const T*, const T*, const T*, const T*,  \
                                         T*, T*, T*, void*);
EF_INSTANTIATE(float, int32_t)
EF_INSTANTIATE(float, int64_t)
EF_INSTANTIATE(double, int32_t)
EF_INSTANTIATE(double, int64_t)
#undef EF_INSTANTIATE

}  // namespace cuda
}  // namespace eyefast
