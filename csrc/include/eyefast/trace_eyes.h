// eyefast/trace_eyes.h: camera rays against refractive eyes (globe + cornea cap), fused: first
// hit, Snell refraction with exact Fresnel at the cornea, and the refracted ray's hit on the iris
// plane. Forward and backward; the contract is eyefast/reference/eye.py::trace_eyes.
//
// Eye k is a row of 12 values (EYE_COLUMNS): centre c (cx, cy, cz), globe radius r, gaze
// (gx, gy, gz; any length > 0, g = gaze / |gaze|), cornea_radius, cornea_offset,
// limbus_radius, iris_depth (the last four in units of r) and ior. Derived:
//   cornea sphere: centre cc = c + (cornea_offset r) g, radius rc = cornea_radius r;
//   iris plane:    centre ic = c + ((cornea_offset + cornea_radius - iris_depth) r) g (iris_depth
//                  r behind the corneal apex), normal g, disc radius L = limbus_radius r;
//   iris axes:     gaze_frame(g): e_u = (1 - gx^2 k, -gx gy k, -gx), e_v = (-gx gy k,
//                  1 - gy^2 k, -gy), k = 1 / (1 + gz) (world x, y carried onto the plane by the
//                  smallest rotation taking +z to g; undefined at g = -z, rejected by the checks).
//
// Per ray (o, d; d need not be unit length, t is in units of d; any length > 0: the ray is traced
// along d scaled by a power of two, see common.h dir_scale, so float32 1e-30 or 1e30 works):
//   For each eye whose globe and cornea spheres both leave the origin outside (|o - c| >= r and
//   |o - cc| >= rc; else the eye is ignored), the entry roots tg, tc >= 0 of the two spheres
//   (sphere_roots of ray_sphere.h, so t equals ray_sphere_intersect's t_near bit for bit; +inf
//   when missed or behind; a line that misses a bounding sphere of the eye is rejected first, see
//   load_eye); the eye's candidate is
//   min(tg, tc), on the cornea iff tc < tg (ties -> sclera). The first eye with the smallest
//   candidate wins (strict <: ties -> lower index). Miss: t = +inf, eye = -1, region 0, every
//   other output 0 (t_iris +inf).
//   Hit: p = o + t d, normal = (p - C) / R with (C, R) the hit sphere (not renormalised, like the
//   reference). Sclera -> region 1, refr_dir = 0, fresnel = 0.
//   Cornea: u = d / |d|, eta = 1 / ior, ci = clamp(-u.normal, 0, 1), sin2t = eta^2 (1 - ci^2);
//     sin2t > 1 (total internal reflection, ior < 1): refr_dir = u + 2 ci normal, fresnel = 1;
//     else ct = sqrt(1 - sin2t) (0 at sin2t = 1), refr_dir = eta u + (eta ci - ct) normal,
//     fresnel = (rs^2 + rp^2) / 2 (refract.h's fresnel_unpolarized).
//     Iris: with den = refr_dir.g and s = ((ic - p).g) / den, the ray reaches the plane when not
//     TIR, den < 0 and s > 0; then q = p + s refr_dir, (u, v) = ((q - ic).e_u, (q - ic).e_v) / L
//     and u^2 + v^2 <= 1 -> region 2 (iris), t_iris = s, iris_uv = (u, v); otherwise region 3
//     (cornea), t_iris = +inf, iris_uv = 0.
//
// Backward: reverse mode through the formulas above, from the saved t, eye and region (the
// forward's choices are kept; the derivative of the discrete choices is 0). Each root follows
// implicit differentiation (as ray_sphere.h): dt = (dR - n.(do + t dd - dC)) / (n.d). Exactly
// tangent hits (n.d = 0, unbounded derivative) get a zero gradient. The derivative of ct is
// unbounded at the critical angle: 0 there (and on the TIR side, where fresnel is constant).
// ci's clamp passes the gradient only inside [0, 1], like torch.clamp. Eye-parameter gradients
// are summed over the rays into [E, 12] (gaze through its normalisation).
#pragma once

#include "eyefast/common.h"
#include "eyefast/ray_sphere.h"
#include "eyefast/refract.h"

// The per-ray bodies below are large; GCC would otherwise call them out of line (through the PLT,
// in the shared library) once per ray. Force them inline on the host too.
#if defined(__CUDACC__)
#define EF_TE_HD EF_HD
#else
#define EF_TE_HD inline __attribute__((always_inline))
#endif

namespace eyefast {

constexpr int kEyeParams = 12;  // columns of the eyes tensor (reference EYE_COLUMNS)
enum EyeColumn : int {
  kEyeCx = 0,
  kEyeCy = 1,
  kEyeCz = 2,
  kEyeRadius = 3,
  kEyeGx = 4,
  kEyeGy = 5,
  kEyeGz = 6,
  kEyeCorneaRadius = 7,
  kEyeCorneaOffset = 8,
  kEyeLimbusRadius = 9,
  kEyeIrisDepth = 10,
  kEyeIor = 11,
};

// region codes (reference REGION_*)
enum EyeRegion : int {
  kRegionMiss = 0,
  kRegionSclera = 1,
  kRegionIris = 2,
  kRegionCornea = 3,
};

// Check flags of the forward pass (CheckRecord::flags bits).
enum TraceEyesCheck : int64_t {
  kTE_OriginsNonFinite = 1,
  kTE_DirsNonFinite = 2,
  kTE_DirsZero = 4,
  kTE_CenterNonFinite = 8,            // columns 0-2
  kTE_RadiusInvalid = 16,             // column 3: <= 0 or not finite
  kTE_GazeInvalid = 32,               // columns 4-6: not finite or zero length
  kTE_GazeBackward = 64,              // gz / |g| <= -1 + 1e-6: gaze_frame undefined
  kTE_CorneaRadiusInvalid = 128,      // column 7: <= 0 or not finite
  kTE_CorneaOffsetNonFinite = 256,    // column 8
  kTE_LimbusRadiusInvalid = 512,      // column 9: <= 0 or not finite
  kTE_IrisDepthNonFinite = 1024,      // column 10
  kTE_IorInvalid = 2048,              // column 11: <= 0 or not finite
};

// One eye row with its derived geometry.
template <typename T>
struct EyeGeometry {
  vec3<T> c;       // globe centre
  T r;             // globe radius
  vec3<T> g;       // unit gaze
  T inv_gl;        // 1 / |gaze row|
  T cr, co, lr, idp, ior;
  vec3<T> cc;      // cornea centre
  T rc;            // cornea radius
  T rb2;           // squared radius of a sphere around c enclosing globe and cornea (with margin)
};

template <typename T>
EF_TE_HD EyeGeometry<T> load_eye(const T* e /* [12] */) {
  EyeGeometry<T> q;
  q.c = load3(e);
  q.r = e[kEyeRadius];
  const vec3<T> graw = load3(e + kEyeGx);
  const T gl = ef_sqrt(dot(graw, graw));
  q.g = vec3<T>{graw.x / gl, graw.y / gl, graw.z / gl};  // divided, like the reference
  q.inv_gl = T(1) / gl;
  q.cr = e[kEyeCorneaRadius];
  q.co = e[kEyeCorneaOffset];
  q.lr = e[kEyeLimbusRadius];
  q.idp = e[kEyeIrisDepth];
  q.ior = e[kEyeIor];
  q.cc = q.c + q.g * (q.co * q.r);
  q.rc = q.cr * q.r;
  // Bounding sphere of the eye: both spheres lie within max(r, |co| r + rc) of c. The rejection
  // test (eye_entry) cannot drop a globe hit: it uses the globe test's own rounded b, a and
  // |o - c|^2 with a radius >= r, and rounding is monotone (without FMA contraction, i.e. on the
  // host; on CUDA only exactly tangent rays could differ by an ulp). For the cornea the 1e-3 margin covers
  // rounding unless the origin is ~1e4 radii away (float32).
  const T rb = ef_max(q.r, ef_abs(q.co * q.r) + q.rc) * T(1.001);
  q.rb2 = rb * rb;
  return q;
}

// Iris-plane axes of a unit gaze (reference gaze_frame).
template <typename T>
EF_TE_HD void gaze_frame(const vec3<T>& g, vec3<T>& e_u, vec3<T>& e_v) {
  const T k = T(1) / (T(1) + g.z);
  e_u = vec3<T>{T(1) - g.x * g.x * k, -g.x * g.y * k, -g.x};
  e_v = vec3<T>{-g.x * g.y * k, T(1) - g.y * g.y * k, -g.y};
}

// Pulls gradients of (e_u, e_v) back to the unit gaze g (added to gg).
template <typename T>
EF_TE_HD void gaze_frame_backward(const vec3<T>& g, const vec3<T>& g_eu, const vec3<T>& g_ev, vec3<T>& gg) {
  const T k = T(1) / (T(1) + g.z);
  const T gxy = g_eu.y + g_ev.x;  // both entries are -gx gy k
  gg.x += g_eu.x * (T(-2) * g.x * k) - gxy * g.y * k - g_eu.z;
  gg.y += g_ev.y * (T(-2) * g.y * k) - gxy * g.x * k - g_ev.z;
  const T gk = -(g_eu.x * g.x * g.x + gxy * g.x * g.y + g_ev.y * g.y * g.y);
  gg.z += gk * (-k * k);
}

// The entry candidate of one eye: t (+inf when none) and whether it is on the cornea.
template <typename T>
EF_TE_HD T eye_entry(const EyeGeometry<T>& e, const vec3<T>& o, const vec3<T>& d, T a, bool& on_cornea) {
  const vec3<T> oc_g = o - e.c;
  on_cornea = false;
  // Quick rejection: the line misses the eye's bounding sphere (most rays miss most eyes).
  const T bb = dot(oc_g, d);
  const T og2 = dot(oc_g, oc_g);
  if (bb * bb < a * (og2 - e.rb2)) return ef_inf<T>();
  const vec3<T> oc_c = o - e.cc;
  // Origin inside the globe or the cornea: the eye is ignored.
  if (og2 < e.r * e.r || dot(oc_c, oc_c) < e.rc * e.rc) return ef_inf<T>();
  T t0, t1, sq;
  T tg = ef_inf<T>(), tc = ef_inf<T>();
  if (sphere_roots(oc_g, d, a, e.r, t0, t1, sq) && t0 >= T(0)) tg = t0;
  if (sphere_roots(oc_c, d, a, e.rc, t0, t1, sq) && t0 >= T(0)) tc = t0;
  on_cornea = tc < tg;  // ties -> sclera
  return on_cornea ? tc : tg;
}

// Everything the outputs of a hit depend on, from the hit's t (shared by forward and backward so
// that both see the same values).
template <typename T>
struct EyeShade {
  vec3<T> p, C, N;  // hit point, hit sphere centre, normal (p - C) / R
  T R;
  // cornea only
  vec3<T> u;        // unit ray direction
  T inv_len_d;
  T eta, ci_raw, ci, sin2t, ct;
  bool tir;
  vec3<T> refr;
  T fres;
  // iris plane (cornea, not TIR)
  T h, hr, L;       // h = co + cr - idp; hr = h r; L = lr r
  vec3<T> ic, e_u, e_v, q, off;
  T den, num, s, uu, vv;
  bool reaches_plane;  // not TIR, den < 0 and s > 0 (the fields above are set)
  bool on_iris;
};

template <typename T>
EF_TE_HD void eye_shade(const EyeGeometry<T>& e, const vec3<T>& o, const vec3<T>& d, T t, bool cornea,
                     EyeShade<T>& sh) {
  sh = EyeShade<T>{};  // fields a branch below does not reach read as 0
  sh.p = o + t * d;
  sh.C = cornea ? e.cc : e.c;
  sh.R = cornea ? e.rc : e.r;
  const vec3<T> pc = sh.p - sh.C;
  sh.N = vec3<T>{pc.x / sh.R, pc.y / sh.R, pc.z / sh.R};
  sh.tir = false;
  sh.reaches_plane = false;
  sh.on_iris = false;
  if (!cornea) return;
  const T len_d = ef_sqrt(dot(d, d));
  sh.inv_len_d = T(1) / len_d;
  sh.u = vec3<T>{d.x / len_d, d.y / len_d, d.z / len_d};
  sh.eta = T(1) / e.ior;
  sh.ci_raw = -dot(sh.u, sh.N);
  sh.ci = ef_min(ef_max(sh.ci_raw, T(0)), T(1));
  sh.sin2t = sh.eta * sh.eta * (T(1) - sh.ci * sh.ci);
  sh.tir = sh.sin2t > T(1);
  sh.ct = sh.sin2t < T(1) ? ef_sqrt(T(1) - sh.sin2t) : T(0);
  if (sh.tir) {
    sh.refr = sh.u + (T(2) * sh.ci) * sh.N;
    sh.fres = T(1);
  } else {
    sh.refr = sh.eta * sh.u + (sh.eta * sh.ci - sh.ct) * sh.N;
    sh.fres = fresnel_unpolarized(sh.eta, sh.ci, sh.ct);
  }
  // Iris plane.
  sh.h = e.co + e.cr - e.idp;
  sh.hr = sh.h * e.r;
  sh.ic = e.c + e.g * sh.hr;
  sh.den = dot(sh.refr, e.g);
  if (sh.tir || !(sh.den < T(0))) return;
  sh.num = dot(sh.ic - sh.p, e.g);
  sh.s = sh.num / sh.den;
  if (!(sh.s > T(0))) return;
  sh.reaches_plane = true;
  sh.q = sh.p + sh.s * sh.refr;
  sh.L = e.lr * e.r;
  const vec3<T> qi = sh.q - sh.ic;
  sh.off = vec3<T>{qi.x / sh.L, qi.y / sh.L, qi.z / sh.L};
  gaze_frame(e.g, sh.e_u, sh.e_v);
  sh.uu = dot(sh.off, sh.e_u);
  sh.vv = dot(sh.off, sh.e_v);
  sh.on_iris = sh.uu * sh.uu + sh.vv * sh.vv <= T(1);
}

template <typename T, typename I>
struct TraceEyesForward {
  const T* origins;  // [N, 3]
  const T* dirs;     // [N, 3]
  const T* eyes;     // [E, 12]
  int32_t n_eyes;
  T* t;              // [N]
  I* eye;            // [N]
  I* region;         // [N]
  T* normal;         // [N, 3]
  T* refr_dir;       // [N, 3]
  T* fresnel;        // [N]
  T* t_iris;         // [N]
  T* iris_uv;        // [N, 2]
  CheckRecord* check;  // nullable: no checks
  int64_t n;           // rays; the launcher runs rows [0, max(n, E)) so that every eye is checked
  // Optional per-eye geometry (load_eye of each row) precomputed by the launcher; null: derived
  // per ray (the CUDA launchers: cheap there, and no scratch memory needed).
  const EyeGeometry<T>* geometry;

  EF_TE_HD EyeGeometry<T> eye_geometry(int64_t k) const {
    return geometry ? geometry[k] : load_eye(eyes + kEyeParams * k);
  }

  EF_HD void check_eye(int64_t k) const {
    const T* e = eyes + kEyeParams * k;
    if (!all_finite(load3(e))) report_bad_row(check, kTE_CenterNonFinite, k);
    const T r = e[kEyeRadius];
    if (!(r > T(0)) || !ef_isfinite(r)) report_bad_row(check, kTE_RadiusInvalid, k);
    const vec3<T> g = load3(e + kEyeGx);
    const T gl2 = dot(g, g);
    if (!all_finite(g) || !(gl2 > T(0)) || !ef_isfinite(gl2)) {
      report_bad_row(check, kTE_GazeInvalid, k);
    } else if (g.z / ef_sqrt(gl2) <= T(-1) + T(1e-6)) {
      report_bad_row(check, kTE_GazeBackward, k);
    }
    const T cr = e[kEyeCorneaRadius];
    if (!(cr > T(0)) || !ef_isfinite(cr)) report_bad_row(check, kTE_CorneaRadiusInvalid, k);
    if (!ef_isfinite(e[kEyeCorneaOffset])) report_bad_row(check, kTE_CorneaOffsetNonFinite, k);
    const T lr = e[kEyeLimbusRadius];
    if (!(lr > T(0)) || !ef_isfinite(lr)) report_bad_row(check, kTE_LimbusRadiusInvalid, k);
    if (!ef_isfinite(e[kEyeIrisDepth])) report_bad_row(check, kTE_IrisDepthNonFinite, k);
    const T ior = e[kEyeIor];
    if (!(ior > T(0)) || !ef_isfinite(ior)) report_bad_row(check, kTE_IorInvalid, k);
  }

  EF_TE_HD void operator()(int64_t i) const {
    if (check && i < n_eyes) check_eye(i);
    if (i >= n) return;
    const vec3<T> o = load3(origins + 3 * i);
    const vec3<T> d_in = load3(dirs + 3 * i);
    // Traced along d = p d_in (p a power of two, common.h dir_scale: any length > 0 works); t is
    // found in units of d and stored in units of d_in (exact scalings).
    const T p = dir_scale(d_in);
    const vec3<T> d = p * d_in;
    const T a = dot(d, d);
    if (check) {
      if (!all_finite(o)) report_bad_row(check, kTE_OriginsNonFinite, i);
      if (!all_finite(d_in)) report_bad_row(check, kTE_DirsNonFinite, i);
      else if (a == T(0)) report_bad_row(check, kTE_DirsZero, i);
    }
    T best = ef_inf<T>();
    int32_t best_k = -1;
    bool best_cornea = false;
    for (int32_t k = 0; k < n_eyes; ++k) {
      bool on_cornea;
      const T tk = eye_entry(eye_geometry(k), o, d, a, on_cornea);
      if (tk < best) {
        best = tk;
        best_k = k;
        best_cornea = on_cornea;
      }
    }
    const T zero = T(0);
    if (best_k < 0) {
      t[i] = ef_inf<T>();
      eye[i] = static_cast<I>(-1);
      region[i] = static_cast<I>(kRegionMiss);
      store3(normal + 3 * i, vec3<T>{zero, zero, zero});
      store3(refr_dir + 3 * i, vec3<T>{zero, zero, zero});
      fresnel[i] = zero;
      t_iris[i] = ef_inf<T>();
      iris_uv[2 * i] = zero;
      iris_uv[2 * i + 1] = zero;
      return;
    }
    EyeShade<T> sh;
    eye_shade(eye_geometry(best_k), o, d, best, best_cornea, sh);
    t[i] = best * p;
    eye[i] = static_cast<I>(best_k);
    store3(normal + 3 * i, sh.N);
    if (!best_cornea) {
      region[i] = static_cast<I>(kRegionSclera);
      store3(refr_dir + 3 * i, vec3<T>{zero, zero, zero});
      fresnel[i] = zero;
    } else {
      region[i] = static_cast<I>(sh.on_iris ? kRegionIris : kRegionCornea);
      store3(refr_dir + 3 * i, sh.refr);
      fresnel[i] = sh.fres;
    }
    t_iris[i] = sh.on_iris ? sh.s : ef_inf<T>();
    iris_uv[2 * i] = sh.on_iris ? sh.uu : zero;
    iris_uv[2 * i + 1] = sh.on_iris ? sh.vv : zero;
  }
};

template <typename T, typename I>
struct TraceEyesBackward {
  const T* origins;     // [N, 3]
  const T* dirs;        // [N, 3]
  const T* eyes;        // [E, 12]
  const T* t;           // [N] from the forward pass
  const I* eye;         // [N]
  const I* region;      // [N]
  const T* g_t;         // [N] or null (zero)
  const T* g_normal;    // [N, 3] or null
  const T* g_refr_dir;  // [N, 3] or null
  const T* g_fresnel;   // [N] or null
  const T* g_t_iris;    // [N] or null
  const T* g_iris_uv;   // [N, 2] or null
  T* g_origins;         // [N, 3]
  T* g_dirs;            // [N, 3]
  const EyeGeometry<T>* geometry;  // optional, as in TraceEyesForward
  // Accumulates d/d eyes[k, j] into slot 12 k + j.

  template <class Acc>
  EF_TE_HD void operator()(int64_t i, const Acc& acc) const {
    const vec3<T> zero3{T(0), T(0), T(0)};
    vec3<T> go = zero3, gd = zero3;
    const int64_t k = static_cast<int64_t>(eye[i]);
    const int reg = static_cast<int>(region[i]);
    if (k >= 0 && reg != kRegionMiss) {
      const vec3<T> o = load3(origins + 3 * i);
      const vec3<T> d_in = load3(dirs + 3 * i);
      // As in the forward pass, along d = p d_in with ti = t / p in units of d; the gradients of t and
      // of d_in follow from t = p ti and d = p d_in (exact scalings).
      const T p = dir_scale(d_in);
      const vec3<T> d = p * d_in;
      const EyeGeometry<T> e = geometry ? geometry[k] : load_eye(eyes + kEyeParams * k);
      const T ti = t[i] / p;
      const bool cornea = reg == kRegionIris || reg == kRegionCornea;
      EyeShade<T> sh;
      eye_shade(e, o, d, ti, cornea, sh);
      // n.d at the entry root is -sq / R (sq = sqrt of the discriminant), as in ray_sphere.h.
      T t0, t1, sq = T(0);
      const bool roots = sphere_roots(o - sh.C, d, dot(d, d), sh.R, t0, t1, sq);
      if (roots && sq > T(0)) {  // else exactly tangent: unbounded derivative, gradient 0
        const T nd = -sq / sh.R;
        vec3<T> gp = zero3, gN = g_normal ? load3(g_normal + 3 * i) : zero3;
        vec3<T> gC = zero3, gc = zero3, gg = zero3;
        T gR = T(0), gr = T(0), gcr = T(0), gco = T(0), glr = T(0), gidp = T(0), gior = T(0);
        if (cornea) {
          vec3<T> grefr = g_refr_dir ? load3(g_refr_dir + 3 * i) : zero3;
          // --- iris plane (region 2 only: elsewhere t_iris and iris_uv are constants) ---
          if (reg == kRegionIris && sh.reaches_plane && (g_t_iris || g_iris_uv)) {
            const T guu = g_iris_uv ? g_iris_uv[2 * i] : T(0);
            const T gvv = g_iris_uv ? g_iris_uv[2 * i + 1] : T(0);
            const vec3<T> g_off = guu * sh.e_u + gvv * sh.e_v;
            gaze_frame_backward(e.g, guu * sh.off, gvv * sh.off, gg);
            const T inv_L = T(1) / sh.L;
            const vec3<T> gq = inv_L * g_off;  // off = (q - ic) / L
            vec3<T> g_ic = -gq;
            const T gL = -dot(g_off, sh.off) * inv_L;
            glr += gL * e.r;
            gr += gL * e.lr;
            // q = p + s refr
            gp += gq;
            const T gs = (g_t_iris ? g_t_iris[i] : T(0)) + dot(gq, sh.refr);
            grefr += sh.s * gq;
            // s = num / den, num = (ic - p).g, den = refr.g
            const T gnum = gs / sh.den;
            const T gden = -gs * sh.s / sh.den;
            g_ic += gnum * e.g;
            gp += -gnum * e.g;
            gg += gnum * (sh.ic - sh.p);
            grefr += gden * e.g;
            gg += gden * sh.refr;
            // ic = c + g (h r), h = co + cr - idp
            gc += g_ic;
            gg += sh.hr * g_ic;
            const T ghr = dot(g_ic, e.g);
            gr += ghr * sh.h;
            const T gh = ghr * e.r;
            gco += gh;
            gcr += gh;
            gidp -= gh;
          }
          // --- refraction and Fresnel ---
          vec3<T> gu, gm;
          T gci;
          if (sh.tir) {  // refr = u + 2 ci m; fresnel = 1
            gu = grefr;
            gm = (T(2) * sh.ci) * grefr;
            gci = T(2) * dot(grefr, sh.N);
          } else {  // refr = eta u + (eta ci - ct) m
            gu = sh.eta * grefr;
            gm = (sh.eta * sh.ci - sh.ct) * grefr;
            const T gk = dot(grefr, sh.N);
            T geta = dot(grefr, sh.u) + gk * sh.ci;
            gci = gk * sh.eta;
            T gct = -gk;
            if (g_fresnel) fresnel_unpolarized_backward(sh.eta, sh.ci, sh.ct, g_fresnel[i], geta, gci, gct);
            cos_t_backward(sh.eta, sh.ci, sh.ct, gct, geta, gci);
            gior += -geta * sh.eta * sh.eta;  // eta = 1 / ior
          }
          if (sh.ci_raw >= T(0) && sh.ci_raw <= T(1)) {  // ci = clamp(-u.m, 0, 1)
            gu += -gci * sh.N;
            gm += -gci * sh.u;
          }
          gd += normalize_backward(sh.u, sh.inv_len_d, gu);
          gN += gm;
        }
        // --- normal N = (p - C) / R ---
        const T inv_R = T(1) / sh.R;
        gp += inv_R * gN;
        gC += -inv_R * gN;
        gR += -inv_R * dot(gN, sh.N);
        // --- p = o + t d ---
        go += gp;
        gd += ti * gp;
        const T gt = (g_t ? g_t[i] * p : T(0)) + dot(gp, d);
        // --- t: implicit root of |o + t d - C|^2 = R^2 ---
        const T kt = gt / nd;
        go += -kt * sh.N;
        gd += (-kt * ti) * sh.N;
        gC += kt * sh.N;
        gR += kt;
        // --- (C, R) -> eye columns ---
        gc += gC;
        if (cornea) {  // C = c + (co r) g, R = cr r
          gg += (e.co * e.r) * gC;
          const T gcg = dot(gC, e.g);
          gco += gcg * e.r;
          gr += gcg * e.co + gR * e.cr;
          gcr += gR * e.r;
        } else {
          gr += gR;
        }
        const vec3<T> g_graw = normalize_backward(e.g, e.inv_gl, gg);
        const int64_t b = kEyeParams * k;
        acc.add(b + kEyeCx, gc.x);
        acc.add(b + kEyeCy, gc.y);
        acc.add(b + kEyeCz, gc.z);
        acc.add(b + kEyeRadius, gr);
        acc.add(b + kEyeGx, g_graw.x);
        acc.add(b + kEyeGy, g_graw.y);
        acc.add(b + kEyeGz, g_graw.z);
        acc.add(b + kEyeCorneaRadius, gcr);
        acc.add(b + kEyeCorneaOffset, gco);
        acc.add(b + kEyeLimbusRadius, glr);
        acc.add(b + kEyeIrisDepth, gidp);
        acc.add(b + kEyeIor, gior);
      }
      gd = p * gd;  // with respect to d_in
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
void trace_eyes_forward(const T* origins /*[N,3]*/, const T* dirs /*[N,3]*/, int64_t n, const T* eyes /*[E,12]*/,
                        int32_t n_eyes, T* t /*[N]*/, I* eye /*[N]*/, I* region /*[N]*/, T* normal /*[N,3]*/,
                        T* refr_dir /*[N,3]*/, T* fresnel /*[N]*/, T* t_iris /*[N]*/, T* iris_uv /*[N,2]*/,
                        CheckRecord* check);

template <typename T, typename I>
void trace_eyes_backward(const T* origins /*[N,3]*/, const T* dirs /*[N,3]*/, int64_t n, const T* eyes /*[E,12]*/,
                         int32_t n_eyes, const T* t /*[N]*/, const I* eye /*[N]*/, const I* region /*[N]*/,
                         const T* g_t /*[N] or null*/, const T* g_normal /*[N,3] or null*/,
                         const T* g_refr_dir /*[N,3] or null*/, const T* g_fresnel /*[N] or null*/,
                         const T* g_t_iris /*[N] or null*/, const T* g_iris_uv /*[N,2] or null*/,
                         T* g_origins /*[N,3]*/, T* g_dirs /*[N,3]*/, T* g_eyes /*[E,12]*/);

}  // namespace cpu

namespace cuda {

template <typename T, typename I>
int trace_eyes_forward(const T* origins, const T* dirs, int64_t n, const T* eyes, int32_t n_eyes, T* t, I* eye,
                       I* region, T* normal, T* refr_dir, T* fresnel, T* t_iris, T* iris_uv, CheckRecord* check,
                       void* stream);

template <typename T, typename I>
int trace_eyes_backward(const T* origins, const T* dirs, int64_t n, const T* eyes, int32_t n_eyes, const T* t,
                        const I* eye, const I* region, const T* g_t, const T* g_normal, const T* g_refr_dir,
                        const T* g_fresnel, const T* g_t_iris, const T* g_iris_uv, T* g_origins, T* g_dirs,
                        T* g_eyes, void* stream);

}  // namespace cuda

}  // namespace eyefast
