// eyefast/common.h: host/device macros, a small 3-vector, and the per-row check record.
//
// Torch-free and header-only: every per-element kernel body in eyefast includes this and
// is compiled twice, by the host compiler for the CPU launchers and by nvcc for the CUDA
// launchers. Nothing here allocates or throws.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define EF_HD __host__ __device__ __forceinline__
#define EF_DEVICE_CODE 1
#else
#define EF_HD inline
#endif

#if defined(_WIN32)
#define EF_API __declspec(dllexport)
#else
#define EF_API __attribute__((visibility("default")))
#endif

// Before a host loop whose iterations do not depend on each other: lets the compiler vectorise
// without proving that the pointers do not alias (see launch.h, for_each_simd).
#if defined(__CUDACC__) || !(defined(__GNUC__) || defined(__clang__))
#define EF_IVDEP
#elif defined(__clang__)
#define EF_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#else
#define EF_IVDEP _Pragma("GCC ivdep")
#endif

namespace eyefast {

// ---------------------------------------------------------------------------------------
// Scalar helpers (overloads for float and double so one template body serves both).
// ---------------------------------------------------------------------------------------
EF_HD float ef_sqrt(float x) { return sqrtf(x); }
EF_HD double ef_sqrt(double x) { return sqrt(x); }
EF_HD float ef_abs(float x) { return fabsf(x); }
EF_HD double ef_abs(double x) { return fabs(x); }
template <typename T>
EF_HD bool ef_isfinite(T x) {
  // Written out instead of std::isfinite so that -ffast-math style flags cannot fold it away
  // and so that it is usable in device code without <cmath> overload ambiguity.
  return (x == x) & (x - x == T(0));
}
template <typename T>
EF_HD T ef_inf() {
  return static_cast<T>(INFINITY);  // macro, usable in device code without relaxed constexpr
}
template <typename T>
EF_HD T ef_min(T a, T b) {
  return a < b ? a : b;
}
template <typename T>
EF_HD T ef_max(T a, T b) {
  return a > b ? a : b;
}

// ---------------------------------------------------------------------------------------
// vec3: a plain aggregate (no constructors, so it can live in shared memory and unions).
// ---------------------------------------------------------------------------------------
template <typename T>
struct vec3 {
  T x, y, z;
};

template <typename T>
EF_HD vec3<T> make_vec3(T x, T y, T z) {
  return vec3<T>{x, y, z};
}
template <typename T>
EF_HD vec3<T> load3(const T* p) {  // p: [3]
  return vec3<T>{p[0], p[1], p[2]};
}
template <typename T>
EF_HD void store3(T* p, const vec3<T>& v) {  // p: [3]
  p[0] = v.x;
  p[1] = v.y;
  p[2] = v.z;
}
template <typename T>
EF_HD vec3<T> operator+(const vec3<T>& a, const vec3<T>& b) {
  return {a.x + b.x, a.y + b.y, a.z + b.z};
}
template <typename T>
EF_HD vec3<T> operator-(const vec3<T>& a, const vec3<T>& b) {
  return {a.x - b.x, a.y - b.y, a.z - b.z};
}
template <typename T>
EF_HD vec3<T> operator-(const vec3<T>& a) {
  return {-a.x, -a.y, -a.z};
}
template <typename T>
EF_HD vec3<T> operator*(T s, const vec3<T>& a) {
  return {s * a.x, s * a.y, s * a.z};
}
template <typename T>
EF_HD vec3<T> operator*(const vec3<T>& a, T s) {
  return {s * a.x, s * a.y, s * a.z};
}
template <typename T>
EF_HD vec3<T>& operator+=(vec3<T>& a, const vec3<T>& b) {
  a.x += b.x;
  a.y += b.y;
  a.z += b.z;
  return a;
}
template <typename T>
EF_HD T dot(const vec3<T>& a, const vec3<T>& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z;
}
template <typename T>
EF_HD vec3<T> cross(const vec3<T>& a, const vec3<T>& b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
template <typename T>
EF_HD bool all_finite(const vec3<T>& a) {
  return ef_isfinite(a.x) & ef_isfinite(a.y) & ef_isfinite(a.z);  // &: no branches
}

// ---------------------------------------------------------------------------------------
// Scaling by powers of two. A direction of any length > 0 is scaled by the power of two p that
// brings its largest |component| into [1, 2) before its squared length is formed: then neither
// overflows (float32 |d| >= ~1.8e19) nor underflows (|d| <= ~1e-19). Multiplying by a power of two
// is exact, so for ordinary lengths every result computed from p d (and scaled back) is bit for bit
// what the unscaled arithmetic gives. Built from the exponent bits: branch-free and vectorisable.
// ---------------------------------------------------------------------------------------
EF_HD float ef_inv_pow2_exponent(float m) {
  // 2^-E for E = floor(log2 m), E clamped to [-126, 126] (zero, denormals: 2^126; inf/NaN: 2^-126).
  uint32_t bits;
  memcpy(&bits, &m, sizeof(bits));
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xffu);  // biased exponent
  e = e < 1 ? 1 : (e > 253 ? 253 : e);
  const uint32_t pb = static_cast<uint32_t>(254 - e) << 23;
  float p;
  memcpy(&p, &pb, sizeof(p));
  return p;
}
EF_HD double ef_inv_pow2_exponent(double m) {
  // 2^-E for E = floor(log2 m), E clamped to [-1022, 1022].
  uint64_t bits;
  memcpy(&bits, &m, sizeof(bits));
  int64_t e = static_cast<int64_t>((bits >> 52) & 0x7ffu);
  e = e < 1 ? 1 : (e > 2045 ? 2045 : e);
  const uint64_t pb = static_cast<uint64_t>(2046 - e) << 52;
  double p;
  memcpy(&p, &pb, sizeof(p));
  return p;
}
// The power of two p with max(|v.x|, |v.y|, |v.z|) p in [1, 2) (see above; reference: _dir_scale).
template <typename T>
EF_HD T dir_scale(const vec3<T>& v) {
  return ef_inv_pow2_exponent(ef_max(ef_max(ef_abs(v.x), ef_abs(v.y)), ef_abs(v.z)));
}

// Gradient of u = v / |v| pulled back to v:  g_v = (g_u - (g_u . u) u) / |v|.
template <typename T>
EF_HD vec3<T> normalize_backward(const vec3<T>& u, T inv_len, const vec3<T>& g_u) {
  return inv_len * (g_u - dot(g_u, u) * u);
}

// ---------------------------------------------------------------------------------------
// Per-row input checks, fused into the forward kernels.
//
// A kernel that finds a bad row ORs a flag bit into `flags` and lowers that flag's entry of
// `first_row` to the smallest offending row (so messages name one concrete row). The launcher's caller reads
// the record after the launch (on CUDA that is one device-to-host copy) and turns it into an
// error naming the argument. Passing a null CheckRecord* skips every check.
// ---------------------------------------------------------------------------------------
constexpr int kCheckFlags = 16;  // flag bits 1 << 0 .. 1 << 15
struct CheckRecord {
  int64_t flags;                   // OR of the op's flag bits; 0 = all rows valid
  int64_t first_row[kCheckFlags];  // per flag bit: smallest offending row, INT64_MAX when none
};

EF_HD void check_init(CheckRecord* r) {
  r->flags = 0;
  for (int k = 0; k < kCheckFlags; ++k) r->first_row[k] = INT64_MAX;
}

EF_HD int flag_bit(int64_t flag) {
  int k = 0;
  while (k < kCheckFlags - 1 && !(flag & (int64_t(1) << k))) ++k;
  return k;
}

EF_HD void report_bad_row(CheckRecord* rec, int64_t flag, int64_t row) {
  int64_t* slot = &rec->first_row[flag_bit(flag)];
#if defined(__CUDA_ARCH__)
  atomicOr(reinterpret_cast<unsigned long long*>(&rec->flags), static_cast<unsigned long long>(flag));
  atomicMin(reinterpret_cast<long long*>(slot), static_cast<long long>(row));
#else
  __atomic_fetch_or(&rec->flags, flag, __ATOMIC_RELAXED);
  int64_t cur = __atomic_load_n(slot, __ATOMIC_RELAXED);
  while (row < cur && !__atomic_compare_exchange_n(slot, &cur, row, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
#endif
}

// Reports every flag bit set in `flags` for `row` (kernels whose bodies return their check flags
// instead of reporting them: see for_each_checked in launch.h).
EF_HD void report_flags(CheckRecord* rec, uint32_t flags, int64_t row) {
  for (int k = 0; k < kCheckFlags; ++k) {
    if (flags & (uint32_t(1) << k)) report_bad_row(rec, int64_t(1) << k, row);
  }
}

// A flag when the condition holds, else 0: branch-free, so a vectorised loop keeps its lanes.
EF_HD uint32_t flag_if(bool cond, uint32_t flag) { return cond ? flag : 0u; }

}  // namespace eyefast
