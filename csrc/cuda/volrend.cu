// CUDA launchers of volrend.h: the same functors as csrc/cpu/volrend.cpp.
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"
#include "eyefast/volrend.h"

namespace eyefast {
namespace cuda {

int ray_offsets(const RayOffsets& f, void* stream) {
  if (f.check) {
    int e = check_record_init(f.check, stream);
    if (e) return e;
  }
  const int64_t rows = f.check && f.m > f.n_rays + 1 ? f.m : f.n_rays + 1;  // see the CPU launcher
  return static_cast<int>(for_each_cuda(rows, f, stream));
}

template <typename F>
int volrend_launch(int64_t n, const F& f, void* stream) {
  return static_cast<int>(for_each_cuda(n, f, stream));
}

#define EF_INSTANTIATE(T)                                                              \
  template int volrend_launch(int64_t, const WeightFromDensityForward<T>&, void*);    \
  template int volrend_launch(int64_t, const WeightFromDensityBackward<T>&, void*);   \
  template int volrend_launch(int64_t, const WeightFromAlphaForward<T>&, void*);      \
  template int volrend_launch(int64_t, const WeightFromAlphaBackward<T>&, void*);     \
  template int volrend_launch(int64_t, const AccumulateForward<T>&, void*);           \
  template int volrend_launch(int64_t, const AccumulateBackward<T>&, void*);
EF_INSTANTIATE(float)
EF_INSTANTIATE(double)
#undef EF_INSTANTIATE

}  // namespace cuda
}  // namespace eyefast
