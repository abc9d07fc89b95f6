// eyefast/ray_sphere.h: first-hit ray/sphere intersection (the eyeballs), forward and backward.
//
// Contract (per ray i; o = origins[i], d = dirs[i], d need not be unit length and t is measured
// in units of d):
//   Among the S spheres (centre c_k, radius r_k > 0), take the one the ray ENTERS first: the
//   smallest entry distance >= 0. A ray whose origin is inside sphere k enters it at t = 0.
//   Ties go to the lower sphere index.
//   t_near = entry distance, t_far = exit distance of that sphere, index = k,
//   normal = outward unit normal at the entry point (p - c)/|p - c|, or 0 when the ray
//   starts inside (there is no entry surface).
//   Miss (no sphere in front of the ray): t_near = t_far = +inf, index = -1, normal = 0.
// Roots use the cancellation-free form q = -(b + sign(b) sqrt(disc)); t = q/a, cc/q. The ray is
// traced along p d with p the power of two that brings d's largest |component| into [1, 2) (exact,
// so ordinary directions give the same bits; any length > 0 works in float32, 1e-30 or 1e30).
//
// Backward: implicit differentiation of |o + t d - c|^2 = r^2 at each root, with n the unit
// normal there:  dt = (dr - n.(do + t dd - dc)) / (n.d).  The normal n = (o + t d - c)/r adds
// its explicit terms. Exactly tangent rays (n.d = 0) have an unbounded derivative; their
// gradient is set to 0. Rays that start inside contribute only through t_far.
#pragma once

#include "eyefast/common.h"

namespace eyefast {

// Check flags of the forward pass (CheckRecord::flags bits).
enum RaySphereCheck : int64_t {
  kRS_OriginsNonFinite = 1,
  kRS_DirsNonFinite = 2,
  kRS_DirsZero = 4,
  kRS_CentersNonFinite = 8,
  kRS_RadiiInvalid = 16,  // radius <= 0 or not finite
};

// Roots of |oc + t d|^2 = r^2 for one sphere. Returns false when the line misses it.
template <typename T>
EF_HD bool sphere_roots(const vec3<T>& oc, const vec3<T>& d, T a, T r, T& t0, T& t1, T& sq) {
  const T b = dot(oc, d);
  const T cc = dot(oc, oc) - r * r;
  const T disc = b * b - a * cc;
  if (!(disc >= T(0)) || !(a > T(0))) return false;  // also rejects NaN
  sq = ef_sqrt(disc);
  const T q = b >= T(0) ? -(b + sq) : (-b + sq);
  if (q == T(0)) {  // b == 0 and disc == 0: grazing at the origin's closest point
    t0 = t1 = T(0);
    return true;
  }
  const T r0 = q / a, r1 = cc / q;
  t0 = ef_min(r0, r1);
  t1 = ef_max(r0, r1);
  return true;
}

// The forward body. kS > 0 fixes the sphere count at compile time (the CPU launcher's case
// for one or two spheres, the eyes): the sphere loop then unrolls and the row loop vectorises.
template <typename T, typename I, int kS = 0>
struct RaySphereForward {
  const T* origins;  // [N, 3]
  const T* dirs;     // [N, 3]
  const T* centers;  // [S, 3]
  const T* radii;    // [S]
  int32_t s;         // == kS when kS > 0
  T* t_near;    // [N]
  T* t_far;     // [N]
  I* index;     // [N]
  T* normal;    // [N, 3]
  CheckRecord* check;  // nullable: no checks

  int64_t n;          // rays; the CUDA launcher runs operator() on rows [0, max(n, s)) so every
                      // sphere is checked (the CPU launcher checks the spheres itself)
  // t of a miss: +inf. A field rather than a constant, so that the compiler cannot fold the
  // first sphere's `entry < best` into a select of masks, which GCC does not vectorise.
  T t_miss = ef_inf<T>();

  // Check flags of sphere k.
  EF_HD uint32_t sphere_flags(int64_t k) const {
    const T r = radii[k];
    return flag_if(!all_finite(load3(centers + 3 * k)), kRS_CentersNonFinite) |
           flag_if(!(r > T(0)) || !ef_isfinite(r), kRS_RadiiInvalid);
  }

  // Ray i (< n); returns its check flags when Check. Branch-free: every sphere's roots are
  // computed and the first entry is selected (the same arithmetic as sphere_roots).
  template <bool Check>
  EF_HD uint32_t run(int64_t i) const {
    const vec3<T> o = load3(origins + 3 * i);
    const vec3<T> d_in = load3(dirs + 3 * i);
    // Traced along d = p d_in (p a power of two, common.h dir_scale): any length > 0 works, and the
    // distances below, in units of d, are scaled back to units of d_in (exactly) when stored.
    const T p = dir_scale(d_in);
    const vec3<T> d = p * d_in;
    const T a = dot(d, d);
    uint32_t flags = 0;
    if (Check) {
      const bool d_finite = all_finite(d_in);
      flags = flag_if(!all_finite(o), kRS_OriginsNonFinite) | flag_if(!d_finite, kRS_DirsNonFinite) |
              flag_if(d_finite & (a == T(0)), kRS_DirsZero);
    }
    // best_t0 starts at -t_miss so that `best_t0 >= 0` alone tells a surface hit (see t_miss).
    T best = t_miss, best_far = t_miss, best_t0 = -t_miss;
    vec3<T> best_c{T(0), T(0), T(0)};
    int32_t best_k = -1;
    const int32_t count = kS > 0 ? kS : s;
    for (int32_t k = 0; k < count; ++k) {
      const vec3<T> c = load3(centers + 3 * k);
      const T r = radii[k];
      const vec3<T> oc = o - c;
      const T b = dot(oc, d);
      const T cc = dot(oc, oc) - r * r;
      const T disc = b * b - a * cc;
      const bool meets = (disc >= T(0)) & (a > T(0));  // false on NaN (& not &&: no branches)
      const T sq = ef_sqrt(meets ? disc : T(0));
      const T q = b >= T(0) ? -(b + sq) : (-b + sq);
      const bool q0 = q == T(0);  // b == 0 and disc == 0: grazing at the origin's closest point
      // Both roots 0 when q0 (selected before min/max, which keeps the mask logic vectorisable).
      const T r0 = q0 ? T(0) : q / a, r1 = q0 ? T(0) : cc / (q0 ? T(1) : q);
      const T t0 = ef_min(r0, r1);
      const T t1 = ef_max(r0, r1);
      const T entry = t0 >= T(0) ? t0 : T(0);
      // t1 < 0: the sphere lies entirely behind the ray.
      const bool take = meets & (t1 >= T(0)) & (entry < best);
      best = take ? entry : best;
      best_far = take ? t1 : best_far;
      best_t0 = take ? t0 : best_t0;
      best_c.x = take ? c.x : best_c.x;
      best_c.y = take ? c.y : best_c.y;
      best_c.z = take ? c.z : best_c.z;
      best_k = take ? k : best_k;
    }
    t_near[i] = best * p;
    t_far[i] = best_far * p;
    index[i] = static_cast<I>(best_k);
    // Starting inside (t0 < 0) means the entry is at 0 but not on the surface: no normal.
    // (p - c)/|p - c| rather than /r: the same function on the sphere, but unit length to
    // rounding even where float32 rounding of t moves p slightly off the surface.
    const bool surface = best_t0 >= T(0);  // a hit, and not from inside
    const vec3<T> pc = (o - best_c) + (surface ? best : T(0)) * d;
    const T inv = T(1) / ef_sqrt(dot(pc, pc));
    // Selected per component: exactly +0 off the surface, even for non-finite rows (check=False).
    store3(normal + 3 * i, vec3<T>{surface ? inv * pc.x : T(0), surface ? inv * pc.y : T(0),
                                   surface ? inv * pc.z : T(0)});
    return flags;
  }

  // The CUDA launcher's entry (rows [0, max(n, s))): checks sphere i, then traces ray i.
  EF_HD void operator()(int64_t i) const {
    if (check && i < s) {
      const uint32_t flags = sphere_flags(i);
      if (flags) report_flags(check, flags, i);
    }
    if (i >= n) return;
    if (check) {
      const uint32_t flags = run<true>(i);
      if (flags) report_flags(check, flags, i);
    } else {
      run<false>(i);
    }
  }
};

template <typename T, typename I>
struct RaySphereBackward {
  const T* origins;     // [N, 3]
  const T* dirs;        // [N, 3]
  const T* centers;     // [S, 3]
  const T* radii;       // [S]
  const I* index;       // [N] from the forward pass
  const T* g_t_near;    // [N] or null (zero)
  const T* g_t_far;     // [N] or null
  const T* g_normal;    // [N, 3] or null
  T* g_origins;         // [N, 3]
  T* g_dirs;            // [N, 3]
  // Accumulates into slots 4k..4k+3 = (d/dc_k xyz, d/dr_k).

  template <class Acc>
  EF_HD void operator()(int64_t i, const Acc& acc) const {
    vec3<T> go{T(0), T(0), T(0)}, gd{T(0), T(0), T(0)};
    const int64_t k = static_cast<int64_t>(index[i]);
    if (k >= 0) {
      const vec3<T> o = load3(origins + 3 * i);
      const vec3<T> d_in = load3(dirs + 3 * i);
      // As in the forward pass: the roots of d = p d_in; t0, t1 below are in units of d, and the
      // gradients with respect to t (units of d_in) and d are scaled accordingly (all exact).
      const T p = dir_scale(d_in);
      const vec3<T> d = p * d_in;
      const vec3<T> c = load3(centers + 3 * k);
      const T r = radii[k];
      const vec3<T> oc = o - c;
      const T a = dot(d, d);
      T t0, t1, sq;
      if (sphere_roots(oc, d, a, r, t0, t1, sq) && sq > T(0)) {
        const T inv_r = T(1) / r;
        vec3<T> gc{T(0), T(0), T(0)};
        T gr = T(0);
        const bool outside = t0 >= T(0);
        if (outside) {
          const vec3<T> n0 = inv_r * (oc + t0 * d);
          T gt0 = g_t_near ? g_t_near[i] * p : T(0);  // t_near = p t0
          if (g_normal) {
            const vec3<T> gn = load3(g_normal + 3 * i);
            // Explicit part of n0 = (oc + t0 d) / r.
            go += inv_r * gn;
            gd += (t0 * inv_r) * gn;
            gc += -inv_r * gn;
            gr += -inv_r * dot(gn, n0);
            gt0 += inv_r * dot(gn, d);
          }
          const T k0 = gt0 / (-sq * inv_r);  // n0 . d = -sq / r
          go += -k0 * n0;
          gd += (-k0 * t0) * n0;
          gc += k0 * n0;
          gr += k0;
        }
        if (g_t_far) {
          const vec3<T> n1 = inv_r * (oc + t1 * d);
          const T k1 = (g_t_far[i] * p) / (sq * inv_r);  // n1 . d = sq / r; t_far = p t1
          go += -k1 * n1;
          gd += (-k1 * t1) * n1;
          gc += k1 * n1;
          gr += k1;
        }
        gd = p * gd;  // the gradient with respect to d_in (d = p d_in)
        acc.add(4 * k + 0, gc.x);
        acc.add(4 * k + 1, gc.y);
        acc.add(4 * k + 2, gc.z);
        acc.add(4 * k + 3, gr);
      }
    }
    store3(g_origins + 3 * i, go);
    store3(g_dirs + 3 * i, gd);
  }
};


// ---------------------------------------------------------------------------------------
// Launchers (csrc/cpu/*.cpp, csrc/cuda/*.cu): plain pointers, see launch.h for conventions.
// Instantiated for T = float, double and I = int32_t, int64_t.
// ---------------------------------------------------------------------------------------
namespace cpu {

template <typename T, typename I>
void ray_sphere_intersect_forward(const T* origins /*[N,3]*/, const T* dirs /*[N,3]*/, int64_t n,
                                  const T* centers /*[S,3]*/, const T* radii /*[S]*/, int32_t s,
                                  T* t_near /*[N]*/, T* t_far /*[N]*/, I* index /*[N]*/, T* normal /*[N,3]*/,
                                  CheckRecord* check);

template <typename T, typename I>
void ray_sphere_intersect_backward(const T* origins /*[N,3]*/, const T* dirs /*[N,3]*/, int64_t n,
                                   const T* centers /*[S,3]*/, const T* radii /*[S]*/, int32_t s,
                                   const I* index /*[N]*/, const T* g_t_near /*[N] or null*/,
                                   const T* g_t_far /*[N] or null*/, const T* g_normal /*[N,3] or null*/,
                                   T* g_origins /*[N,3]*/, T* g_dirs /*[N,3]*/, T* g_spheres /*[S,4]: c.xyz, r*/);

}  // namespace cpu

namespace cuda {

template <typename T, typename I>
int ray_sphere_intersect_forward(const T* origins, const T* dirs, int64_t n, const T* centers, const T* radii,
                                 int32_t s, T* t_near, T* t_far, I* index, T* normal, CheckRecord* check,
                                 void* stream);

template <typename T, typename I>
int ray_sphere_intersect_backward(const T* origins, const T* dirs, int64_t n, const T* centers, const T* radii,
                                  int32_t s, const I* index, const T* g_t_near, const T* g_t_far,
                                  const T* g_normal, T* g_origins, T* g_dirs, T* g_spheres, void* stream);

}  // namespace cuda

}  // namespace eyefast
