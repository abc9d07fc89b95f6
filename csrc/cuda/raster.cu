// CUDA launchers of raster.h: the same kernel bodies as csrc/cpu/raster.cpp.
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"
#include "eyefast/raster.h"

namespace eyefast {
namespace cuda {

template <typename T, typename I>
int rasterize(const T* verts_clip, int64_t v, const I* faces, int64_t f, int32_t height, int32_t width,
              unsigned long long* keys, int32_t* pix_to_face, T* bary, T* depth, CheckRecord* check, void* stream) {
  if (check) {
    int e = check_record_init(check, stream);
    if (e) return e;
  }
  const int64_t n_pix = static_cast<int64_t>(height) * width;
  if (n_pix <= 0) return 0;
  // All bytes 0xFF = kRasterEmptyKey.
  cudaError_t e = cudaMemsetAsync(keys, 0xFF, static_cast<size_t>(n_pix) * sizeof(unsigned long long),
                                  static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) return static_cast<int>(e);
  e = for_each_cuda(f, RasterizeFaces<T, I>{verts_clip, faces, v, height, width, keys, check}, stream);
  if (e != cudaSuccess) return static_cast<int>(e);
  return static_cast<int>(for_each_cuda(
      n_pix, RasterizeResolve<T, I>{verts_clip, faces, keys, height, width, pix_to_face, bary, depth}, stream));
}

template <typename T, typename I>
int interpolate_forward(const T* attrs, int64_t v, int64_t c, const I* faces, int64_t f, const int32_t* pix_to_face,
                        const T* bary, int64_t p, T* out, CheckRecord* check, void* stream) {
  if (check) {
    int e = check_record_init(check, stream);
    if (e) return e;
  }
  return static_cast<int>(
      for_each_cuda(p, InterpolateForward<T, I>{attrs, faces, pix_to_face, bary, v, f, c, out, check}, stream));
}

template <typename T, typename I>
int interpolate_backward(const T* attrs, int64_t v, int64_t c, const I* faces, int64_t f,
                         const int32_t* pix_to_face, const T* bary, int64_t p, const T* g_out, T* g_attrs,
                         T* g_bary, void* stream) {
  if (v * c > 0) {
    cudaError_t e = cudaMemsetAsync(g_attrs, 0, static_cast<size_t>(v * c) * sizeof(T), static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess) return static_cast<int>(e);
  }
  return static_cast<int>(for_each_cuda(
      p, InterpolateBackward<T, I>{attrs, faces, pix_to_face, bary, g_out, v, f, c, g_attrs, g_bary}, stream));
}

#define EF_INSTANTIATE(T, I)                                                                                   \
  template int rasterize<T, I>(const T*, int64_t, const I*, int64_t, int32_t, int32_t, unsigned long long*,  \
                               int32_t*, T*, T*, CheckRecord*, void*);                                       \
  template int interpolate_forward<T, I>(const T*, int64_t, int64_t, const I*, int64_t, const int32_t*,      \
                                         const T*, int64_t, T*, CheckRecord*, void*);                        \
  template int interpolate_backward<T, I>(const T*, int64_t, int64_t, const I*, int64_t, const int32_t*,     \
                                          const T*, int64_t, const T*, T*, T*, void*);
EF_INSTANTIATE(float, int32_t)
EF_INSTANTIATE(float, int64_t)
EF_INSTANTIATE(double, int32_t)
EF_INSTANTIATE(double, int64_t)
#undef EF_INSTANTIATE

}  // namespace cuda
}  // namespace eyefast
