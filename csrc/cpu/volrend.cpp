// CPU launchers of volrend.h (one thread per ray or per sample, same functors as CUDA).
#include "eyefast/volrend.h"

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

void ray_offsets(const RayOffsets& f) {
  if (f.check) check_init(f.check);
  // Rows past n_rays only check samples: without checks there are n_rays + 1 rows.
  const int64_t rows = f.check && f.m > f.n_rays + 1 ? f.m : f.n_rays + 1;
  for_each(rows, f);
}

template <typename F>
void volrend_launch(int64_t n, const F& f) {
  // Per-ray work is a whole segment: a smaller grain balances better. for_each_simd: the rows
  // run in the AVX2/AVX-512 copies, where the bodies' block loops vectorise.
  for_each_simd(n, f, 256);
}

#define EF_INSTANTIATE(T)                                                        \
  template void volrend_launch(int64_t, const WeightFromDensityForward<T>&);    \
  template void volrend_launch(int64_t, const WeightFromDensityBackward<T>&);   \
  template void volrend_launch(int64_t, const WeightFromAlphaForward<T>&);      \
  template void volrend_launch(int64_t, const WeightFromAlphaBackward<T>&);     \
  template void volrend_launch(int64_t, const AccumulateForward<T>&);           \
  template void volrend_launch(int64_t, const AccumulateBackward<T>&);
EF_INSTANTIATE(float)
EF_INSTANTIATE(double)
#undef EF_INSTANTIATE

}  // namespace cpu
}  // namespace eyefast
