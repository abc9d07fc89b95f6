// eyefast/refract.h: Snell refraction with exact dielectric Fresnel reflectance, fwd and bwd.
//
// Contract (per ray i):
//   u = dirs[i] / |dirs[i]| (travel direction; any length > 0: the length is formed after scaling by
//   a power of two, so float32 1e-30 or 1e30 works), m = normals[i] / |normals[i]| flipped, if need
//   be, to face the incoming ray (u . m <= 0). eta = n_from / n_to (eta[i], or eta[0] when the
//   eta stride is 0). cos_i = -u.m, sin^2_t = eta^2 (1 - cos_i^2).
//   sin^2_t <= 1:  out = eta u + (eta cos_i - cos_t) m    (unit length by construction)
//                  R = (rs^2 + rp^2) / 2,  rs = (eta ci - ct)/(eta ci + ct),
//                                          rp = (ci - eta ct)/(ci + eta ct)
//                  (unpolarised; at normal incidence R = ((eta-1)/(eta+1))^2)
//   sin^2_t > 1 (total internal reflection): out = u - 2 (u.m) m (mirror), R = 1, tir = 1.
//   At exactly the critical angle (sin^2_t == 1) the ray is refracted along the surface
//   (cos_t = 0) and R = 1 (continuous with the TIR side).
//
// Backward: the chain rule through the formulas above; the derivative of cos_t is unbounded at
// the critical angle, where it is set to 0 (as is every derivative of R on the TIR side).
#pragma once

#include "eyefast/common.h"

namespace eyefast {

enum RefractCheck : int64_t {
  kRF_DirsNonFinite = 1,
  kRF_DirsZero = 2,
  kRF_NormalsNonFinite = 4,
  kRF_NormalsZero = 8,
  kRF_EtaInvalid = 16,  // eta <= 0 or not finite
};

template <typename T>
struct RefractGeometry {
  vec3<T> u, m;  // unit direction, unit normal facing the ray
  T inv_d, inv_n, sign;  // 1/|d|, 1/|n|, +1 or -1 (normal flipped)
  T ci, sin2t;
};

// Unit vector of v (any length > 0) and 1/|v|: v is scaled by a power of two (common.h dir_scale)
// before its length is formed, so that |v|^2 neither overflows nor underflows; exact, so ordinary
// lengths give the same bits as v / |v|.
template <typename T>
EF_HD vec3<T> unit_and_inv_length(const vec3<T>& v, T& inv_len) {
  const T p = dir_scale(v);
  const vec3<T> s = p * v;
  const T inv_s = T(1) / ef_sqrt(dot(s, s));
  inv_len = inv_s * p;  // 1/|v| = p/|s|
  return inv_s * s;
}

template <typename T>
EF_HD RefractGeometry<T> refract_geometry(const vec3<T>& d, const vec3<T>& n, T eta) {
  RefractGeometry<T> g;
  g.u = unit_and_inv_length(d, g.inv_d);
  g.m = unit_and_inv_length(n, g.inv_n);
  // Branch-free (selects, not jumps): the facing side is random per ray in real scenes.
  const T c = -dot(g.u, g.m);
  g.sign = c < T(0) ? T(-1) : T(1);
  g.m = g.sign * g.m;
  g.ci = ef_min(g.sign * c, T(1));  // min: rounding
  g.sin2t = eta * eta * (T(1) - g.ci * g.ci);
  return g;
}

// Unpolarised Fresnel reflectance of a refracted (not totally reflected) ray: (rs^2 + rp^2) / 2
// with rs = (e ci - ct) / (e ci + ct), rp = (ci - e ct) / (ci + e ct); a vanishing denominator
// (grazing at the critical angle) counts as a full reflection of that polarisation.
template <typename T>
EF_HD T fresnel_unpolarized(T e, T ci, T ct) {
  const T rs_den = e * ci + ct, rp_den = ci + e * ct;
  const T rs = rs_den > T(0) ? (e * ci - ct) / rs_den : T(1);
  const T rp = rp_den > T(0) ? (ci - e * ct) / rp_den : T(1);
  return T(0.5) * (rs * rs + rp * rp);
}

// Adds the gradient of fresnel_unpolarized (gR: its incoming gradient) to geta, gci, gct.
template <typename T>
EF_HD void fresnel_unpolarized_backward(T e, T ci, T ct, T gR, T& geta, T& gci, T& gct) {
  const T B = e * ci + ct, D = ci + e * ct;
  if (B > T(0) && D > T(0)) {
    const T rs = (e * ci - ct) / B, rp = (ci - e * ct) / D;
    const T grs = gR * rs, grp = gR * rp;
    const T iB2 = T(1) / (B * B), iD2 = T(1) / (D * D);
    geta += grs * (T(2) * ci * ct * iB2) + grp * (T(-2) * ci * ct * iD2);
    gci += grs * (T(2) * e * ct * iB2) + grp * (T(2) * e * ct * iD2);
    gct += grs * (T(-2) * e * ci * iB2) + grp * (T(-2) * e * ci * iD2);
  }
}

// Pulls a gradient of ct = sqrt(1 - e^2 (1 - ci^2)) back to e and ci (nothing where ct = 0: the
// derivative is unbounded at the critical angle).
template <typename T>
EF_HD void cos_t_backward(T e, T ci, T ct, T gct, T& geta, T& gci) {
  if (ct > T(0)) {
    const T inv_ct = T(1) / ct;
    geta += gct * (-e * (T(1) - ci * ci) * inv_ct);
    gci += gct * (e * e * ci * inv_ct);
  }
}

template <typename T>
struct RefractForward {
  const T* dirs;     // [N, 3]
  const T* normals;  // [N, 3]
  const T* eta;      // [N] (eta_stride 1) or [1] (eta_stride 0)
  int64_t eta_stride;
  T* out;            // [N, 3]
  T* reflectance;    // [N]
  uint8_t* tir;      // [N] (0/1)
  CheckRecord* check;  // nullable

  // Row i; returns its check flags when Check (branch-free: see for_each_checked, launch.h).
  template <bool Check>
  EF_HD uint32_t run(int64_t i) const {
    const vec3<T> d = load3(dirs + 3 * i);
    const vec3<T> n = load3(normals + 3 * i);
    const T e = eta[i * eta_stride];
    uint32_t flags = 0;
    if (Check) {
      const bool d_finite = all_finite(d), n_finite = all_finite(n);
      const T zero = T(0);  // zero vectors (not tiny ones: every length > 0 is fine)
      flags = flag_if(!d_finite, kRF_DirsNonFinite) |
              flag_if(d_finite && d.x == zero && d.y == zero && d.z == zero, kRF_DirsZero) |
              flag_if(!n_finite, kRF_NormalsNonFinite) |
              flag_if(n_finite && n.x == zero && n.y == zero && n.z == zero, kRF_NormalsZero) |
              flag_if((eta_stride != 0 || i == 0) && !(e > T(0) && ef_isfinite(e)), kRF_EtaInvalid);
    }
    const RefractGeometry<T> g = refract_geometry(d, n, e);
    // Both branches are computed and selected, so random TIR/no-TIR rays cost no mispredictions.
    const bool is_tir = g.sin2t > T(1);
    const T ct = ef_sqrt(ef_max(T(1) - g.sin2t, T(0)));
    const T k = is_tir ? T(2) * g.ci : e * g.ci - ct;  // out = s u + k m
    const T su = is_tir ? T(1) : e;
    store3(out + 3 * i, su * g.u + k * g.m);
    reflectance[i] = is_tir ? T(1) : fresnel_unpolarized(e, g.ci, ct);
    tir[i] = is_tir ? 1 : 0;
    return flags;
  }

  // The CUDA launcher's entry: row i, reporting its flags.
  EF_HD void operator()(int64_t i) const {
    if (check) {
      const uint32_t flags = run<true>(i);
      if (flags) report_flags(check, flags, i);
    } else {
      run<false>(i);
    }
  }
};

template <typename T>
struct RefractBackward {
  const T* dirs;      // [N, 3]
  const T* normals;   // [N, 3]
  const T* eta;       // [N] or [1]
  int64_t eta_stride;
  const T* g_out;     // [N, 3] or null
  const T* g_refl;    // [N] or null
  T* g_dirs;          // [N, 3]
  T* g_normals;       // [N, 3]
  T* g_eta;           // [N] per-ray contribution (summed by the caller when eta is shared)

  EF_HD void operator()(int64_t i) const {
    const vec3<T> d = load3(dirs + 3 * i);
    const vec3<T> n = load3(normals + 3 * i);
    const T e = eta[i * eta_stride];
    const RefractGeometry<T> g = refract_geometry(d, n, e);
    const vec3<T> go = g_out ? load3(g_out + 3 * i) : vec3<T>{T(0), T(0), T(0)};
    vec3<T> gu{T(0), T(0), T(0)}, gm{T(0), T(0), T(0)};
    T geta = T(0);
    if (g.sin2t > T(1)) {
      // out = u - 2 (u.m) m ; R = 1 is constant.
      const T um = -g.ci;
      const T gom = dot(go, g.m);
      gu = go - (T(2) * gom) * g.m;
      gm = T(-2) * (um * go + gom * g.u);
    } else {
      const T ct = ef_sqrt(T(1) - g.sin2t);
      const T k = e * g.ci - ct;
      // out = e u + k m
      gu = e * go;
      gm = k * go;
      const T gk = dot(go, g.m);
      geta += dot(go, g.u) + gk * g.ci;
      T gci = gk * e;
      T gct = -gk;
      if (g_refl) fresnel_unpolarized_backward(e, g.ci, ct, g_refl[i], geta, gci, gct);
      cos_t_backward(e, g.ci, ct, gct, geta, gci);  // ct = sqrt(1 - e^2 (1 - ci^2))
      // ci = -u.m
      gu += -gci * g.m;
      gm += -gci * g.u;
    }
    store3(g_dirs + 3 * i, normalize_backward(g.u, g.inv_d, gu));
    // m = sign * n / |n|
    store3(g_normals + 3 * i, normalize_backward(g.sign * g.m, g.inv_n, g.sign * gm));
    g_eta[i] = geta;
  }
};


// ---------------------------------------------------------------------------------------
// Launchers (csrc/cpu/*.cpp, csrc/cuda/*.cu): plain pointers, see launch.h for conventions.
// Instantiated for T = float, double.
// ---------------------------------------------------------------------------------------
namespace cpu {

template <typename T>
void refract_forward(const T* dirs /*[N,3]*/, const T* normals /*[N,3]*/, const T* eta /*[N] or [1]*/,
                     int64_t eta_stride /*1 or 0*/, int64_t n, T* out /*[N,3]*/, T* reflectance /*[N]*/,
                     uint8_t* tir /*[N]*/, CheckRecord* check);

template <typename T>
void refract_backward(const T* dirs /*[N,3]*/, const T* normals /*[N,3]*/, const T* eta /*[N] or [1]*/,
                      int64_t eta_stride, int64_t n, const T* g_out /*[N,3] or null*/,
                      const T* g_reflectance /*[N] or null*/, T* g_dirs /*[N,3]*/, T* g_normals /*[N,3]*/,
                      T* g_eta /*[N]*/);

}  // namespace cpu

namespace cuda {

template <typename T>
int refract_forward(const T* dirs, const T* normals, const T* eta, int64_t eta_stride, int64_t n, T* out,
                    T* reflectance, uint8_t* tir, CheckRecord* check, void* stream);

template <typename T>
int refract_backward(const T* dirs, const T* normals, const T* eta, int64_t eta_stride, int64_t n,
                     const T* g_out, const T* g_reflectance, T* g_dirs, T* g_normals, T* g_eta, void* stream);

}  // namespace cuda

}  // namespace eyefast
