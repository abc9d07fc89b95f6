// eyefast/hash_grid.h: multi-resolution hash-grid encoding (instant-ngp), forward, backward and
// double backward, for 3-D inputs.
//
// Contract (per point i, x = clamp(x_i, 0, 1); NaN counts as 0):
//   Level l has a scale s_l (given by the caller; eyefast.nn.HashGrid passes
//   s_l = base_resolution * per_level_scale^l - 1 as tiny-cuda-nn does) and R_l = ceil(s_l) + 2
//   vertices per axis. pos = x * s_l + 0.5 (tcnn's half-cell offset), cell = floor(pos),
//   t = pos - cell. The 8 corners c = cell + {0,1}^3 are looked up in level l's table of
//   T = 2^k rows (F features each):
//     dense   (R_l^3 <= T):  row = c.x + R_l * (c.y + R_l * c.z)
//     hashed  (otherwise):   row = (c.x * 1 ^ c.y * 2654435761 ^ c.z * 805459861) mod 2^32 & (T - 1)
//   and blended with the trilinear weights prod_k w(t_k) or (1 - w(t_k)), where
//   w(t) = t ("linear") or t^2 (3 - 2t) ("smoothstep").
//   Levels l >= n_active output 0 (progressive training) and receive no gradient.
//   Output row i: [L * F], level-major (level l's features at l*F .. l*F+F-1).
// Gradients: d/dx_k is 0 for a coordinate outside [0, 1] (it was clamped).
// Table: one tensor [L, T, F]; dense levels use only their first R_l^3 rows.
#pragma once

#include <type_traits>

#include "eyefast/atomic.h"
#include "eyefast/common.h"

namespace eyefast {

constexpr int kHashGridMaxLevels = 32;
constexpr int kHashGridMaxFeatures = 8;

EF_HD float ef_floor(float x) { return floorf(x); }
EF_HD double ef_floor(double x) { return floor(x); }
// a * b + c rounded twice, never contracted into an FMA: the grid position must round exactly as
// on the host (and in the reference), or points near a cell boundary land in different cells and
// the finest levels differ by ~1 ulp of the position (2e-5 relative at scale 200).
EF_HD float ef_mul_add_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(a, b), c);
#else
  return a * b + c;
#endif
}
EF_HD double ef_mul_add_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(__dmul_rn(a, b), c);
#else
  return a * b + c;
#endif
}

struct HashGridLayout {
  int32_t n_levels;
  int32_t n_features;      // 1..8
  int32_t n_active;        // levels >= n_active are zero
  uint32_t table_size;     // rows per level, a power of two
  bool smoothstep;
  double scale[kHashGridMaxLevels];
  uint32_t res[kHashGridMaxLevels];  // R_l
  bool dense[kHashGridMaxLevels];
};

// Fills res/dense from scale/table_size (host side, shared by both launchers).
inline void hash_grid_finish_layout(HashGridLayout& L) {
  for (int l = 0; l < L.n_levels; ++l) {
    const double r = std::ceil(L.scale[l]) + 2.0;
    L.res[l] = r > 4294967295.0 ? 4294967295u : static_cast<uint32_t>(r);
    L.dense[l] = r * r * r <= static_cast<double>(L.table_size);
  }
}

// The helpers and kernel bodies below are always inlined: on the host GCC otherwise leaves the
// per-point and per-corner helpers as out-of-line calls in the launchers' many instantiations.
#if defined(__CUDACC__)
#define EF_HG_INLINE __host__ __device__ __forceinline__
#elif defined(_MSC_VER)
#define EF_HG_INLINE __forceinline
#else
#define EF_HG_INLINE inline __attribute__((always_inline))
#endif
// Full unrolling of the corner and feature loops (GCC's own heuristics leave the scatter loops
// rolled); nvcc unrolls them by itself (and its host pass warns about GCC pragmas).
#if defined(__CUDACC__) || defined(_MSC_VER)
#define EF_HG_UNROLL
#elif defined(__clang__)
#define EF_HG_UNROLL _Pragma("unroll")
#else
#define EF_HG_UNROLL _Pragma("GCC unroll 8")
#endif

// Compile-time switches of the kernel bodies: k = 0 or 1 fixes the choice (the CPU launcher
// instantiates every case); k < 0 reads it at run time (the CUDA launcher, to keep its kernel
// count down).
EF_HG_INLINE constexpr bool hash_grid_flag(int k, bool runtime) { return k < 0 ? runtime : k != 0; }

// Per-level constants, hoisted out of the per-point work.
template <typename T>
struct HashGridLevel {
  T s;            // scale s_l
  uint32_t res;   // R_l on a dense level, 0 on a hashed one
  uint32_t mask;  // T - 1
  int64_t off;    // level l's first element in the table: l * T * F
};

template <typename T>
EF_HG_INLINE HashGridLevel<T> hash_grid_level(const HashGridLayout& L, int l, int F) {
  HashGridLevel<T> v;
  v.s = static_cast<T>(L.scale[l]);
  v.res = L.dense[l] ? L.res[l] : 0u;
  v.mask = L.table_size - 1u;
  v.off = static_cast<int64_t>(l) * L.table_size * F;
  return v;
}

// One point at one level: the cell's lower corner and, per axis k, the weight factor a[k][u] of
// the lower (u = 0) and upper (u = 1) corners, with its first (da) and second (dda) derivatives
// w.r.t. x_k (0 on a clamped axis). kOrder: the derivatives wanted (0, 1 or 2); others unset.
template <typename T>
struct HashGridPoint {
  uint32_t base[3];
  T a[3][2], da[3][2], dda[3][2];
};

template <typename T, int kOrder>
EF_HG_INLINE void hash_grid_point(const T* p /* [3] */, T s, bool smooth, HashGridPoint<T>& q) {
  for (int k = 0; k < 3; ++k) {
    const T v = p[k];
    const bool inside = v >= T(0) && v <= T(1);
    const T xs = v >= T(0) ? (v <= T(1) ? v : T(1)) : T(0);  // NaN -> 0
    const T pos = ef_mul_add_rn(xs, s, T(0.5));                // >= 0.5
#if defined(__CUDA_ARCH__)
    const T fl = ef_floor(pos);
    q.base[k] = static_cast<uint32_t>(fl);
#else
    // pos > 0, so truncation is floor (and cheaper than floor on a baseline x86-64 target).
    const int64_t ip = static_cast<int64_t>(pos);
    const T fl = static_cast<T>(ip);
    q.base[k] = static_cast<uint32_t>(ip);
#endif
    const T t = pos - fl;
    T w, d = T(1), dd = T(0);
    if (smooth) {
      w = t * t * (T(3) - T(2) * t);
      if (kOrder >= 1) d = T(6) * t * (T(1) - t);
      if (kOrder >= 2) dd = T(6) - T(12) * t;
    } else {
      w = t;
    }
    q.a[k][0] = T(1) - w;
    q.a[k][1] = w;
    if (kOrder >= 1) {
      const T dw = inside ? d * s : T(0);
      q.da[k][0] = -dw;
      q.da[k][1] = dw;
    }
    if (kOrder >= 2) {
      const T ddw = inside ? dd * s * s : T(0);
      q.dda[k][0] = -ddw;
      q.dda[k][1] = ddw;
    }
  }
}

// Rows (within the level) of the 8 corners; corner c is base + (c & 1, (c >> 1) & 1, c >> 2).
// kDense: 1 dense, 0 hashed, < 0 decided at run time (res != 0).
template <int kDense>
EF_HG_INLINE void hash_grid_rows(uint32_t res, uint32_t mask, const uint32_t b[3], uint32_t row[8]) {
  if (hash_grid_flag(kDense, res != 0u)) {
    // x + R (y + R z) mod 2^32, expanded per corner
    const uint32_t r0 = b[0] + res * (b[1] + res * b[2]), dz = res * res;
    EF_HG_UNROLL
    for (int c = 0; c < 8; ++c) row[c] = r0 + (c & 1) + ((c >> 1) & 1) * res + ((c >> 2) & 1) * dz;
  } else {
    const uint32_t hy = b[1] * 2654435761u, hz = b[2] * 805459861u;
    const uint32_t hx2[2] = {b[0], b[0] + 1u}, hy2[2] = {hy, hy + 2654435761u}, hz2[2] = {hz, hz + 805459861u};
    EF_HG_UNROLL
    for (int c = 0; c < 8; ++c) row[c] = (hx2[c & 1] ^ hy2[(c >> 1) & 1] ^ hz2[c >> 2]) & mask;
  }
}

// Sums over a cell's 8 corners of D_c (a per-corner scalar, e.g. <table[c], g>) times derivatives of
// the weights w_c = a_x[c & 1] a_y[(c >> 1) & 1] a_z[c >> 2], by that separable form (the upper
// corner's derivatives are the lower's negated): differences of D along the axes, then per-axis
// factors. A few times cheaper than per-corner products; equal up to rounding.
//   grad[k] = sum_c D_c dw_c/dx_k
template <typename T>
EF_HG_INLINE void hash_grid_corner_grad(const HashGridPoint<T>& q, const T D[8], T grad[3]) {
  const T* A = q.a[0];
  const T* B = q.a[1];
  const T* C = q.a[2];
  T sx = T(0), sy = T(0), sz = T(0);
  for (int u = 0; u < 2; ++u) {
    for (int v = 0; v < 2; ++v) {
      sx += B[u] * C[v] * (D[1 + 2 * u + 4 * v] - D[2 * u + 4 * v]);
      sy += A[u] * C[v] * (D[u + 2 + 4 * v] - D[u + 4 * v]);
      sz += A[u] * B[v] * (D[u + 2 * v + 4] - D[u + 2 * v]);
    }
  }
  grad[0] = q.da[0][1] * sx;
  grad[1] = q.da[1][1] * sy;
  grad[2] = q.da[2][1] * sz;
}

//   hess = {xx, yy, zz, xy, xz, yz}: sum_c D_c d2w_c/dx_k dx_m (needs the second derivatives)
template <typename T>
EF_HG_INLINE void hash_grid_corner_hess(const HashGridPoint<T>& q, const T D[8], T hess[6]) {
  const T* A = q.a[0];
  const T* B = q.a[1];
  const T* C = q.a[2];
  T dX[4], dY[4], dZ[4];  // first differences: dX[y + 2 z], dY[x + 2 z], dZ[x + 2 y]
  for (int u = 0; u < 2; ++u) {
    for (int v = 0; v < 2; ++v) {
      dX[u + 2 * v] = D[1 + 2 * u + 4 * v] - D[2 * u + 4 * v];
      dY[u + 2 * v] = D[u + 2 + 4 * v] - D[u + 4 * v];
      dZ[u + 2 * v] = D[u + 2 * v + 4] - D[u + 2 * v];
    }
  }
  T sxx = T(0), syy = T(0), szz = T(0), sxy = T(0), sxz = T(0), syz = T(0);
  for (int u = 0; u < 2; ++u) {
    for (int v = 0; v < 2; ++v) {
      sxx += B[u] * C[v] * dX[u + 2 * v];
      syy += A[u] * C[v] * dY[u + 2 * v];
      szz += A[u] * B[v] * dZ[u + 2 * v];
    }
    sxy += C[u] * (dX[1 + 2 * u] - dX[2 * u]);  // second differences
    sxz += B[u] * (dX[u + 2] - dX[u]);
    syz += A[u] * (dY[u + 2] - dY[u]);
  }
  hess[0] = q.dda[0][1] * sxx;
  hess[1] = q.dda[1][1] * syy;
  hess[2] = q.dda[2][1] * szz;
  hess[3] = q.da[0][1] * q.da[1][1] * sxy;
  hess[4] = q.da[0][1] * q.da[2][1] * sxz;
  hess[5] = q.da[1][1] * q.da[2][1] * syz;
}

// Host only: prefetches the 8 corner rows of point p [3] at a level in `read` (for reading) and
// `update` (for writing), either may be null. The CPU launcher calls it a few points ahead on
// levels whose table outgrows the caches, where the random row gathers are latency bound.
template <int kDense, typename T>
EF_HG_INLINE void hash_grid_prefetch(const T* p, const HashGridLevel<T>& lv, int F, const T* read, const T* update) {
#if !defined(__CUDA_ARCH__) && (defined(__GNUC__) || defined(__clang__))
  uint32_t b[3];
  for (int k = 0; k < 3; ++k) {
    const T v = p[k];
    const T xs = v >= T(0) ? (v <= T(1) ? v : T(1)) : T(0);
    b[k] = static_cast<uint32_t>(static_cast<int64_t>(ef_mul_add_rn(xs, lv.s, T(0.5))));
  }
  uint32_t row[8];
  hash_grid_rows<kDense>(lv.res, lv.mask, b, row);
  for (int c = 0; c < 8; ++c) {
    const int64_t r = lv.off + static_cast<int64_t>(row[c]) * F;
    if (read) __builtin_prefetch(read + r, 0, 3);
    if (update) __builtin_prefetch(update + r, 1, 3);
  }
#else
  (void)p, (void)lv, (void)F, (void)read, (void)update;
#endif
}

// Gradient-table scatter: atomic, or a plain add into a thread-private table (CPU launcher).
template <typename T>
EF_HG_INLINE void hash_grid_scatter(T* p, T v, bool atomic) {
  if (atomic) {
    if (v != T(0)) atomic_add(p, v);
  } else {
    *p += v;
  }
}

// The bodies: operator()(i) does point i at every level (CUDA: one thread per point); the CPU
// launcher instead walks a tile of points level by level, calling begin(i) on each point, then
// per level zero(i, l) (levels >= n_active) or at_level<kDense, kAtomic>(i, l, level constants).
// Template switches (see hash_grid_flag): FS > 0 the feature count (must equal L.n_features),
// 0 run time; kSmooth smoothstep (else linear); kX / kTable whether the x / table gradient
// is wanted (run time: its pointer is non-null); kDense the level's indexing; kAtomic whether
// table gradients scatter atomically (run time: the `atomic` member). Weights multiply as (a_x a_y) a_z, so sharing
// the x-y products between corners c and c + 4 rounds as the reference does.

// One point at every level (the CUDA launchers' operator()(i)): begin, then each active level, and
// zeros for the inactive ones.
template <class Body>
EF_HG_INLINE void hash_grid_point_all_levels(const Body& b, int64_t i) {
  using T = typename std::remove_cv<typename std::remove_pointer<decltype(b.x)>::type>::type;
  b.begin(i);
  for (int l = 0; l < b.L.n_levels; ++l) {
    if (l < b.L.n_active) {
      b.template at_level<-1>(i, l, hash_grid_level<T>(b.L, l, b.features()));
    } else {
      b.zero(i, l);
    }
  }
}

// Backward: grad_table[l, row, f] += w * g[l, f] (atomics), grad_x[i] = sum dw/dx <row, g>.
template <typename T, int FS = 0, int kSmooth = -1, int kX = -1, int kTable = -1>
struct HashGridBackward {
  const T* x;
  const T* table;
  HashGridLayout L;
  const T* grad_out;  // [N, L*F]
  T* grad_x;          // [N, 3] or null
  T* grad_table;      // [L, T, F] (zeroed before the launch) or null
  bool atomic = true;  // false: grad_table is private to the calling thread

  EF_HG_INLINE int features() const { return FS > 0 ? FS : L.n_features; }
  EF_HG_INLINE const T* read_table() const { return hash_grid_flag(kX, grad_x != nullptr) ? table : nullptr; }
  EF_HG_INLINE T* update_table() const { return hash_grid_flag(kTable, grad_table != nullptr) ? grad_table : nullptr; }
  EF_HG_INLINE void begin(int64_t i) const {
    if (hash_grid_flag(kX, grad_x != nullptr)) grad_x[3 * i] = grad_x[3 * i + 1] = grad_x[3 * i + 2] = T(0);
  }
  EF_HG_INLINE void zero(int64_t, int) const {}  // inactive levels get no gradient
  template <int kDense, int kAtomic = -1>
  EF_HG_INLINE void at_level(int64_t i, int l, const HashGridLevel<T>& lv) const {
    // Locals, not members: the stores into the gradient table could otherwise alias them and
    // force reloads on every corner.
    T* const gt = grad_table;
    T* const gxp = grad_x;
    const T* const tb = table;
    const bool atom = hash_grid_flag(kAtomic, atomic);
    const bool want_x = hash_grid_flag(kX, gxp != nullptr), want_t = hash_grid_flag(kTable, gt != nullptr);
    const int F = features();
    const T* gl = grad_out + i * static_cast<int64_t>(L.n_levels) * F + l * F;
    T g[kHashGridMaxFeatures];
    for (int f = 0; f < F; ++f) g[f] = gl[f];
    HashGridPoint<T> q;
    hash_grid_point<T, kX == 0 ? 0 : 1>(x + 3 * i, lv.s, hash_grid_flag(kSmooth, L.smoothstep), q);
    uint32_t row[8];
    hash_grid_rows<kDense>(lv.res, lv.mask, q.base, row);
    T wxy[4];
    for (int j = 0; j < 4; ++j) wxy[j] = q.a[0][j & 1] * q.a[1][j >> 1];
    T D[8];  // <table[c], g>
    EF_HG_UNROLL
    for (int c = 0; c < 8; ++c) {
      const int64_t r = lv.off + static_cast<int64_t>(row[c]) * F;
      if (want_t) {
        const T w = wxy[c & 3] * q.a[2][c >> 2];
        EF_HG_UNROLL
        for (int f = 0; f < F; ++f) hash_grid_scatter(gt + r + f, w * g[f], atom);
      }
      if (want_x) {
        T dot = T(0);
        EF_HG_UNROLL
        for (int f = 0; f < F; ++f) dot += tb[r + f] * g[f];
        D[c] = dot;
      }
    }
    if (want_x) {
      T gx[3];
      hash_grid_corner_grad(q, D, gx);
      gxp[3 * i + 0] += gx[0];
      gxp[3 * i + 1] += gx[1];
      gxp[3 * i + 2] += gx[2];
    }
  }
  EF_HD void operator()(int64_t i) const {
    begin(i);
    for (int l = 0; l < L.n_active; ++l) at_level<-1>(i, l, hash_grid_level<T>(L, l, features()));
  }
};

// Backward of the x-gradient (grad_x = sum_l,c dw_c/dx <table[c], g_l>) given gg = dLoss/dgrad_x:
//   g_grad_out[l, f] = sum_c (gg . dw_c/dx) table[c, f]
//   g_table[c, f]   += (gg . dw_c/dx) g_l[f]                         (atomics)
//   g_x             = sum_c (H_c gg) <table[c], g_l>,  H_c = d2 w_c / dx2
template <typename T, int FS = 0, int kSmooth = -1, int kX = -1, int kTable = -1>
struct HashGridDoubleBackward {
  const T* x;
  const T* table;
  HashGridLayout L;
  const T* grad_out;  // [N, L*F]
  const T* gg_x;      // [N, 3]
  T* g_grad_out;      // [N, L*F]
  T* g_x;             // [N, 3] or null
  T* g_table;         // [L, T, F] (zeroed before the launch) or null
  bool atomic = true;  // false: g_table is private to the calling thread

  EF_HG_INLINE int features() const { return FS > 0 ? FS : L.n_features; }
  EF_HG_INLINE const T* read_table() const { return table; }
  EF_HG_INLINE T* update_table() const { return hash_grid_flag(kTable, g_table != nullptr) ? g_table : nullptr; }
  EF_HG_INLINE void begin(int64_t i) const {
    if (hash_grid_flag(kX, g_x != nullptr)) g_x[3 * i] = g_x[3 * i + 1] = g_x[3 * i + 2] = T(0);
  }
  EF_HG_INLINE void zero(int64_t i, int l) const {
    const int F = features();
    T* o = g_grad_out + i * static_cast<int64_t>(L.n_levels) * F + l * F;
    for (int f = 0; f < F; ++f) o[f] = T(0);
  }
  template <int kDense, int kAtomic = -1>
  EF_HG_INLINE void at_level(int64_t i, int l, const HashGridLevel<T>& lv) const {
    T* const gt = g_table;  // locals: table stores could alias members
    T* const gxp = g_x;
    const T* const tb = table;
    const bool atom = hash_grid_flag(kAtomic, atomic);
    const bool want_x = hash_grid_flag(kX, gxp != nullptr), want_t = hash_grid_flag(kTable, gt != nullptr);
    const int F = features();
    const int64_t rowoff = i * static_cast<int64_t>(L.n_levels) * F + l * F;
    const T gg[3] = {gg_x[3 * i], gg_x[3 * i + 1], gg_x[3 * i + 2]};
    T gl[kHashGridMaxFeatures];
    for (int f = 0; f < F; ++f) gl[f] = grad_out[rowoff + f];
    HashGridPoint<T> q;
    hash_grid_point<T, kX == 0 ? 1 : 2>(x + 3 * i, lv.s, hash_grid_flag(kSmooth, L.smoothstep), q);
    uint32_t row[8];
    hash_grid_rows<kDense>(lv.res, lv.mask, q.base, row);
    T dx[4], dy[4], wxy[4];  // x-y factors of dw_c/dx for x-y pair j = c & 3
    for (int j = 0; j < 4; ++j) {
      dx[j] = q.da[0][j & 1] * q.a[1][j >> 1];
      dy[j] = q.a[0][j & 1] * q.da[1][j >> 1];
      wxy[j] = q.a[0][j & 1] * q.a[1][j >> 1];
    }
    T acc[kHashGridMaxFeatures];
    for (int f = 0; f < F; ++f) acc[f] = T(0);
    T D[8];  // <table[c], g_l>
    EF_HG_UNROLL
    for (int c = 0; c < 8; ++c) {
      const int j = c & 3, u = c >> 2;
      const T az = q.a[2][u];
      const int64_t r = lv.off + static_cast<int64_t>(row[c]) * F;
      const T v = gg[0] * (dx[j] * az) + gg[1] * (dy[j] * az) + gg[2] * (wxy[j] * q.da[2][u]);  // gg . dw_c/dx
      T dot = T(0);
      EF_HG_UNROLL
      for (int f = 0; f < F; ++f) {
        const T tv = tb[r + f];
        acc[f] += v * tv;
        dot += tv * gl[f];
        if (want_t) hash_grid_scatter(gt + r + f, v * gl[f], atom);
      }
      D[c] = dot;
    }
    if (want_x) {
      T h[6];  // xx, yy, zz, xy, xz, yz
      hash_grid_corner_hess(q, D, h);
      gxp[3 * i + 0] += gg[0] * h[0] + gg[1] * h[3] + gg[2] * h[4];
      gxp[3 * i + 1] += gg[0] * h[3] + gg[1] * h[1] + gg[2] * h[5];
      gxp[3 * i + 2] += gg[0] * h[4] + gg[1] * h[5] + gg[2] * h[2];
    }
    for (int f = 0; f < F; ++f) g_grad_out[rowoff + f] = acc[f];
  }
  EF_HD void operator()(int64_t i) const { hash_grid_point_all_levels(*this, i); }
};

// ---- the forward (hash_grid_encode: rows of stride L*F, no Jacobian) and the encoding inside a
// fused network (csrc/torch/sdf_network.cpp) ----------------------------------------------------
// The network's input row u_i = [2 x_i - 1 (3 columns, when include_x) | encoding (L*F columns) |
// 1 (when ones_col >= 0: that column, the first layer's bias as a weight column)] is written in
// place (row stride `stride`), and with it, when `jac` is given, the encoding's
// Jacobian J_i = d encoding / d x [L*F, 3] (row-major per point: jac[(i * L*F + j) * 3 + k]).
// The network's x-gradient then needs no second pass over the table: grad_x = J^T g (+ 2 g_x).
template <typename T, int FS = 0, int kSmooth = -1, int kJ = -1>
struct HashGridForwardJacobian {
  const T* x;      // [N, 3]
  const T* table;  // [L, T, F]
  HashGridLayout L;
  T* u;            // [N, stride]: columns 0..2 the raw input (include_x), then the encoding
  int64_t stride;
  bool include_x;
  T* jac;          // [N, L*F, 3] or null
  int64_t ones_col = -1;
  // J's layout: entry (point i, encoding column j, axis k) at jac[i * js_i + j * js_j + k * js_k]. The
  // default (js_i = 0) is point-major [N, L*F, 3] (the CPU's: a point's Jacobian in one cache line run);
  // CUDA stores it feature-major (js_i = 1, js_j = 3N, js_k = N: consecutive threads, consecutive points,
  // consecutive addresses).
  int64_t js_i = 0, js_j = 3, js_k = 1;

  EF_HG_INLINE int features() const { return FS > 0 ? FS : L.n_features; }
  EF_HG_INLINE const T* read_table() const { return table; }
  EF_HG_INLINE T* update_table() const { return nullptr; }
  EF_HG_INLINE T* enc_row(int64_t i) const { return u + i * stride + (include_x ? 3 : 0); }
  EF_HG_INLINE void begin(int64_t i) const {
    if (include_x) {
      for (int k = 0; k < 3; ++k) u[i * stride + k] = T(2) * x[3 * i + k] - T(1);
    }
    if (ones_col >= 0) u[i * stride + ones_col] = T(1);
  }
  EF_HG_INLINE int64_t jac_at(int64_t i, int64_t j, int k) const {
    return i * (js_i ? js_i : static_cast<int64_t>(L.n_levels) * features() * 3) + j * js_j + k * js_k;
  }
  EF_HG_INLINE void zero(int64_t i, int l) const {
    const int F = features();
    T* o = enc_row(i) + l * F;
    for (int f = 0; f < F; ++f) o[f] = T(0);
    if (hash_grid_flag(kJ, jac != nullptr)) {
      for (int f = 0; f < F; ++f)
        for (int k = 0; k < 3; ++k) jac[jac_at(i, static_cast<int64_t>(l) * F + f, k)] = T(0);
    }
  }
  template <int kDense, int kAtomic = -1>  // kAtomic: unused (no scatter)
  EF_HG_INLINE void at_level(int64_t i, int l, const HashGridLevel<T>& lv) const {
    const int F = features();
    const bool want_j = hash_grid_flag(kJ, jac != nullptr);
    HashGridPoint<T> q;
    hash_grid_point<T, kJ == 0 ? 0 : 1>(x + 3 * i, lv.s, hash_grid_flag(kSmooth, L.smoothstep), q);
    uint32_t row[8];
    hash_grid_rows<kDense>(lv.res, lv.mask, q.base, row);
    T wxy[4];
    for (int j = 0; j < 4; ++j) wxy[j] = q.a[0][j & 1] * q.a[1][j >> 1];
    T acc[kHashGridMaxFeatures];
    T tv[kHashGridMaxFeatures][8];
    for (int f = 0; f < F; ++f) acc[f] = T(0);
    const T* tl = table + lv.off;
    EF_HG_UNROLL
    for (int c = 0; c < 8; ++c) {
      const T w = wxy[c & 3] * q.a[2][c >> 2];
      const T* r = tl + static_cast<int64_t>(row[c]) * F;
      EF_HG_UNROLL
      for (int f = 0; f < F; ++f) {
        const T v = r[f];
        acc[f] += w * v;
        tv[f][c] = v;
      }
    }
    T* o = enc_row(i) + l * F;
    for (int f = 0; f < F; ++f) o[f] = acc[f];
    if (want_j) {
      if (js_i == 0) {  // point-major: a point's entries are contiguous
        T* jr = jac + (i * static_cast<int64_t>(L.n_levels) * F + l * F) * 3;
        for (int f = 0; f < F; ++f) hash_grid_corner_grad(q, tv[f], jr + 3 * f);
      } else {
        for (int f = 0; f < F; ++f) {
          T g[3];
          hash_grid_corner_grad(q, tv[f], g);
          const int64_t j = static_cast<int64_t>(l) * F + f;
          for (int k = 0; k < 3; ++k) jac[jac_at(i, j, k)] = g[k];
        }
      }
    }
  }
  EF_HD void operator()(int64_t i) const { hash_grid_point_all_levels(*this, i); }
};

// The table gradient of a fused network in one scatter, both terms at once:
//   g_table[c, f] += w_c g_enc[l, f]                  (the encoding's own gradient; g_enc may be null)
//                  + (gg . dw_c/dx) gu[l, f]          (through the x-gradient J^T gu; gg may be null)
// g_enc and gu are rows of stride `stride` (the encoding columns of the network's input).
template <typename T, int FS = 0, int kSmooth = -1, int kW = -1, int kD = -1>
struct HashGridTableGrad {
  const T* x;
  HashGridLayout L;
  const T* g_enc;  // [N, stride] (encoding columns) or null
  const T* gg;     // [N, 3] or null
  const T* gu;     // [N, stride] (encoding columns); read when gg is given
  int64_t stride;
  T* g_table;      // [L, T, F]
  bool atomic = true;

  EF_HG_INLINE int features() const { return FS > 0 ? FS : L.n_features; }
  EF_HG_INLINE const T* read_table() const { return nullptr; }
  EF_HG_INLINE T* update_table() const { return g_table; }
  EF_HG_INLINE void begin(int64_t) const {}
  EF_HG_INLINE void zero(int64_t, int) const {}
  template <int kDense, int kAtomic = -1>
  EF_HG_INLINE void at_level(int64_t i, int l, const HashGridLevel<T>& lv) const {
    T* const gt = g_table;
    const bool atom = hash_grid_flag(kAtomic, atomic);
    const bool want_w = hash_grid_flag(kW, g_enc != nullptr), want_d = hash_grid_flag(kD, gg != nullptr);
    const int F = features();
    T ge[kHashGridMaxFeatures], gd[kHashGridMaxFeatures];
    for (int f = 0; f < F; ++f) {
      ge[f] = want_w ? g_enc[i * stride + l * F + f] : T(0);
      gd[f] = want_d ? gu[i * stride + l * F + f] : T(0);
    }
    T g3[3] = {T(0), T(0), T(0)};
    if (want_d) {
      g3[0] = gg[3 * i];
      g3[1] = gg[3 * i + 1];
      g3[2] = gg[3 * i + 2];
    }
    HashGridPoint<T> q;
    hash_grid_point<T, kD == 0 ? 0 : 1>(x + 3 * i, lv.s, hash_grid_flag(kSmooth, L.smoothstep), q);
    uint32_t row[8];
    hash_grid_rows<kDense>(lv.res, lv.mask, q.base, row);
    T wxy[4], dx[4], dy[4];
    for (int j = 0; j < 4; ++j) {
      wxy[j] = q.a[0][j & 1] * q.a[1][j >> 1];
      if (want_d) {
        dx[j] = q.da[0][j & 1] * q.a[1][j >> 1];
        dy[j] = q.a[0][j & 1] * q.da[1][j >> 1];
      }
    }
    EF_HG_UNROLL
    for (int c = 0; c < 8; ++c) {
      const int j = c & 3, v = c >> 2;
      const T az = q.a[2][v];
      const T w = wxy[j] * az;
      const T d = want_d ? g3[0] * (dx[j] * az) + g3[1] * (dy[j] * az) + g3[2] * (wxy[j] * q.da[2][v]) : T(0);
      const int64_t r = lv.off + static_cast<int64_t>(row[c]) * F;
      EF_HG_UNROLL
      for (int f = 0; f < F; ++f) {
        const T val = want_w ? (want_d ? w * ge[f] + d * gd[f] : w * ge[f]) : d * gd[f];
        hash_grid_scatter(gt + r + f, val, atom);
      }
    }
  }
  EF_HD void operator()(int64_t i) const {
    for (int l = 0; l < L.n_active; ++l) at_level<-1>(i, l, hash_grid_level<T>(L, l, features()));
  }
};

// Per point, with J [N, M, 3] (M = L*F) and rows of stride `stride` whose encoding columns start
// at `col` (3 with include_x, else 0):
//   transpose (kT): out[i, k] = sum_j J[i, j, k] v[i, col + j]  (+ 2 v[i, k] when col == 3)
//   forward:        out[i, col + j] = sum_k J[i, j, k] w[i, k]   (and out[i, k] = 2 w[i, k] when col == 3;
//                   out[i, pad_col] = 0 when pad_col >= 0)
template <typename T, bool kT>
struct HashGridJacobianApply {
  const T* jac;
  int64_t m;  // L*F
  const T* in;   // kT: [N, stride]; else [N, 3]
  int64_t stride;
  int col;
  T* out;        // kT: [N, 3]; else [N, stride]
  int64_t pad_col = -1;
  // J's layout (see HashGridForwardJacobian): entry (i, j, k) at jac[i * js_i + j * js_j + k * js_k];
  // js_i = 0: point-major [N, m, 3]
  int64_t js_i = 0, js_j = 3, js_k = 1;
  EF_HD void operator()(int64_t i) const {
    if (js_i == 0) apply<3, 1>(i, jac + i * m * 3, 3, 1);  // point-major: constant strides (vectorises)
    else apply<0, 0>(i, jac + i * js_i, js_j, js_k);
  }
  // kSJ, kSK: the strides when known at compile time (0: sj, sk)
  template <int kSJ, int kSK>
  EF_HD void apply(int64_t i, const T* J, int64_t sj_rt, int64_t sk_rt) const {
    const int64_t sj = kSJ ? kSJ : sj_rt, sk = kSK ? kSK : sk_rt;
    if (kT) {
      const T* v = in + i * stride;
      T s0 = T(0), s1 = T(0), s2 = T(0);
      for (int64_t j = 0; j < m; ++j) {
        const T g = v[col + j];
        s0 += J[sj * j] * g;
        s1 += J[sj * j + sk] * g;
        s2 += J[sj * j + 2 * sk] * g;
      }
      if (col == 3) {
        s0 += T(2) * v[0];
        s1 += T(2) * v[1];
        s2 += T(2) * v[2];
      }
      out[3 * i] = s0;
      out[3 * i + 1] = s1;
      out[3 * i + 2] = s2;
    } else {
      const T w0 = in[3 * i], w1 = in[3 * i + 1], w2 = in[3 * i + 2];
      T* o = out + i * stride;
      if (col == 3) {
        o[0] = T(2) * w0;
        o[1] = T(2) * w1;
        o[2] = T(2) * w2;
      }
      for (int64_t j = 0; j < m; ++j) o[col + j] = J[sj * j] * w0 + J[sj * j + sk] * w1 + J[sj * j + 2 * sk] * w2;
      if (pad_col >= 0) o[pad_col] = T(0);
    }
  }
};

// Host side: calls fn(std::integral_constant<int, FS>) with FS = F for F in {1, 2, 4, 8}, else 0.
template <class Fn>
void hash_grid_dispatch_features(int F, Fn&& fn) {
  switch (F) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 8: fn(std::integral_constant<int, 8>{}); break;
    default: fn(std::integral_constant<int, 0>{}); break;
  }
}

// Host side: calls fn(std::integral_constant<int, b ? 1 : 0>).
template <class Fn>
void hash_grid_dispatch_flag(bool b, Fn&& fn) {
  if (b) {
    fn(std::integral_constant<int, 1>{});
  } else {
    fn(std::integral_constant<int, 0>{});
  }
}

// ---------------------------------------------------------------------------------------
// Launchers (csrc/cpu/hash_grid.cpp, csrc/cuda/hash_grid.cu), T = float or double. The layout's
// res/dense must be filled (hash_grid_finish_layout). Gradient tables (grad_table, g_table) are
// outputs: the launchers overwrite them (no need to zero them first).
// ---------------------------------------------------------------------------------------
namespace cpu {
template <typename T>
void hash_grid_forward(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* out);
template <typename T>
void hash_grid_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out, T* grad_x,
                        T* grad_table);
template <typename T>
void hash_grid_double_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out,
                               const T* gg_x, T* g_grad_out, T* g_x, T* g_table);
// The fused network's pieces (HashGridForwardJacobian, HashGridTableGrad, HashGridJacobianApply).
template <typename T>
void hash_grid_forward_jacobian(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* u, int64_t stride,
                                bool include_x, int64_t ones_col, T* jac);
template <typename T>
void hash_grid_table_grad(const T* x, int64_t n, const HashGridLayout& L, const T* g_enc, const T* gg, const T* gu,
                          int64_t stride, T* g_table);
template <typename T>
void hash_grid_jacobian_apply(const T* jac, int64_t n, int64_t m, const T* in, int64_t stride, int col, bool transpose,
                              int64_t pad_col, T* out);
}  // namespace cpu

namespace cuda {
template <typename T>
int hash_grid_forward(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* out, void* stream);
template <typename T>
int hash_grid_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out, T* grad_x,
                       T* grad_table, void* stream);
template <typename T>
int hash_grid_double_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out,
                              const T* gg_x, T* g_grad_out, T* g_x, T* g_table, void* stream);
template <typename T>
int hash_grid_forward_jacobian(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* u, int64_t stride,
                               bool include_x, int64_t ones_col, T* jac, void* stream);
template <typename T>
int hash_grid_table_grad(const T* x, int64_t n, const HashGridLayout& L, const T* g_enc, const T* gg, const T* gu,
                         int64_t stride, T* g_table, void* stream);
template <typename T>
int hash_grid_jacobian_apply(const T* jac, int64_t n, int64_t m, const T* in, int64_t stride, int col, bool transpose,
                             int64_t pad_col, T* out, void* stream);
}  // namespace cuda

}  // namespace eyefast
