// CPU launchers of ray_sphere.h.
#include "eyefast/ray_sphere.h"

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

template <typename T, typename I>
void ray_sphere_intersect_forward(const T* origins, const T* dirs, int64_t n, const T* centers, const T* radii,
                                  int32_t s, T* t_near, T* t_far, I* index, T* normal, CheckRecord* check) {
  if (check) {
    check_init(check);
    const RaySphereForward<T, I> body{origins, dirs, centers, radii, s, t_near, t_far, index, normal, check, n};
    for (int32_t k = 0; k < s; ++k) {
      const uint32_t flags = body.sphere_flags(k);
      if (flags) report_flags(check, flags, k);
    }
  }
  // One or two spheres (the eyes): a fixed count, so the row loop vectorises.
  if (s == 1) {
    for_each_checked(n, RaySphereForward<T, I, 1>{origins, dirs, centers, radii, s, t_near, t_far, index, normal, check, n}, check);
  } else if (s == 2) {
    for_each_checked(n, RaySphereForward<T, I, 2>{origins, dirs, centers, radii, s, t_near, t_far, index, normal, check, n}, check);
  } else {
    for_each_checked(n, RaySphereForward<T, I>{origins, dirs, centers, radii, s, t_near, t_far, index, normal, check, n}, check);
  }
}

template <typename T, typename I>
void ray_sphere_intersect_backward(const T* origins, const T* dirs, int64_t n, const T* centers, const T* radii,
                                   int32_t s, const I* index, const T* g_t_near, const T* g_t_far,
                                   const T* g_normal, T* g_origins, T* g_dirs, T* g_spheres) {
  RaySphereBackward<T, I> body{origins, dirs, centers, radii, index, g_t_near, g_t_far, g_normal, g_origins, g_dirs};
  for_each_accumulate(n, 4 * static_cast<int64_t>(s), body, g_spheres);
}

#define EF_INSTANTIATE(T, I)                                                                                      \
  template void ray_sphere_intersect_forward<T, I>(const T*, const T*, int64_t, const T*, const T*, int32_t, T*, \
                                                   T*, I*, T*, CheckRecord*);                                    \
  template void ray_sphere_intersect_backward<T, I>(const T*, const T*, int64_t, const T*, const T*, int32_t,    \
                                                    const I*, const T*, const T*, const T*, T*, T*, T*);
EF_INSTANTIATE(float, int32_t)
EF_INSTANTIATE(float, int64_t)
EF_INSTANTIATE(double, int32_t)
EF_INSTANTIATE(double, int64_t)
#undef EF_INSTANTIATE

}  // namespace cpu
}  // namespace eyefast
