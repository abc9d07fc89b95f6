/* eyefast/c_api.h: the torch-free C API for embedding eyefast kernels in other renderers.
 *
 * Plain pointers, row-major contiguous arrays, float32. Every function returns EYEFAST_OK (0)
 * on success or a nonzero eyefast_status code; eyefast_last_error() then describes the problem
 * (thread-local, valid until the next call on the same thread). Data checks (non-finite values,
 * zero-length directions, radius <= 0, eta <= 0) are always on in this API. Output arrays must
 * not overlap the inputs or each other (the CPU loops are vectorised on that assumption).
 *
 * CPU functions: link eyefast::cpu. CUDA twins (suffix _cuda): link eyefast::cuda; all pointers
 * are device pointers, `stream` is a cudaStream_t (NULL = default stream); they synchronise the
 * stream once to read the data checks back.
 */
#ifndef EYEFAST_C_API_H
#define EYEFAST_C_API_H

#include <stdint.h>

#if defined(_WIN32)
#define EYEFAST_C_EXPORT __declspec(dllexport)
#else
#define EYEFAST_C_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum eyefast_status {
  EYEFAST_OK = 0,
  EYEFAST_ERROR_NULL_POINTER = 1,   /* a required pointer is NULL */
  EYEFAST_ERROR_BAD_SIZE = 2,       /* a count is negative */
  EYEFAST_ERROR_BAD_VALUE = 3,      /* input data failed a check (message names the array and row) */
  EYEFAST_ERROR_CUDA = 4,           /* a CUDA call failed (message has the CUDA error) */
  EYEFAST_ERROR_UNAVAILABLE = 5     /* this build has no CUDA launchers */
};

/* Message of the last failed call on this thread ("" after a success). */
EYEFAST_C_EXPORT const char* eyefast_last_error(void);

/* First-hit ray/sphere intersection (see eyefast/ray_sphere.h for the contract).
 * origins, dirs: [n,3]; centers: [s,3]; radii: [s];
 * outputs t_near, t_far: [n]; index: [n] (-1 = miss); normal: [n,3]. */
EYEFAST_C_EXPORT int eyefast_ray_sphere_intersect_f32(const float* origins, const float* dirs, int64_t n,
                                                     const float* centers, const float* radii, int32_t s,
                                                     float* t_near, float* t_far, int32_t* index, float* normal);

/* Snell refraction + exact Fresnel reflectance (see eyefast/refract.h).
 * dirs, normals: [n,3]; eta: [n] (n_from / n_to); outputs out: [n,3], reflectance: [n], tir: [n]. */
EYEFAST_C_EXPORT int eyefast_refract_f32(const float* dirs, const float* normals, const float* eta, int64_t n,
                                        float* out, float* reflectance, uint8_t* tir);

/* Camera rays against refractive eyes: globe + cornea cap, Snell + exact Fresnel at the cornea, iris
 * plane (see eyefast/trace_eyes.h and eyefast/reference/eye.py::trace_eyes for the contract).
 * origins, dirs: [n,3]; eyes: [e,12] rows (cx, cy, cz, radius, gx, gy, gz, cornea_radius,
 * cornea_offset, limbus_radius, iris_depth, ior); outputs t: [n] (+inf = miss), eye: [n] (-1 = miss),
 * region: [n] (0 miss, 1 sclera, 2 iris, 3 cornea), normal: [n,3], refr_dir: [n,3], fresnel: [n],
 * t_iris: [n] (+inf unless region 2), iris_uv: [n,2]. */
EYEFAST_C_EXPORT int eyefast_trace_eyes_f32(const float* origins, const float* dirs, int64_t n, const float* eyes,
                                           int32_t e, float* t, int32_t* eye, int32_t* region, float* normal,
                                           float* refr_dir, float* fresnel, float* t_iris, float* iris_uv);

/* Triangle rasterisation with a depth test (see eyefast/raster.h for the conventions: NDC y = -1 is
 * the top row, pixel centres at +0.5, faces culled at the near plane, not clipped).
 * verts_clip: [v,4] clip-space (x, y, z, w); faces: [f,3] vertex indices;
 * outputs pix_to_face: [height*width] (-1 = empty), bary: [height*width,3] perspective-correct,
 * depth: [height*width] view depth w (0 = empty). A face with an index outside [0, v) is an error. */
EYEFAST_C_EXPORT int eyefast_rasterize_f32(const float* verts_clip, int64_t v, const int32_t* faces, int64_t f,
                                          int32_t height, int32_t width, int32_t* pix_to_face, float* bary,
                                          float* depth);

/* CUDA twins: device pointers, stream = cudaStream_t. */
EYEFAST_C_EXPORT int eyefast_ray_sphere_intersect_f32_cuda(const float* origins, const float* dirs, int64_t n,
                                                          const float* centers, const float* radii, int32_t s,
                                                          float* t_near, float* t_far, int32_t* index,
                                                          float* normal, void* stream);
EYEFAST_C_EXPORT int eyefast_refract_f32_cuda(const float* dirs, const float* normals, const float* eta, int64_t n,
                                             float* out, float* reflectance, uint8_t* tir, void* stream);
EYEFAST_C_EXPORT int eyefast_trace_eyes_f32_cuda(const float* origins, const float* dirs, int64_t n,
                                                const float* eyes, int32_t e, float* t, int32_t* eye,
                                                int32_t* region, float* normal, float* refr_dir, float* fresnel,
                                                float* t_iris, float* iris_uv, void* stream);
/* Allocates its [height*width] 64-bit scratch with cudaMallocAsync on the stream. */
EYEFAST_C_EXPORT int eyefast_rasterize_f32_cuda(const float* verts_clip, int64_t v, const int32_t* faces, int64_t f,
                                               int32_t height, int32_t width, int32_t* pix_to_face, float* bary,
                                               float* depth, void* stream);

/* 1 when the library was built with the CUDA launchers, else 0. */
EYEFAST_C_EXPORT int eyefast_has_cuda(void);

#ifdef __cplusplus
}
#endif

#endif /* EYEFAST_C_API_H */
