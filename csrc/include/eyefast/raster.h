// eyefast/raster.h: triangle rasterisation with a depth test, and attribute interpolation.
//
// Conventions (the capture's camera: x right, y down, z forward):
//   * Clip space: each vertex is (x, y, z, w); NDC = (x, y, z) / w. NDC x = -1 is the left edge
//     of the image, +1 the right edge; NDC y = -1 is the TOP edge (row 0), +1 the bottom edge.
//     Screen (pixel) coordinates: sx = (x/w + 1) * W/2, sy = (y/w + 1) * H/2; pixel (i, j)
//     (column i, row j) covers [i, i+1) x [j, j+1) and is sampled at its centre (i + 0.5, j + 0.5).
//   * A face is culled (no clipping) when one of its vertices has w <= 0, lies in front of the
//     near plane (z < -w, i.e. NDC z < -1), is not finite, or lands farther than the guard band
//     (kRasterGuard pixels) from the image origin. A fragment is discarded when its NDC z > 1
//     (beyond the far plane). Both windings are rasterised (no back-face culling).
//   * Coverage is exact: vertex screen positions are snapped to 1/256 pixel (8 sub-pixel bits)
//     and the edge functions are evaluated in 64-bit integers with the top-left rule, so a pixel
//     centre on an edge shared by two faces belongs to exactly one of them (watertight), and a
//     degenerate face (zero snapped area) covers nothing.
//   * Depth test: nearest view depth w wins. The key is (float32 bits of w at the pixel centre,
//     face index) packed in 64 bits and combined with an atomic min, so equal depths go to the
//     smallest face index and CPU and CUDA agree bit for bit (the key is computed with explicitly
//     rounded operations: no FMA contraction; see rn_* below).
//   * Outputs per pixel: pix_to_face (-1 when empty), perspective-correct barycentrics of the
//     pixel centre's ray w.r.t. the face's vertices in the order faces[f] lists them (computed
//     in float64 from the unsnapped positions: they sum to 1 and may be marginally negative,
//     ~1/512 pixel, at covered pixels next to an edge), and depth = the view depth w at the
//     pixel centre (1 / the interpolated 1/w; for eyefast.ops.project_to_clip: the camera-space
//     z). Empty pixels: bary = 0, depth = 0.
//
// Two passes: RasterizeFaces (one item per face: bounding box, integer edge functions, atomic
// min of the key per covered pixel) into a [H*W] scratch of 64-bit keys pre-filled with
// kRasterEmptyKey, then RasterizeResolve (one item per pixel: barycentrics and depth of the
// winning face). Work per face grows with its pixel count; a face covering much of a large image
// is handled by a single thread (fine for meshes of many small faces, the use here).
#pragma once

#include <string.h>

#include "eyefast/atomic.h"
#include "eyefast/common.h"

namespace eyefast {

constexpr int kRasterSubpixelBits = 8;
constexpr int64_t kRasterSubpixel = int64_t(1) << kRasterSubpixelBits;  // 256 steps per pixel
constexpr double kRasterGuard = 1048576.0;  // 2^20 pixels: farther vertices cull their face
constexpr int32_t kRasterMaxSize = 65536;   // largest height / width
constexpr unsigned long long kRasterEmptyKey = ~0ull;

// Check flags (CheckRecord::flags bits).
enum RasterCheck : int64_t {
  kRA_FacesOutOfRange = 1,  // a vertex index outside [0, V): that face is skipped
};
enum InterpolateCheck : int64_t {
  kIP_FacesOutOfRange = 1,      // faces[f] has an index outside [0, V): its pixels read as empty
  kIP_PixToFaceOutOfRange = 2,  // pix_to_face outside [-1, F): that pixel reads as empty
};

// ---------------------------------------------------------------------------------------
// Explicitly rounded arithmetic: on the device these cannot be contracted into FMAs, so the
// depth keys equal the host's (the host build uses -ffp-contract=off).
// ---------------------------------------------------------------------------------------
EF_HD float rn_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
EF_HD double rn_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
EF_HD float rn_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
EF_HD double rn_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
EF_HD float rn_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
EF_HD double rn_div(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
EF_HD float ef_rint(float x) { return rintf(x); }  // round half to even
EF_HD double ef_rint(double x) { return rint(x); }

EF_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  memcpy(&u, &x, sizeof(u));
  return u;
#endif
}

// int64 -> T through double (exact below 2^53; one rounding either way, the same on both sides).
template <typename T>
EF_HD T int_to(int64_t v) {
  return static_cast<T>(static_cast<double>(v));
}

EF_HD int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

EF_HD void atomic_min_u64(unsigned long long* p, unsigned long long v) {
#if defined(__CUDA_ARCH__)
  atomicMin(p, v);
#else
  unsigned long long cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
#endif
}

// One vertex in screen space: snapped fixed-point position, and the per-vertex values the depth
// key interpolates (1/w and NDC z) in the working precision T.
template <typename T>
struct ScreenVertex {
  int64_t X, Y;  // screen position * 256, rounded half to even
  T q;           // 1 / w
  T zn;          // z / w
};

// Returns false when the vertex culls its face (see the contract above).
template <typename T>
EF_HD bool screen_vertex(const T* clip /*[4]*/, T half_w, T half_h, ScreenVertex<T>& out) {
  const T x = clip[0], y = clip[1], z = clip[2], w = clip[3];
  if (!(w > T(0)) || !(z >= -w) || !ef_isfinite(x) || !ef_isfinite(y) || !ef_isfinite(z) || !ef_isfinite(w)) {
    return false;
  }
  const T sx = rn_mul(rn_add(rn_div(x, w), T(1)), half_w);
  const T sy = rn_mul(rn_add(rn_div(y, w), T(1)), half_h);
  const T guard = static_cast<T>(kRasterGuard);
  if (!(ef_abs(sx) <= guard) || !(ef_abs(sy) <= guard)) return false;
  out.X = static_cast<int64_t>(ef_rint(rn_mul(sx, static_cast<T>(kRasterSubpixel))));
  out.Y = static_cast<int64_t>(ef_rint(rn_mul(sy, static_cast<T>(kRasterSubpixel))));
  out.q = rn_div(T(1), w);
  out.zn = rn_div(z, w);
  return true;
}

// Top-left rule for an edge p -> q of a face whose snapped area is > 0 (inside = positive edge
// functions): the edge owns the pixel centres exactly on it when it is a top edge (horizontal,
// going right) or a left edge (going up, y down). Opposite edges never both own a point.
EF_HD bool edge_owns(int64_t dx, int64_t dy) { return dy < 0 || (dy == 0 && dx > 0); }

template <typename T, typename I>
struct RasterizeFaces {
  const T* verts;  // [V, 4] clip-space positions
  const I* faces;  // [F, 3]
  int64_t v;
  int32_t h, w;
  unsigned long long* keys;  // [H * W], pre-filled with kRasterEmptyKey
  CheckRecord* check;        // nullable

  EF_HD void operator()(int64_t f) const {
    const int64_t ia = static_cast<int64_t>(faces[3 * f]), ib = static_cast<int64_t>(faces[3 * f + 1]),
                  ic = static_cast<int64_t>(faces[3 * f + 2]);
    if (ia < 0 || ia >= v || ib < 0 || ib >= v || ic < 0 || ic >= v) {
      if (check) report_bad_row(check, kRA_FacesOutOfRange, f);
      return;
    }
    const T half_w = rn_mul(static_cast<T>(w), T(0.5)), half_h = rn_mul(static_cast<T>(h), T(0.5));
    ScreenVertex<T> a, b, c;
    if (!screen_vertex(verts + 4 * ia, half_w, half_h, a) || !screen_vertex(verts + 4 * ib, half_w, half_h, b) ||
        !screen_vertex(verts + 4 * ic, half_w, half_h, c)) {
      return;
    }
    int64_t area = (b.X - a.X) * (c.Y - a.Y) - (b.Y - a.Y) * (c.X - a.X);
    if (area == 0) return;
    if (area < 0) {  // make the winding positive: swap b and c
      const ScreenVertex<T> t = b;
      b = c;
      c = t;
      area = -area;
    }
    // Pixel range whose centres (256 i + 128) lie inside the snapped bounding box.
    const int64_t S = kRasterSubpixel, half = S / 2;
    const int64_t min_x = ef_min(a.X, ef_min(b.X, c.X)), max_x = ef_max(a.X, ef_max(b.X, c.X));
    const int64_t min_y = ef_min(a.Y, ef_min(b.Y, c.Y)), max_y = ef_max(a.Y, ef_max(b.Y, c.Y));
    const int64_t x0 = ef_max<int64_t>(floor_div(min_x - half + S - 1, S), 0);
    const int64_t x1 = ef_min<int64_t>(floor_div(max_x - half, S), w - 1);
    const int64_t y0 = ef_max<int64_t>(floor_div(min_y - half + S - 1, S), 0);
    const int64_t y1 = ef_min<int64_t>(floor_div(max_y - half, S), h - 1);
    if (x0 > x1 || y0 > y1) return;
    // Edge functions E_pq(P) = (q - p) x (P - p); inside: E > 0, or E == 0 on an owned edge.
    // e_a (edge b -> c) weighs vertex a, e_b (c -> a) weighs b, e_c (a -> b) weighs c.
    const int64_t dxa = c.X - b.X, dya = c.Y - b.Y;
    const int64_t dxb = a.X - c.X, dyb = a.Y - c.Y;
    const int64_t dxc = b.X - a.X, dyc = b.Y - a.Y;
    const int64_t bias_a = edge_owns(dxa, dya) ? 0 : 1;  // accept e >= bias
    const int64_t bias_b = edge_owns(dxb, dyb) ? 0 : 1;
    const int64_t bias_c = edge_owns(dxc, dyc) ? 0 : 1;
    const T inv_area = rn_div(T(1), int_to<T>(area));
    const int64_t px0 = x0 * S + half;
    for (int64_t y = y0; y <= y1; ++y) {
      const int64_t py = y * S + half;
      int64_t ea = dxa * (py - b.Y) - dya * (px0 - b.X);
      int64_t eb = dxb * (py - c.Y) - dyb * (px0 - c.X);
      int64_t ec = dxc * (py - a.Y) - dyc * (px0 - a.X);
      unsigned long long* row = keys + y * static_cast<int64_t>(w);
      for (int64_t x = x0; x <= x1; ++x, ea -= dya * S, eb -= dyb * S, ec -= dyc * S) {
        if (ea < bias_a || eb < bias_b || ec < bias_c) continue;
        const T la = rn_mul(int_to<T>(ea), inv_area), lb = rn_mul(int_to<T>(eb), inv_area),
                lc = rn_mul(int_to<T>(ec), inv_area);
        const T q = rn_add(rn_add(rn_mul(la, a.q), rn_mul(lb, b.q)), rn_mul(lc, c.q));
        if (!(q > T(0))) continue;
        const T zn = rn_add(rn_add(rn_mul(la, a.zn), rn_mul(lb, b.zn)), rn_mul(lc, c.zn));
        if (!(zn <= T(1))) continue;  // beyond the far plane
        const float depth = static_cast<float>(rn_div(T(1), q));
        const unsigned long long key =
            (static_cast<unsigned long long>(float_bits(depth)) << 32) | static_cast<unsigned long long>(f);
        atomic_min_u64(row + x, key);
      }
    }
  }
};

template <typename T, typename I>
struct RasterizeResolve {
  const T* verts;                  // [V, 4]
  const I* faces;                  // [F, 3]
  const unsigned long long* keys;  // [H * W]
  int32_t h, w;
  int32_t* pix_to_face;  // [H * W]
  T* bary;               // [H * W, 3]
  T* depth;              // [H * W]

  EF_HD void operator()(int64_t p) const {
    const unsigned long long key = keys[p];
    if (key == kRasterEmptyKey) {
      pix_to_face[p] = -1;
      bary[3 * p] = bary[3 * p + 1] = bary[3 * p + 2] = T(0);
      depth[p] = T(0);
      return;
    }
    const int64_t f = static_cast<int64_t>(key & 0xffffffffull);
    const int64_t y = p / w, x = p - y * w;
    const double px = static_cast<double>(x) + 0.5, py = static_cast<double>(y) + 0.5;
    const double half_w = 0.5 * w, half_h = 0.5 * h;
    // In float64: screen positions (unsnapped) and 1/w of the three vertices.
    double iw[3], sx[3], sy[3], wsum = 0.0;
    for (int k = 0; k < 3; ++k) {
      const T* src = verts + 4 * static_cast<int64_t>(faces[3 * f + k]);
      const double cw = static_cast<double>(src[3]);
      iw[k] = 1.0 / cw;
      sx[k] = (static_cast<double>(src[0]) * iw[k] + 1.0) * half_w;
      sy[k] = (static_cast<double>(src[1]) * iw[k] + 1.0) * half_h;
      wsum += cw;
    }
    // Edge functions e_k of the pixel centre (twice the signed area of the sub-triangle opposite
    // vertex k; screen barycentrics are e_k / area). Perspective-correct barycentrics are
    // (e_k / w_k) / sum_j (e_j / w_j), and the view depth 1 / sum_j(l_j / w_j) = area / sum_j(e_j / w_j).
    const double area = (sx[1] - sx[0]) * (sy[2] - sy[0]) - (sy[1] - sy[0]) * (sx[2] - sx[0]);
    double pk[3], s = 0.0;
    for (int k = 0; k < 3; ++k) {
      const int k1 = (k + 1) % 3, k2 = (k + 2) % 3;
      const double e = (sx[k2] - sx[k1]) * (py - sy[k1]) - (sy[k2] - sy[k1]) * (px - sx[k1]);
      pk[k] = e * iw[k];
      s += pk[k];
    }
    const double inv_s = 1.0 / s, d = area * inv_s;
    pix_to_face[p] = static_cast<int32_t>(f);
    if (!(d > 0.0) || !ef_isfinite(d)) {  // collinear to float64 rounding: the face's mean
      for (int k = 0; k < 3; ++k) bary[3 * p + k] = static_cast<T>(1.0 / 3.0);
      depth[p] = static_cast<T>(wsum / 3.0);
      return;
    }
    for (int k = 0; k < 3; ++k) bary[3 * p + k] = static_cast<T>(pk[k] * inv_s);
    depth[p] = static_cast<T>(d);
  }
};

// out[p] = sum_k bary[p, k] * attrs[faces[pix_to_face[p], k]]; 0 where pix_to_face[p] < 0.
template <typename T, typename I>
struct InterpolateForward {
  const T* attrs;               // [V, C]
  const I* faces;               // [F, 3]
  const int32_t* pix_to_face;   // [P]
  const T* bary;                // [P, 3]
  int64_t v, f, c;
  T* out;                       // [P, C]
  CheckRecord* check;           // nullable

  EF_HD void operator()(int64_t p) const {
    T* o = out + p * c;
    const int64_t fi = static_cast<int64_t>(pix_to_face[p]);
    bool ok = fi >= 0 && fi < f;
    if (!ok && fi != -1 && check) report_bad_row(check, kIP_PixToFaceOutOfRange, p);
    int64_t idx[3] = {0, 0, 0};
    if (ok) {
      for (int k = 0; k < 3; ++k) {
        idx[k] = static_cast<int64_t>(faces[3 * fi + k]);
        if (idx[k] < 0 || idx[k] >= v) ok = false;
      }
      if (!ok && check) report_bad_row(check, kIP_FacesOutOfRange, fi);
    }
    if (!ok) {
      for (int64_t j = 0; j < c; ++j) o[j] = T(0);
      return;
    }
    const T b0 = bary[3 * p], b1 = bary[3 * p + 1], b2 = bary[3 * p + 2];
    const T* a0 = attrs + idx[0] * c;
    const T* a1 = attrs + idx[1] * c;
    const T* a2 = attrs + idx[2] * c;
    for (int64_t j = 0; j < c; ++j) o[j] = b0 * a0[j] + b1 * a1[j] + b2 * a2[j];
  }
};

// Backward of InterpolateForward: g_attrs[faces[f, k]] += bary[p, k] * g_out[p] (atomic adds
// into a zeroed [V, C]), g_bary[p, k] = g_out[p] . attrs[faces[f, k]] (0 at empty pixels).
template <typename T, typename I>
struct InterpolateBackward {
  const T* attrs;              // [V, C]
  const I* faces;              // [F, 3]
  const int32_t* pix_to_face;  // [P]
  const T* bary;               // [P, 3]
  const T* g_out;              // [P, C]
  int64_t v, f, c;
  T* g_attrs;  // [V, C], zeroed by the launcher
  T* g_bary;   // [P, 3]

  EF_HD void operator()(int64_t p) const {
    const int64_t fi = static_cast<int64_t>(pix_to_face[p]);
    bool ok = fi >= 0 && fi < f;
    int64_t idx[3] = {0, 0, 0};
    if (ok) {
      for (int k = 0; k < 3; ++k) {
        idx[k] = static_cast<int64_t>(faces[3 * fi + k]);
        if (idx[k] < 0 || idx[k] >= v) ok = false;
      }
    }
    if (!ok) {
      g_bary[3 * p] = g_bary[3 * p + 1] = g_bary[3 * p + 2] = T(0);
      return;
    }
    const T* g = g_out + p * c;
    for (int k = 0; k < 3; ++k) {
      const T bk = bary[3 * p + k];
      const T* a = attrs + idx[k] * c;
      T* ga = g_attrs + idx[k] * c;
      T dotk = T(0);
      for (int64_t j = 0; j < c; ++j) {
        dotk += g[j] * a[j];
        if (bk != T(0) && g[j] != T(0)) atomic_add(ga + j, bk * g[j]);
      }
      g_bary[3 * p + k] = dotk;
    }
  }
};


// ---------------------------------------------------------------------------------------
// Launchers (csrc/cpu/raster.cpp, csrc/cuda/raster.cu): plain pointers, see launch.h.
// Instantiated for T = float, double and I = int32_t, int64_t. `keys` is caller-provided scratch
// of H * W 64-bit words (overwritten). Faces with an index outside [0, V) are skipped (and
// reported in `check` when it is not null).
// ---------------------------------------------------------------------------------------
namespace cpu {

template <typename T, typename I>
void rasterize(const T* verts_clip /*[V,4]*/, int64_t v, const I* faces /*[F,3]*/, int64_t f, int32_t height,
               int32_t width, unsigned long long* keys /*[H*W] scratch*/, int32_t* pix_to_face /*[H*W]*/,
               T* bary /*[H*W,3]*/, T* depth /*[H*W]*/, CheckRecord* check);

template <typename T, typename I>
void interpolate_forward(const T* attrs /*[V,C]*/, int64_t v, int64_t c, const I* faces /*[F,3]*/, int64_t f,
                         const int32_t* pix_to_face /*[P]*/, const T* bary /*[P,3]*/, int64_t p, T* out /*[P,C]*/,
                         CheckRecord* check);

template <typename T, typename I>
void interpolate_backward(const T* attrs /*[V,C]*/, int64_t v, int64_t c, const I* faces /*[F,3]*/, int64_t f,
                          const int32_t* pix_to_face /*[P]*/, const T* bary /*[P,3]*/, int64_t p,
                          const T* g_out /*[P,C]*/, T* g_attrs /*[V,C]*/, T* g_bary /*[P,3]*/);

}  // namespace cpu

namespace cuda {

template <typename T, typename I>
int rasterize(const T* verts_clip, int64_t v, const I* faces, int64_t f, int32_t height, int32_t width,
              unsigned long long* keys, int32_t* pix_to_face, T* bary, T* depth, CheckRecord* check, void* stream);

template <typename T, typename I>
int interpolate_forward(const T* attrs, int64_t v, int64_t c, const I* faces, int64_t f, const int32_t* pix_to_face,
                        const T* bary, int64_t p, T* out, CheckRecord* check, void* stream);

template <typename T, typename I>
int interpolate_backward(const T* attrs, int64_t v, int64_t c, const I* faces, int64_t f,
                         const int32_t* pix_to_face, const T* bary, int64_t p, const T* g_out, T* g_attrs,
                         T* g_bary, void* stream);

}  // namespace cuda

}  // namespace eyefast
