// CUDA launchers of ray_sphere.h: the same kernel bodies as csrc/cpu/ray_sphere.cpp.
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"
#include "eyefast/ray_sphere.h"

namespace eyefast {
namespace cuda {

template <typename T, typename I>
int ray_sphere_intersect_forward(const T* origins, const T* dirs, int64_t n, const T* centers, const T* radii,
                                 int32_t s, T* t_near, T* t_far, I* index, T* normal, CheckRecord* check,
                                 void* stream) {
  if (check) {
    int e = check_record_init(check, stream);
    if (e) return e;
  }
  RaySphereForward<T, I> body{origins, dirs, centers, radii, s, t_near, t_far, index, normal, check, n};
  const int64_t rows = n > s ? n : static_cast<int64_t>(s);  // rows < S check sphere i
  return static_cast<int>(for_each_cuda(rows, body, stream));
}

template <typename T, typename I>
int ray_sphere_intersect_backward(const T* origins, const T* dirs, int64_t n, const T* centers, const T* radii,
                                  int32_t s, const I* index, const T* g_t_near, const T* g_t_far,
                                  const T* g_normal, T* g_origins, T* g_dirs, T* g_spheres, void* stream) {
  RaySphereBackward<T, I> body{origins, dirs, centers, radii, index, g_t_near, g_t_far, g_normal, g_origins, g_dirs};
  return static_cast<int>(for_each_accumulate_cuda(n, 4 * static_cast<int64_t>(s), body, g_spheres, stream));
}

#define EF_INSTANTIATE(T, I)                                                                                     \
  template int ray_sphere_intersect_forward<T, I>(const T*, const T*, int64_t, const T*, const T*, int32_t, T*, \
                                                  T*, I*, T*, CheckRecord*, void*);                             \
  template int ray_sphere_intersect_backward<T, I>(const T*, const T*, int64_t, const T*, const T*, int32_t,    \
                                                   const I*, const T*, const T*, const T*, T*, T*, T*, void*);
EF_INSTANTIATE(float, int32_t)
EF_INSTANTIATE(float, int64_t)
EF_INSTANTIATE(double, int32_t)
EF_INSTANTIATE(double, int64_t)
#undef EF_INSTANTIATE

}  // namespace cuda
}  // namespace eyefast
