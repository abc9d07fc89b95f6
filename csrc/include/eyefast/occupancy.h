// eyefast/occupancy.h: ray marching through a multi-level occupancy bitfield (nerfacc 0.5
// OccGridEstimator.sampling semantics), one thread per ray: on CUDA a count pass then a fill
// pass, on the CPU one march recording runs of steps (cpu::OccupancyOnePass).
//
// Contract (per ray i; o = rays_o[i], d = rays_d[i], t in units of d):
//   Grid: L levels, each R^3 cells; level l covers level_aabbs[l] = (lo xyz, hi xyz), nested,
//   level L-1 the largest. Cell (l, ix, iy, iz) is occupied when bit
//   l*R^3 + (ix*R + iy)*R + iz of `bitfield` (uint8, LSB first) is set.
//   A point x belongs to the first level whose box contains it (lo <= x <= hi on every axis),
//   or to level L-1 when none does; its cell is floor((x - lo) / (hi - lo) * R) clamped to
//   [0, R-1] per axis.
//   Range: [t_lo, t_hi] = [max(near, t_enter, t_min[i]), min(far, t_exit, t_max[i])], with
//   (t_enter, t_exit) the slab intersection with level L-1's box. Empty when t_lo >= t_hi.
//   Steps: dt(t) = min(max(t * cone_angle, step), 1e10); t_0 = t_lo + u_i dt(t_lo) (u_i the
//   stratified jitter in [0,1), 0 when u is null); uniform marching (cone_angle == 0):
//   t_k = t_0 + k * step; otherwise t_{k+1} = t_k + dt(t_k).
//   Interval k = [t_k, t_{k+1}] is emitted when t_{k+1} <= t_hi (never past t_max: nerfacc
//   issue 291) and its midpoint 0.5 (t_k + t_{k+1}) lies in an occupied cell.
//   Empty space is skipped (uniform steps only): from an empty cell, or an empty coarse block
//   of block^3 cells (optional `coarse` bitfield), the march jumps to the first step whose
//   midpoint is within 0.01 step of the box's exit, so the emitted set is the one the
//   step-by-step march gives (the skipped midpoints lie strictly inside the empty box).
// Checks: non-finite origin, non-finite or zero-length direction.
#pragma once

#include "eyefast/common.h"

namespace eyefast {

enum OccupancyCheck : int64_t {
  kOC_OriginsNonFinite = 1,
  kOC_DirsNonFinite = 2,
  kOC_DirsZero = 4,
};

template <typename T>
EF_HD T ef_floor(T x);
template <>
EF_HD float ef_floor<float>(float x) {
  return floorf(x);
}
template <>
EF_HD double ef_floor<double>(double x) {
  return floor(x);
}

// Trailing zeros of v > 0.
EF_HD int ef_ctz(int32_t v) {
#if defined(__CUDA_ARCH__)
  return __ffs(v) - 1;
#elif defined(__GNUC__) || defined(__clang__)
  return __builtin_ctz(static_cast<unsigned>(v));
#else
  int k = 0;
  while (!((v >> k) & 1)) ++k;
  return k;
#endif
}

EF_HD float ef_ceil(float x) { return ceilf(x); }
EF_HD double ef_ceil(double x) { return ceil(x); }

template <typename T>
struct OccupancyMarch {
  const T* rays_o;             // [N, 3]
  const T* rays_d;             // [N, 3]
  const T* t_min;              // [N] or null
  const T* t_max;              // [N] or null
  const T* u;                  // [N] jitter or null
  const uint8_t* bitfield;     // [ceil(L R^3 / 8)]
  const uint8_t* coarse;       // [ceil(L Rc^3 / 8)] or null: OR of each block^3 cells, Rc = ceil(R / block)
  int32_t block;
  const T* level_aabbs;        // [L, 6]
  int32_t levels;
  int32_t res;
  T near_plane, far_plane, step, cone_angle;
  // count pass: counts != null; fill pass: offsets != null and the three outputs.
  int64_t* counts;             // [N]
  const int64_t* offsets;      // [N] exclusive prefix sum of counts
  int64_t* ray_indices;        // [S]
  T* t_starts;                 // [S]
  T* t_ends;                   // [S]
  CheckRecord* check;          // nullable

  EF_HD T dt_at(T t) const { return ef_min(ef_max(t * cone_angle, step), T(1e10)); }

  // Occupancy of the point o + t d; on an empty cell (or an empty coarse block) also the exit
  // distance of that cell (block) along the ray.
  EF_HD bool occupied(const vec3<T>& o, const vec3<T>& d, T t, T& t_exit) const {
    const vec3<T> x{o.x + t * d.x, o.y + t * d.y, o.z + t * d.z};
    int32_t l = 0;
    for (; l < levels - 1; ++l) {
      const T* b = level_aabbs + 6 * l;
      if (x.x >= b[0] && x.y >= b[1] && x.z >= b[2] && x.x <= b[3] && x.y <= b[4] && x.z <= b[5]) break;
    }
    const T* b = level_aabbs + 6 * l;
    const T xs[3] = {x.x, x.y, x.z}, os[3] = {o.x, o.y, o.z}, ds[3] = {d.x, d.y, d.z};
    int64_t c[3];
    for (int a = 0; a < 3; ++a) {
      T f = ef_floor((xs[a] - b[a]) / (b[3 + a] - b[a]) * T(res));
      int64_t ci = f != f ? 0 : (f < T(0) ? 0 : (f > T(res - 1) ? res - 1 : static_cast<int64_t>(f)));
      c[a] = ci;
    }
    // Empty-space box: the coarse block when it is empty, else the cell itself.
    int64_t lo_c[3], hi_c[3];
    bool empty_block = false;
    if (coarse) {
      // Block coordinates: a shift for the usual power-of-two blocks (an integer division is a
      // long latency on this loop's critical path).
      const bool pow2 = (block & (block - 1)) == 0;
      const int sh = pow2 ? ef_ctz(block) : 0;
      int64_t cb[3];
      for (int a = 0; a < 3; ++a) cb[a] = pow2 ? (c[a] >> sh) : c[a] / block;
      const int64_t rc = (res + block - 1) / block;
      const int64_t cidx = static_cast<int64_t>(l) * rc * rc * rc + (cb[0] * rc + cb[1]) * rc + cb[2];
      if (!((coarse[cidx >> 3] >> (cidx & 7)) & 1)) {
        empty_block = true;
        for (int a = 0; a < 3; ++a) {
          lo_c[a] = cb[a] * block;
          hi_c[a] = ef_min<int64_t>(lo_c[a] + block, res);
        }
      }
    }
    if (!empty_block) {
      const int64_t idx = static_cast<int64_t>(l) * res * res * res + (c[0] * res + c[1]) * res + c[2];
      if ((bitfield[idx >> 3] >> (idx & 7)) & 1) return true;
      for (int a = 0; a < 3; ++a) {
        lo_c[a] = c[a];
        hi_c[a] = c[a] + 1;
      }
    }
    T te = ef_inf<T>();
    for (int a = 0; a < 3; ++a) {
      if (ds[a] == T(0)) continue;
      const T size = (b[3 + a] - b[a]) / T(res);
      const T edge = b[a] + size * static_cast<T>(ds[a] > T(0) ? hi_c[a] : lo_c[a]);
      te = ef_min(te, (edge - os[a]) / ds[a]);
    }
    t_exit = te;
    return false;
  }

  // Marches ray i: calls emit.start(t0) once when its range is not empty, then
  // emit(n, k, t_start, t_end) for its n-th sample, the interval of step k (uniform steps:
  // t_start = t0 + k step, t_end = t0 + (k + 1) step, exactly); returns the count.
  template <class Emit>
  EF_HD int64_t march(int64_t i, Emit& emit) const {
    const vec3<T> o = load3(rays_o + 3 * i);
    const vec3<T> d = load3(rays_d + 3 * i);
    bool bad = false;
    if (!all_finite(o)) {
      bad = true;
      if (check) report_bad_row(check, kOC_OriginsNonFinite, i);
    }
    if (!all_finite(d)) {
      bad = true;
      if (check) report_bad_row(check, kOC_DirsNonFinite, i);
    } else if (dot(d, d) == T(0)) {
      bad = true;
      if (check) report_bad_row(check, kOC_DirsZero, i);
    }
    // Slab test against the largest level's box.
    const T* big = level_aabbs + 6 * (levels - 1);
    const T os[3] = {o.x, o.y, o.z}, ds[3] = {d.x, d.y, d.z};
    T tn = -ef_inf<T>(), tf = ef_inf<T>();
    for (int a = 0; a < 3; ++a) {
      if (ds[a] == T(0)) {
        if (os[a] < big[a] || os[a] > big[3 + a]) bad = true;
        continue;
      }
      const T t1 = (big[a] - os[a]) / ds[a], t2 = (big[3 + a] - os[a]) / ds[a];
      tn = ef_max(tn, ef_min(t1, t2));
      tf = ef_min(tf, ef_max(t1, t2));
    }
    T t_lo = ef_max(near_plane, tn), t_hi = ef_min(far_plane, tf);
    if (t_min) t_lo = ef_max(t_lo, t_min[i]);
    if (t_max) t_hi = ef_min(t_hi, t_max[i]);
    int64_t n = 0;
    if (!bad && t_lo < t_hi) {
      const T t0 = t_lo + (u ? u[i] : T(0)) * dt_at(t_lo);
      emit.start(t0);
      const bool uniform = cone_angle == T(0);
      T tk = t0;
      int64_t k = 0;
      while (true) {
        const T tk1 = uniform ? t0 + static_cast<T>(k + 1) * step : tk + dt_at(tk);
        if (!(tk1 <= t_hi)) break;
        T t_exit;
        if (occupied(o, d, T(0.5) * (tk + tk1), t_exit)) {
          emit(n, k, tk, tk1);
          ++n;
        } else if (uniform) {
          // Jump to the first step whose midpoint is within 0.01 step of the empty box's exit
          // or past it; the midpoints skipped lie strictly inside the empty box.
          const T kk = ef_ceil((t_exit - t0) / step - T(0.5) - T(0.01));
          if (kk > static_cast<T>(k + 1)) {
            if (!(kk < T(9.0e15))) break;
            k = static_cast<int64_t>(kk);
            tk = t0 + static_cast<T>(k) * step;
            continue;
          }
        }
        ++k;
        tk = tk1;
      }
    }
    return n;
  }

  // Count pass (counts set) or fill pass (offsets and the outputs set): the CUDA launcher's and
  // the two-pass form.
  // Writes sample n of ray i at out + n (fill pass: offsets set), at most `limit` samples.
  struct FillSink {
    const OccupancyMarch* f;
    int64_t i, out, limit;
    EF_HD void start(T) const {}
    EF_HD void operator()(int64_t n, int64_t, T a, T b) const {
      if (f->offsets && n < limit) {
        f->ray_indices[out + n] = i;
        f->t_starts[out + n] = a;
        f->t_ends[out + n] = b;
      }
    }
  };
  EF_HD void operator()(int64_t i) const {
    FillSink sink{this, i, offsets ? offsets[i] : 0, INT64_MAX};
    const int64_t n = march(i, sink);
    if (counts) counts[i] = n;
  }
};

namespace cpu {
template <typename T>
void occupancy_march(const OccupancyMarch<T>& f, int64_t n_rays);

// The CPU's one-march form. march() marches every ray once, writing counts[i] and, for uniform
// steps, the ray's samples as up to kRuns runs of consecutive steps (t0 and [k_begin, k_end));
// write() then expands the runs into the outputs with the march's own formulas (bitwise the
// same samples) and marches again only the rays with more runs, or with cone-angle steps.
// About half the marching of count + fill; the scratch is about 80 bytes a ray, no per-sample
// buffers. Both passes run at the same SIMD level (launch.h); do not change it in between.
template <typename T>
class OccupancyOnePass {
 public:
  OccupancyOnePass();
  ~OccupancyOnePass();
  OccupancyOnePass(const OccupancyOnePass&) = delete;
  OccupancyOnePass& operator=(const OccupancyOnePass&) = delete;
  static constexpr int kRuns = 8;
  // Marches (f.counts must point to [n_rays]; f.offsets must be null); returns the total.
  int64_t march(const OccupancyMarch<T>& f, int64_t n_rays);
  // Writes the samples (ray_indices, t_starts, t_ends: [total]).
  void write(int64_t* ray_indices, T* t_starts, T* t_ends) const;

 private:
  struct Impl;
  struct MarchRow;
  struct WriteRow;
  Impl* impl_;
};
}  // namespace cpu
namespace cuda {
template <typename T>
int occupancy_march(const OccupancyMarch<T>& f, int64_t n_rays, void* stream);
}  // namespace cuda

}  // namespace eyefast
