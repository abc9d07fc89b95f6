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

// One level's cell around a point: lower corner and per-axis weights of the upper corner
// with their first and second derivatives w.r.t. x (0 on clamped axes).
template <typename T>
struct HashGridCell {
  uint32_t base[3];
  T w1[3], dw1[3], ddw1[3];
};

template <typename T>
EF_HD void hash_grid_load_point(const T* p, T xs[3], bool inside[3]) {
  for (int k = 0; k < 3; ++k) {
    T v = p[k];
    inside[k] = v >= T(0) && v <= T(1);
    xs[k] = v >= T(0) ? (v <= T(1) ? v : T(1)) : T(0);  // NaN -> 0
  }
}

template <typename T>
EF_HD void hash_grid_cell(const HashGridLayout& L, int l, const T xs[3], const bool inside[3], HashGridCell<T>& c) {
  const T s = static_cast<T>(L.scale[l]);
  for (int k = 0; k < 3; ++k) {
    const T pos = ef_mul_add_rn(xs[k], s, T(0.5));
    const T fl = ef_floor(pos);
    const T t = pos - fl;
    c.base[k] = static_cast<uint32_t>(fl);
    T w, d, dd;
    if (L.smoothstep) {
      w = t * t * (T(3) - T(2) * t);
      d = T(6) * t * (T(1) - t);
      dd = T(6) - T(12) * t;
    } else {
      w = t;
      d = T(1);
      dd = T(0);
    }
    c.w1[k] = w;
    c.dw1[k] = inside[k] ? d * s : T(0);
    c.ddw1[k] = inside[k] ? dd * s * s : T(0);
  }
}

// Row of a corner; `res` = R_l for a dense level, 0 for a hashed one; mask = T - 1.
EF_HD uint32_t hash_grid_row_v(uint32_t res, uint32_t mask, const uint32_t base[3], int corner) {
  const uint32_t cx = base[0] + (corner & 1), cy = base[1] + ((corner >> 1) & 1), cz = base[2] + ((corner >> 2) & 1);
  if (res) return cx + res * (cy + res * cz);
  return (cx ^ (cy * 2654435761u) ^ (cz * 805459861u)) & mask;
}
EF_HD uint32_t hash_grid_row(const HashGridLayout& L, int l, const uint32_t base[3], int corner) {
  return hash_grid_row_v(L.dense[l] ? L.res[l] : 0u, L.table_size - 1u, base, corner);
}

// Host only: prefetches the 8 table rows point i touches at level l (and the same rows of a
// gradient table when non-null). The CPU launcher calls it a few points ahead to hide the
// latency of the random gathers, which dominate once a level's table outgrows the caches.
template <typename T>
EF_HD void hash_grid_prefetch(const HashGridLayout& L, const T* x, int64_t i, int l, const T* table, const T* grad) {
#if !defined(__CUDA_ARCH__)
  T xs[3];
  bool in[3];
  hash_grid_load_point(x + 3 * i, xs, in);
  const T s = static_cast<T>(L.scale[l]);
  uint32_t base[3];
  for (int k = 0; k < 3; ++k) base[k] = static_cast<uint32_t>(ef_floor(ef_mul_add_rn(xs[k], s, T(0.5))));
  const int64_t off = static_cast<int64_t>(l) * L.table_size * L.n_features;
  for (int corner = 0; corner < 8; ++corner) {
    const int64_t r = off + static_cast<int64_t>(hash_grid_row(L, l, base, corner)) * L.n_features;
    if (table) __builtin_prefetch(table + r, 0, 1);
    if (grad) __builtin_prefetch(grad + r, 1, 1);
  }
#endif
}

// Gradient-table scatter: atomic, or a plain add into a thread-private table (CPU launcher).
template <typename T>
EF_HD void hash_grid_scatter(T* p, T v, bool atomic) {
  if (atomic) {
    if (v != T(0)) atomic_add(p, v);
  } else {
    *p += v;
  }
}

// Per-axis factor of a corner: value, first and second derivative.
template <typename T>
EF_HD void hash_grid_corner_axes(const HashGridCell<T>& c, int corner, T a[3], T da[3], T dda[3]) {
  for (int k = 0; k < 3; ++k) {
    const bool up = (corner >> k) & 1;
    a[k] = up ? c.w1[k] : T(1) - c.w1[k];
    da[k] = up ? c.dw1[k] : -c.dw1[k];
    dda[k] = up ? c.ddw1[k] : -c.ddw1[k];
  }
}

// FS > 0: the feature count as a compile-time constant (must equal L.n_features); 0: runtime.
template <typename T, int FS = 0>
struct HashGridForward {
  const T* x;      // [N, 3]
  const T* table;  // [L, T, F]
  HashGridLayout L;
  T* out;          // [N, L*F]

  // One point at one level (the CPU launcher tiles points x levels so a level's table stays hot).
  EF_HD void begin(int64_t) const {}
  EF_HD void prefetch(int64_t i, int l) const {
    if (l < L.n_active) hash_grid_prefetch(L, x, i, l, table, static_cast<const T*>(nullptr));
  }
  EF_HD void at(int64_t i, int l) const {
    const int F = FS > 0 ? FS : L.n_features;
    T acc[kHashGridMaxFeatures];
    for (int f = 0; f < F; ++f) acc[f] = T(0);
    if (l < L.n_active) {
      T xs[3];
      bool in[3];
      hash_grid_load_point(x + 3 * i, xs, in);
      HashGridCell<T> c;
      hash_grid_cell(L, l, xs, in, c);
      const T* tl = table + static_cast<int64_t>(l) * L.table_size * F;
      for (int corner = 0; corner < 8; ++corner) {
        T a[3], da[3], dda[3];
        hash_grid_corner_axes(c, corner, a, da, dda);
        const T w = a[0] * a[1] * a[2];
        const T* row = tl + static_cast<int64_t>(hash_grid_row(L, l, c.base, corner)) * F;
        for (int f = 0; f < F; ++f) acc[f] += w * row[f];
      }
    }
    T* o = out + i * static_cast<int64_t>(L.n_levels) * F + l * F;
    for (int f = 0; f < F; ++f) o[f] = acc[f];
  }
  EF_HD void operator()(int64_t i) const {
    for (int l = 0; l < L.n_levels; ++l) at(i, l);
  }
};

// Backward: grad_table[l, row, f] += w * g[l, f] (atomics), grad_x[i] = sum dw/dx <row, g>.
// FS > 0: the feature count as a compile-time constant (must equal L.n_features); 0: runtime.
template <typename T, int FS = 0>
struct HashGridBackward {
  const T* x;
  const T* table;
  HashGridLayout L;
  const T* grad_out;  // [N, L*F]
  T* grad_x;          // [N, 3] or null
  T* grad_table;      // [L, T, F] (zeroed by the caller) or null
  bool atomic = true;  // false: grad_table is private to the calling thread

  EF_HD void begin(int64_t i) const {
    if (grad_x) grad_x[3 * i] = grad_x[3 * i + 1] = grad_x[3 * i + 2] = T(0);
  }
  EF_HD void prefetch(int64_t i, int l) const {
    if (l < L.n_active) hash_grid_prefetch(L, x, i, l, grad_x ? table : static_cast<const T*>(nullptr), grad_table);
  }
  EF_HD void at(int64_t i, int l) const {
    if (l >= L.n_active) return;
    // Locals, not members: the stores into the gradient table could otherwise alias them and
    // force reloads on every corner.
    T* const gt = grad_table;
    T* const gxp = grad_x;
    const T* const tb = table;
    const bool atom = atomic;
    const uint32_t res = L.dense[l] ? L.res[l] : 0u, mask = L.table_size - 1u;
    T xs[3];
    bool in[3];
    hash_grid_load_point(x + 3 * i, xs, in);
    const int F = FS > 0 ? FS : L.n_features;
    const T* gl = grad_out + i * static_cast<int64_t>(L.n_levels) * F + l * F;
    T g[kHashGridMaxFeatures];
    for (int f = 0; f < F; ++f) g[f] = gl[f];
    HashGridCell<T> c;
    hash_grid_cell(L, l, xs, in, c);
    const int64_t off = static_cast<int64_t>(l) * L.table_size * F;
    T gx[3] = {T(0), T(0), T(0)};
    for (int corner = 0; corner < 8; ++corner) {
      T a[3], da[3], dda[3];
      hash_grid_corner_axes(c, corner, a, da, dda);
      const int64_t r = off + static_cast<int64_t>(hash_grid_row_v(res, mask, c.base, corner)) * F;
      if (gt) {
        const T w = a[0] * a[1] * a[2];
        for (int f = 0; f < F; ++f) hash_grid_scatter(gt + r + f, w * g[f], atom);
      }
      if (gxp) {
        T dot = T(0);
        for (int f = 0; f < F; ++f) dot += tb[r + f] * g[f];
        gx[0] += da[0] * a[1] * a[2] * dot;
        gx[1] += a[0] * da[1] * a[2] * dot;
        gx[2] += a[0] * a[1] * da[2] * dot;
      }
    }
    if (gxp) {
      gxp[3 * i + 0] += gx[0];
      gxp[3 * i + 1] += gx[1];
      gxp[3 * i + 2] += gx[2];
    }
  }
  EF_HD void operator()(int64_t i) const {
    begin(i);
    for (int l = 0; l < L.n_active; ++l) at(i, l);
  }
};

// Backward of the x-gradient (grad_x = sum_l,c dw_c/dx <table[c], g_l>) given gg = dLoss/dgrad_x:
//   g_grad_out[l, f] = sum_c (gg . dw_c/dx) table[c, f]
//   g_table[c, f]   += (gg . dw_c/dx) g_l[f]                         (atomics)
//   g_x             = sum_c (H_c gg) <table[c], g_l>,  H_c = d2 w_c / dx2
// FS > 0: the feature count as a compile-time constant (must equal L.n_features); 0: runtime.
template <typename T, int FS = 0>
struct HashGridDoubleBackward {
  const T* x;
  const T* table;
  HashGridLayout L;
  const T* grad_out;  // [N, L*F]
  const T* gg_x;      // [N, 3]
  T* g_grad_out;      // [N, L*F]
  T* g_x;             // [N, 3] or null
  T* g_table;         // [L, T, F] (zeroed by the caller) or null
  bool atomic = true;  // false: g_table is private to the calling thread

  EF_HD void begin(int64_t i) const {
    if (g_x) g_x[3 * i] = g_x[3 * i + 1] = g_x[3 * i + 2] = T(0);
  }
  EF_HD void prefetch(int64_t i, int l) const {
    if (l < L.n_active) hash_grid_prefetch(L, x, i, l, table, g_table);
  }
  EF_HD void at(int64_t i, int l) const {
    const int F = FS > 0 ? FS : L.n_features;
    const int64_t rowoff = i * static_cast<int64_t>(L.n_levels) * F + l * F;
    T acc[kHashGridMaxFeatures];
    for (int f = 0; f < F; ++f) acc[f] = T(0);
    if (l < L.n_active) {
      T xs[3];
      bool in[3];
      hash_grid_load_point(x + 3 * i, xs, in);
      const T gg[3] = {gg_x[3 * i], gg_x[3 * i + 1], gg_x[3 * i + 2]};
      T* const gt = g_table;  // locals: table stores could alias members
      const T* const tb = table;
      const bool atom = atomic;
      const uint32_t res = L.dense[l] ? L.res[l] : 0u, mask = L.table_size - 1u;
      T gl[kHashGridMaxFeatures];
      for (int f = 0; f < F; ++f) gl[f] = grad_out[rowoff + f];
      T gx[3] = {T(0), T(0), T(0)};
      HashGridCell<T> c;
      hash_grid_cell(L, l, xs, in, c);
      const int64_t off = static_cast<int64_t>(l) * L.table_size * F;
      for (int corner = 0; corner < 8; ++corner) {
        T a[3], da[3], dda[3];
        hash_grid_corner_axes(c, corner, a, da, dda);
        const int64_t r = off + static_cast<int64_t>(hash_grid_row_v(res, mask, c.base, corner)) * F;
        const T dw0 = da[0] * a[1] * a[2], dw1 = a[0] * da[1] * a[2], dw2 = a[0] * a[1] * da[2];
        const T v = gg[0] * dw0 + gg[1] * dw1 + gg[2] * dw2;
        T dot = T(0);
        for (int f = 0; f < F; ++f) {
          acc[f] += v * tb[r + f];
          dot += tb[r + f] * gl[f];
          if (gt) hash_grid_scatter(gt + r + f, v * gl[f], atom);
        }
        if (g_x) {
          const T h00 = dda[0] * a[1] * a[2], h11 = a[0] * dda[1] * a[2], h22 = a[0] * a[1] * dda[2];
          const T h01 = da[0] * da[1] * a[2], h02 = da[0] * a[1] * da[2], h12 = a[0] * da[1] * da[2];
          gx[0] += dot * (gg[0] * h00 + gg[1] * h01 + gg[2] * h02);
          gx[1] += dot * (gg[0] * h01 + gg[1] * h11 + gg[2] * h12);
          gx[2] += dot * (gg[0] * h02 + gg[1] * h12 + gg[2] * h22);
        }
      }
      if (g_x) {
        g_x[3 * i + 0] += gx[0];
        g_x[3 * i + 1] += gx[1];
        g_x[3 * i + 2] += gx[2];
      }
    }
    for (int f = 0; f < F; ++f) g_grad_out[rowoff + f] = acc[f];
  }
  EF_HD void operator()(int64_t i) const {
    begin(i);
    for (int l = 0; l < L.n_levels; ++l) at(i, l);
  }
};

// CPU tiling: a block of `tile` points is processed level by level (begin() on every point
// first), so one level's table (not all L of them) competes for the cache while the block walks
// it; large blocks (n / threads) reuse each cached table line many times.
template <class Body>
struct HashGridTiled {
  Body body;
  int64_t n;  // points [start, n)
  int32_t n_levels;
  int64_t start;
  int64_t tile;
  static constexpr bool kPrefetch = false;
  static constexpr int64_t kAhead = 12;
  EF_HD void operator()(int64_t b) const {
    const int64_t lo = start + b * tile, hi = lo + tile < n ? lo + tile : n;
    for (int64_t i = lo; i < hi; ++i) body.begin(i);
    for (int l = 0; l < n_levels; ++l) {
      if (kPrefetch) {
        for (int64_t i = lo; i < hi && i < lo + kAhead; ++i) body.prefetch(i, l);
        for (int64_t i = lo; i < hi; ++i) {
          if (i + kAhead < hi) body.prefetch(i + kAhead, l);
          body.at(i, l);
        }
      } else {
        for (int64_t i = lo; i < hi; ++i) body.at(i, l);
      }
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

// ---------------------------------------------------------------------------------------
// Launchers (csrc/cpu/hash_grid.cpp, csrc/cuda/hash_grid.cu), T = float or double. The layout's
// res/dense must be filled (hash_grid_finish_layout). Gradient tables are zeroed by the caller.
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
}  // namespace cuda

}  // namespace eyefast
