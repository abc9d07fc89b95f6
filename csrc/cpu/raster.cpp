// CPU launchers of raster.h.
#include "eyefast/raster.h"

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {
namespace {

struct FillKeys {
  unsigned long long* keys;  // [n]
  void operator()(int64_t i) const { keys[i] = kRasterEmptyKey; }
};

template <typename T>
struct Zero {
  T* out;  // [n]
  void operator()(int64_t i) const { out[i] = T(0); }
};

}  // namespace

template <typename T, typename I>
void rasterize(const T* verts_clip, int64_t v, const I* faces, int64_t f, int32_t height, int32_t width,
               unsigned long long* keys, int32_t* pix_to_face, T* bary, T* depth, CheckRecord* check) {
  if (check) check_init(check);
  const int64_t n_pix = static_cast<int64_t>(height) * width;
  if (n_pix <= 0) return;
  for_each(n_pix, FillKeys{keys}, 1 << 16);
  // Faces in contiguous chunks: neighbouring faces touch neighbouring pixels, so the CAS loops
  // of the two threads rarely meet.
  for_each(f, RasterizeFaces<T, I>{verts_clip, faces, v, height, width, keys, check}, 256);
  for_each(n_pix, RasterizeResolve<T, I>{verts_clip, faces, keys, height, width, pix_to_face, bary, depth}, 4096);
}

template <typename T, typename I>
void interpolate_forward(const T* attrs, int64_t v, int64_t c, const I* faces, int64_t f, const int32_t* pix_to_face,
                         const T* bary, int64_t p, T* out, CheckRecord* check) {
  if (check) check_init(check);
  for_each(p, InterpolateForward<T, I>{attrs, faces, pix_to_face, bary, v, f, c, out, check});
}

template <typename T, typename I>
void interpolate_backward(const T* attrs, int64_t v, int64_t c, const I* faces, int64_t f,
                          const int32_t* pix_to_face, const T* bary, int64_t p, const T* g_out, T* g_attrs,
                          T* g_bary) {
  for_each(v * c, Zero<T>{g_attrs}, 1 << 16);
  for_each(p, InterpolateBackward<T, I>{attrs, faces, pix_to_face, bary, g_out, v, f, c, g_attrs, g_bary});
}

#define EF_INSTANTIATE(T, I)                                                                                    \
  template void rasterize<T, I>(const T*, int64_t, const I*, int64_t, int32_t, int32_t, unsigned long long*,  \
                                int32_t*, T*, T*, CheckRecord*);                                              \
  template void interpolate_forward<T, I>(const T*, int64_t, int64_t, const I*, int64_t, const int32_t*,      \
                                          const T*, int64_t, T*, CheckRecord*);                               \
  template void interpolate_backward<T, I>(const T*, int64_t, int64_t, const I*, int64_t, const int32_t*,     \
                                           const T*, int64_t, const T*, T*, T*);
EF_INSTANTIATE(float, int32_t)
EF_INSTANTIATE(float, int64_t)
EF_INSTANTIATE(double, int32_t)
EF_INSTANTIATE(double, int64_t)
#undef EF_INSTANTIATE

}  // namespace cpu
}  // namespace eyefast
