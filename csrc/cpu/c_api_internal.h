// Internal helpers shared by the C API's CPU (c_api.cpp) and CUDA (cuda/c_api.cu) halves.
#pragma once

#include <string>

#include "eyefast/c_api.h"
#include "eyefast/common.h"
#include "eyefast/raster.h"
#include "eyefast/ray_sphere.h"
#include "eyefast/refract.h"
#include "eyefast/trace_eyes.h"

namespace eyefast {
namespace capi {

// Records the message for eyefast_last_error() and returns `code`.
int fail(int code, const std::string& message);
void clear();
const char* last_error();

struct FlagText {
  int64_t flag;
  const char* array;
  const char* problem;
};
// EYEFAST_OK when rec.flags == 0, else EYEFAST_ERROR_BAD_VALUE with a message naming the array.
template <size_t K>
int check_result(const char* fn, const CheckRecord& rec, const FlagText (&texts)[K]) {
  if (rec.flags == 0) return EYEFAST_OK;
  for (const auto& t : texts) {
    if (rec.flags & t.flag) {
      return fail(EYEFAST_ERROR_BAD_VALUE, std::string(fn) + ": " + t.array + " " + t.problem + " (first bad row " +
                                               std::to_string(rec.first_row[flag_bit(t.flag)]) + ")");
    }
  }
  return fail(EYEFAST_ERROR_BAD_VALUE, std::string(fn) + ": invalid input");
}

inline constexpr FlagText kRaySphereTexts[] = {
    {kRS_OriginsNonFinite, "origins", "has a non-finite value"},
    {kRS_DirsNonFinite, "dirs", "has a non-finite value"},
    {kRS_DirsZero, "dirs", "has a zero-length direction"},
    {kRS_CentersNonFinite, "centers", "has a non-finite value"},
    {kRS_RadiiInvalid, "radii", "must be finite and > 0"},
};
inline constexpr FlagText kRefractTexts[] = {
    {kRF_DirsNonFinite, "dirs", "has a non-finite value"},
    {kRF_DirsZero, "dirs", "has a zero-length direction"},
    {kRF_NormalsNonFinite, "normals", "has a non-finite value"},
    {kRF_NormalsZero, "normals", "has a zero-length normal"},
    {kRF_EtaInvalid, "eta", "must be finite and > 0"},
};

inline constexpr FlagText kTraceEyesTexts[] = {
    {kTE_OriginsNonFinite, "origins", "has a non-finite value"},
    {kTE_DirsNonFinite, "dirs", "has a non-finite value"},
    {kTE_DirsZero, "dirs", "has a zero-length direction"},
    {kTE_CenterNonFinite, "eyes", "columns 0-2 (centre) have a non-finite value"},
    {kTE_RadiusInvalid, "eyes", "column 3 (radius) must be finite and > 0"},
    {kTE_GazeInvalid, "eyes", "columns 4-6 (gaze) must be finite and not all zero"},
    {kTE_GazeBackward, "eyes", "columns 4-6 (gaze) point along -z: the iris frame is undefined there"},
    {kTE_CorneaRadiusInvalid, "eyes", "column 7 (cornea_radius) must be finite and > 0"},
    {kTE_CorneaOffsetNonFinite, "eyes", "column 8 (cornea_offset) must be finite"},
    {kTE_LimbusRadiusInvalid, "eyes", "column 9 (limbus_radius) must be finite and > 0"},
    {kTE_IrisDepthNonFinite, "eyes", "column 10 (iris_depth) must be finite"},
    {kTE_IorInvalid, "eyes", "column 11 (ior) must be finite and > 0"},
};

inline constexpr FlagText kRasterTexts[] = {
    {kRA_FacesOutOfRange, "faces", "has a vertex index outside [0, v)"},
};

// Shared argument checks of the CPU and CUDA entry points (EYEFAST_OK or a failure code).
int check_ray_sphere_args(const char* fn, const void* origins, const void* dirs, int64_t n, const void* centers,
                          const void* radii, int32_t s, const void* t_near, const void* t_far, const void* index,
                          const void* normal);
int check_refract_args(const char* fn, const void* dirs, const void* normals, const void* eta, int64_t n,
                       const void* out, const void* reflectance, const void* tir);
int check_trace_eyes_args(const char* fn, const void* origins, const void* dirs, int64_t n, const void* eyes,
                          int32_t e, const void* t, const void* eye, const void* region, const void* normal,
                          const void* refr_dir, const void* fresnel, const void* t_iris, const void* iris_uv);
int check_rasterize_args(const char* fn, const void* verts_clip, int64_t v, const void* faces, int64_t f,
                         int32_t height, int32_t width, const void* pix_to_face, const void* bary, const void* depth);

}  // namespace capi
}  // namespace eyefast
