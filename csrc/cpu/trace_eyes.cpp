// CPU launchers of trace_eyes.h.
#include "eyefast/trace_eyes.h"

#include <vector>

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {
namespace {
// Each eye's derived geometry (normalised gaze, cornea sphere), once per launch instead of once
// per ray and eye: a square root and four divisions less per eye and ray.
template <typename T>
std::vector<EyeGeometry<T>> eye_geometries(const T* eyes, int32_t n_eyes) {
  std::vector<EyeGeometry<T>> geo(static_cast<size_t>(n_eyes > 0 ? n_eyes : 0));
  for (int32_t k = 0; k < n_eyes; ++k) geo[static_cast<size_t>(k)] = load_eye(eyes + kEyeParams * k);
  return geo;
}
}  // namespace

template <typename T, typename I>
void trace_eyes_forward(const T* origins, const T* dirs, int64_t n, const T* eyes, int32_t n_eyes, T* t, I* eye,
                        I* region, T* normal, T* refr_dir, T* fresnel, T* t_iris, T* iris_uv, CheckRecord* check) {
  if (check) check_init(check);
  const int64_t rows = n > n_eyes ? n : static_cast<int64_t>(n_eyes);  // rows < E also check eye i
  const std::vector<EyeGeometry<T>> geo = eye_geometries(eyes, n_eyes);
  for_each(rows, TraceEyesForward<T, I>{origins, dirs, eyes, n_eyes, t, eye, region, normal, refr_dir, fresnel,
                                        t_iris, iris_uv, check, n, geo.data()});
}

template <typename T, typename I>
void trace_eyes_backward(const T* origins, const T* dirs, int64_t n, const T* eyes, int32_t n_eyes, const T* t,
                         const I* eye, const I* region, const T* g_t, const T* g_normal, const T* g_refr_dir,
                         const T* g_fresnel, const T* g_t_iris, const T* g_iris_uv, T* g_origins, T* g_dirs,
                         T* g_eyes) {
  const std::vector<EyeGeometry<T>> geo = eye_geometries(eyes, n_eyes);
  TraceEyesBackward<T, I> body{origins, dirs,       eyes,      t,         eye,      region,
                               g_t,     g_normal,   g_refr_dir, g_fresnel, g_t_iris, g_iris_uv,
                               g_origins, g_dirs,   geo.data()};
  // Per-chunk double partial sums of the [E, 12] eye gradients, reduced at the end (no atomics
  // on the hot path).
  for_each_accumulate(n, kEyeParams * static_cast<int64_t>(n_eyes), body, g_eyes);
}

#define EF_INSTANTIATE(T, I)                                                                                  \
  template void trace_eyes_forward<T, I>(const T*, const T*, int64_t, const T*, int32_t, T*, I*, I*, T*, T*, \
                                         T*, T*, T*, CheckRecord*);                                          \
  template void trace_eyes_backward<T, I>(const T*, const T*, int64_t, const T*, int32_t, const T*, const I*, \
                                          const I*, const T*, const T*, const T*, const T*, const T*,         \
                                          const T*, T*, T*, T*);
EF_INSTANTIATE(float, int32_t)
EF_INSTANTIATE(float, int64_t)
EF_INSTANTIATE(double, int32_t)
EF_INSTANTIATE(double, int64_t)
#undef EF_INSTANTIATE

}  // namespace cpu
}  // namespace eyefast
