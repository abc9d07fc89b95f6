// The C API (eyefast/c_api.h): argument checks, the error state, and the CPU entry points.
#include "eyefast/c_api.h"

#include <string>
#include <vector>

#include "c_api_internal.h"
#include "eyefast/launch.h"

namespace eyefast {

namespace cuda {
// Replaced by the strong definition in csrc/cuda/common.cu when the CUDA launchers are linked.
__attribute__((weak)) bool available() { return false; }
}  // namespace cuda

namespace capi {
namespace {
thread_local std::string g_last_error;

int null_arg(const char* fn, const char* name) {
  return fail(EYEFAST_ERROR_NULL_POINTER, std::string(fn) + ": " + name + " is NULL");
}
}  // namespace

int fail(int code, const std::string& message) {
  g_last_error = message;
  return code;
}
void clear() { g_last_error.clear(); }
const char* last_error() { return g_last_error.c_str(); }

int check_ray_sphere_args(const char* fn, const void* origins, const void* dirs, int64_t n, const void* centers,
                          const void* radii, int32_t s, const void* t_near, const void* t_far, const void* index,
                          const void* normal) {
  if (n < 0) return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": n must be >= 0, got " + std::to_string(n));
  if (s < 0) return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": s must be >= 0, got " + std::to_string(s));
  if (n > 0) {
    if (!origins) return null_arg(fn, "origins");
    if (!dirs) return null_arg(fn, "dirs");
    if (!t_near) return null_arg(fn, "t_near");
    if (!t_far) return null_arg(fn, "t_far");
    if (!index) return null_arg(fn, "index");
    if (!normal) return null_arg(fn, "normal");
  }
  if (s > 0) {
    if (!centers) return null_arg(fn, "centers");
    if (!radii) return null_arg(fn, "radii");
  }
  return EYEFAST_OK;
}

int check_refract_args(const char* fn, const void* dirs, const void* normals, const void* eta, int64_t n,
                       const void* out, const void* reflectance, const void* tir) {
  if (n < 0) return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": n must be >= 0, got " + std::to_string(n));
  if (n > 0) {
    if (!dirs) return null_arg(fn, "dirs");
    if (!normals) return null_arg(fn, "normals");
    if (!eta) return null_arg(fn, "eta");
    if (!out) return null_arg(fn, "out");
    if (!reflectance) return null_arg(fn, "reflectance");
    if (!tir) return null_arg(fn, "tir");
  }
  return EYEFAST_OK;
}

int check_trace_eyes_args(const char* fn, const void* origins, const void* dirs, int64_t n, const void* eyes,
                          int32_t e, const void* t, const void* eye, const void* region, const void* normal,
                          const void* refr_dir, const void* fresnel, const void* t_iris, const void* iris_uv) {
  if (n < 0) return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": n must be >= 0, got " + std::to_string(n));
  if (e < 0) return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": e must be >= 0, got " + std::to_string(e));
  if (n > 0) {
    if (!origins) return null_arg(fn, "origins");
    if (!dirs) return null_arg(fn, "dirs");
    if (!t) return null_arg(fn, "t");
    if (!eye) return null_arg(fn, "eye");
    if (!region) return null_arg(fn, "region");
    if (!normal) return null_arg(fn, "normal");
    if (!refr_dir) return null_arg(fn, "refr_dir");
    if (!fresnel) return null_arg(fn, "fresnel");
    if (!t_iris) return null_arg(fn, "t_iris");
    if (!iris_uv) return null_arg(fn, "iris_uv");
  }
  if (e > 0 && !eyes) return null_arg(fn, "eyes");
  return EYEFAST_OK;
}

int check_rasterize_args(const char* fn, const void* verts_clip, int64_t v, const void* faces, int64_t f,
                         int32_t height, int32_t width, const void* pix_to_face, const void* bary, const void* depth) {
  if (v < 0) return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": v must be >= 0, got " + std::to_string(v));
  if (f < 0 || f >= INT32_MAX) {
    return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": f must be in [0, 2^31 - 1), got " + std::to_string(f));
  }
  if (height < 0 || height > kRasterMaxSize) {
    return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": height must be in [0, " + std::to_string(kRasterMaxSize) +
                                            "], got " + std::to_string(height));
  }
  if (width < 0 || width > kRasterMaxSize) {
    return fail(EYEFAST_ERROR_BAD_SIZE, std::string(fn) + ": width must be in [0, " + std::to_string(kRasterMaxSize) +
                                            "], got " + std::to_string(width));
  }
  if (v > 0 && !verts_clip) return null_arg(fn, "verts_clip");
  if (f > 0 && !faces) return null_arg(fn, "faces");
  if (int64_t(height) * width > 0) {
    if (!pix_to_face) return null_arg(fn, "pix_to_face");
    if (!bary) return null_arg(fn, "bary");
    if (!depth) return null_arg(fn, "depth");
  }
  return EYEFAST_OK;
}

}  // namespace capi
}  // namespace eyefast

using namespace eyefast;

extern "C" {

const char* eyefast_last_error(void) { return capi::last_error(); }

int eyefast_has_cuda(void) { return cuda::available() ? 1 : 0; }

int eyefast_ray_sphere_intersect_f32(const float* origins, const float* dirs, int64_t n, const float* centers,
                                     const float* radii, int32_t s, float* t_near, float* t_far, int32_t* index,
                                     float* normal) {
  const char* fn = "eyefast_ray_sphere_intersect_f32";
  capi::clear();
  if (int e = capi::check_ray_sphere_args(fn, origins, dirs, n, centers, radii, s, t_near, t_far, index, normal)) {
    return e;
  }
  CheckRecord rec;
  cpu::ray_sphere_intersect_forward<float, int32_t>(origins, dirs, n, centers, radii, s, t_near, t_far, index, normal,
                                                    &rec);
  return capi::check_result(fn, rec, capi::kRaySphereTexts);
}

int eyefast_refract_f32(const float* dirs, const float* normals, const float* eta, int64_t n, float* out,
                        float* reflectance, uint8_t* tir) {
  const char* fn = "eyefast_refract_f32";
  capi::clear();
  if (int e = capi::check_refract_args(fn, dirs, normals, eta, n, out, reflectance, tir)) return e;
  CheckRecord rec;
  cpu::refract_forward<float>(dirs, normals, eta, 1, n, out, reflectance, tir, &rec);
  return capi::check_result(fn, rec, capi::kRefractTexts);
}

int eyefast_trace_eyes_f32(const float* origins, const float* dirs, int64_t n, const float* eyes, int32_t e,
                           float* t, int32_t* eye, int32_t* region, float* normal, float* refr_dir, float* fresnel,
                           float* t_iris, float* iris_uv) {
  const char* fn = "eyefast_trace_eyes_f32";
  capi::clear();
  if (int err = capi::check_trace_eyes_args(fn, origins, dirs, n, eyes, e, t, eye, region, normal, refr_dir, fresnel,
                                            t_iris, iris_uv)) {
    return err;
  }
  CheckRecord rec;
  cpu::trace_eyes_forward<float, int32_t>(origins, dirs, n, eyes, e, t, eye, region, normal, refr_dir, fresnel,
                                          t_iris, iris_uv, &rec);
  return capi::check_result(fn, rec, capi::kTraceEyesTexts);
}

int eyefast_rasterize_f32(const float* verts_clip, int64_t v, const int32_t* faces, int64_t f, int32_t height,
                          int32_t width, int32_t* pix_to_face, float* bary, float* depth) {
  const char* fn = "eyefast_rasterize_f32";
  capi::clear();
  if (int e = capi::check_rasterize_args(fn, verts_clip, v, faces, f, height, width, pix_to_face, bary, depth)) {
    return e;
  }
  std::vector<unsigned long long> keys(static_cast<size_t>(int64_t(height) * width));
  CheckRecord rec;
  cpu::rasterize<float, int32_t>(verts_clip, v, faces, f, height, width, keys.data(), pix_to_face, bary, depth, &rec);
  return capi::check_result(fn, rec, capi::kRasterTexts);
}

}  // extern "C"
