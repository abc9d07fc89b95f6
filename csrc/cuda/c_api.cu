// The C API's CUDA twins (eyefast/c_api.h): device pointers and a stream.
#include <cuda_runtime.h>

#include <string>

#include "../cpu/c_api_internal.h"
#include "eyefast/c_api.h"
#include "eyefast/launch.h"

using namespace eyefast;

namespace {

int cuda_fail(const char* fn, cudaError_t e) {
  return capi::fail(EYEFAST_ERROR_CUDA, std::string(fn) + ": " + cudaGetErrorString(e));
}

// Runs `launch(check_device_ptr)` and reads the CheckRecord back (one stream synchronisation).
template <class Launch, size_t K>
int run_checked(const char* fn, void* stream, const capi::FlagText (&texts)[K], Launch launch) {
  CheckRecord* d_rec = nullptr;
  cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&d_rec), sizeof(CheckRecord), static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) return cuda_fail(fn, e);
  e = static_cast<cudaError_t>(launch(d_rec));
  CheckRecord rec{};
  if (e == cudaSuccess) {
    e = cudaMemcpyAsync(&rec, d_rec, sizeof(CheckRecord), cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream));
  }
  cudaError_t e2 = cudaFreeAsync(d_rec, static_cast<cudaStream_t>(stream));
  cudaError_t e3 = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  if (e == cudaSuccess) e = e2;
  if (e == cudaSuccess) e = e3;
  if (e != cudaSuccess) return cuda_fail(fn, e);
  return capi::check_result(fn, rec, texts);
}

}  // namespace

extern "C" {

int eyefast_ray_sphere_intersect_f32_cuda(const float* origins, const float* dirs, int64_t n, const float* centers,
                                          const float* radii, int32_t s, float* t_near, float* t_far, int32_t* index,
                                          float* normal, void* stream) {
  const char* fn = "eyefast_ray_sphere_intersect_f32_cuda";
  capi::clear();
  if (int e = capi::check_ray_sphere_args(fn, origins, dirs, n, centers, radii, s, t_near, t_far, index, normal)) {
    return e;
  }
  return run_checked(fn, stream, capi::kRaySphereTexts, [&](CheckRecord* rec) {
    return cuda::ray_sphere_intersect_forward<float, int32_t>(origins, dirs, n, centers, radii, s, t_near, t_far,
                                                              index, normal, rec, stream);
  });
}

int eyefast_refract_f32_cuda(const float* dirs, const float* normals, const float* eta, int64_t n, float* out,
                             float* reflectance, uint8_t* tir, void* stream) {
  const char* fn = "eyefast_refract_f32_cuda";
  capi::clear();
  if (int e = capi::check_refract_args(fn, dirs, normals, eta, n, out, reflectance, tir)) return e;
  return run_checked(fn, stream, capi::kRefractTexts, [&](CheckRecord* rec) {
    return cuda::refract_forward<float>(dirs, normals, eta, 1, n, out, reflectance, tir, rec, stream);
  });
}

int eyefast_trace_eyes_f32_cuda(const float* origins, const float* dirs, int64_t n, const float* eyes, int32_t e,
                                float* t, int32_t* eye, int32_t* region, float* normal, float* refr_dir,
                                float* fresnel, float* t_iris, float* iris_uv, void* stream) {
  const char* fn = "eyefast_trace_eyes_f32_cuda";
  capi::clear();
  if (int err = capi::check_trace_eyes_args(fn, origins, dirs, n, eyes, e, t, eye, region, normal, refr_dir, fresnel,
                                            t_iris, iris_uv)) {
    return err;
  }
  return run_checked(fn, stream, capi::kTraceEyesTexts, [&](CheckRecord* rec) {
    return cuda::trace_eyes_forward<float, int32_t>(origins, dirs, n, eyes, e, t, eye, region, normal, refr_dir,
                                                    fresnel, t_iris, iris_uv, rec, stream);
  });
}

int eyefast_rasterize_f32_cuda(const float* verts_clip, int64_t v, const int32_t* faces, int64_t f, int32_t height,
                               int32_t width, int32_t* pix_to_face, float* bary, float* depth, void* stream) {
  const char* fn = "eyefast_rasterize_f32_cuda";
  capi::clear();
  if (int e = capi::check_rasterize_args(fn, verts_clip, v, faces, f, height, width, pix_to_face, bary, depth)) {
    return e;
  }
  const size_t n_pix = static_cast<size_t>(int64_t(height) * width);
  unsigned long long* keys = nullptr;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (n_pix > 0) {
    cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&keys), n_pix * sizeof(unsigned long long), s);
    if (e != cudaSuccess) return cuda_fail(fn, e);
  }
  int rc = run_checked(fn, stream, capi::kRasterTexts, [&](CheckRecord* rec) {
    return cuda::rasterize<float, int32_t>(verts_clip, v, faces, f, height, width, keys, pix_to_face, bary, depth, rec,
                                           stream);
  });
  if (keys) {
    cudaError_t e = cudaFreeAsync(keys, s);
    if (rc == EYEFAST_OK && e != cudaSuccess) return cuda_fail(fn, e);
  }
  return rc;
}

}  // extern "C"
