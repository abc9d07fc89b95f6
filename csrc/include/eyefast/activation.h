// eyefast/activation.h: Softplus (torch.nn.Softplus semantics) with its first and second
// derivatives as single elementwise passes.
//
// Contract, elementwise, t = beta z:
//   y   = z                                   if t > threshold
//         (max(t, 0) + log1p(exp(-|t|))) / beta  otherwise (= log1p(exp(t)) / beta)
//   dy/dz = s' = 1 if t > threshold, else s = sigmoid(t)
//   backward:        grad_z = g s'
//   double backward: (given gg = dL/dgrad_z)
//     d/dg = gg s'
//     d/dz = gg g beta s (1 - s)  if t < threshold, else 0      (torch's softplus_double_backward)
// A training step's SDF MLP runs Softplus(beta = 100) forward twice (sample pruning, then with the
// graph), backward once with create_graph (the normals) and then the second-order pass of the
// eikonal and normal losses. torch spends one pass per forward and backward but seven on the
// double backward (sigmoid, sigmoid_backward, comparisons, products); here each is one pass.
// float uses fastmath.h's exp and log1p (relative error ~1e-7); double uses libm.
#pragma once

#include "eyefast/common.h"
#include "eyefast/fastmath.h"

namespace eyefast {

template <typename T>
struct SoftplusParams {
  T beta;       // > 0
  T threshold;  // t above it: the identity
};

// s = sigmoid(t) and 1 - s, both without cancellation; e = exp(-|t|).
template <typename T>
EF_HD void ef_sigmoid_pair(T t, T e, T& s, T& sc) {
  const T r = T(1) / (T(1) + e);
  const T er = e * r;
  s = t >= T(0) ? r : er;
  sc = t >= T(0) ? er : r;
}

// softplus(zi) into y and, with kDeriv, softplus'(zi) into d: the per-element math every Softplus body
// below shares (the row bodies on the CPU, their element-wise forms on CUDA).
template <typename T, bool kDeriv>
EF_HD void softplus_value(T zi, const SoftplusParams<T>& p, T& y, T& d) {
  const T t = zi * p.beta;
  const T at = t >= T(0) ? t : -t;
  const T e = ef_exp_nonpos(-at);
  const T v = ((t > T(0) ? t : T(0)) + ef_log1p_unit(e)) / p.beta;
  // NaN: t > threshold is false, v is NaN (|NaN| selects NaN through both branches).
  y = t > p.threshold ? zi : v;
  if (kDeriv) {
    T s, sc;
    ef_sigmoid_pair(t, e, s, sc);
    d = t > p.threshold ? T(1) : s;
  }
}

template <typename T>
struct SoftplusForward {
  const T* z;
  SoftplusParams<T> p;
  T* y;
  EF_HD void operator()(int64_t i) const {
    T d;
    softplus_value<T, false>(z[i], p, y[i], d);
  }
};

// Row-wise, with a bias: z = h[r, c] + bias[c] over rows r of H columns (a linear layer's product
// h = a W^T, its bias added here rather than by a separate pass), y = softplus(z), and with kDeriv
// d = softplus'(z); with kWriteZ, z is stored back into h (the pre-activation a backward needs); with
// kGh (needs kDeriv), also gh = d * wrow[c] (a gradient pass's first step: d out / d z for the output
// row wrow of the next layer).
template <typename T, bool kDeriv, bool kWriteZ, bool kGh = false>
struct SoftplusBiasRows {
  T* h;            // [rows, H]
  const T* bias;   // [H]
  int64_t H;
  SoftplusParams<T> p;
  T* y;            // [rows, H]
  T* d;            // [rows, H] (kDeriv)
  const T* wrow;   // [H] (kGh)
  T* gh;           // [rows, H] (kGh)
  EF_HD void operator()(int64_t r) const {
    // (restrict: the outputs do not overlap, so the column loop vectorises without run-time alias
    // checks, which GCC gives up on beyond a few pointers)
    T* __restrict__ hr = h + r * H;
    T* __restrict__ yr = y + r * H;
    T* __restrict__ dr = kDeriv ? d + r * H : nullptr;
    T* __restrict__ ghr = kGh ? gh + r * H : nullptr;
    const T* __restrict__ br = bias;
    const T* __restrict__ wr = wrow;
    for (int64_t c = 0; c < H; ++c) {
      const T zi = hr[c] + br[c];
      T yv, dv;
      softplus_value<T, kDeriv>(zi, p, yv, dv);
      if (kWriteZ) hr[c] = zi;
      yr[c] = yv;
      if (kDeriv) dr[c] = dv;
    }
    if (kGh) {  // a second loop over the row (in L1): in the first, GCC would not vectorise it
      for (int64_t c = 0; c < H; ++c) ghr[c] = dr[c] * wr[c];
    }
  }
  // Element k = r * H + c alone (CUDA: one thread per element, consecutive threads on consecutive
  // columns: coalesced); the same arithmetic as the row loop.
  EF_HD void element(int64_t k) const {
    const int64_t c = k % H;
    const T zi = h[k] + bias[c];
    T yv, dv;
    softplus_value<T, kDeriv>(zi, p, yv, dv);
    if (kWriteZ) h[k] = zi;
    y[k] = yv;
    if (kDeriv) d[k] = dv;
    if (kGh) gh[k] = dv * wrow[c];
  }
};

// SoftplusDoubleBackward with g the same row grow [H] for every row (g = d out / d y for the output
// row of the next layer): g_g = gg softplus'(z), g_z = gg grow[c] softplus''(z), rows of H columns.
template <typename T>
struct SoftplusDoubleBackwardRows {
  const T* gg;    // [rows, H]
  const T* grow;  // [H]
  const T* z;     // [rows, H]
  int64_t H;
  SoftplusParams<T> p;
  T* g_g;         // [rows, H]
  T* g_z;         // [rows, H]
  EF_HD void operator()(int64_t r) const {
    const int64_t o = r * H;
    const T* __restrict__ zr = z + o;
    const T* __restrict__ ggr = gg + o;
    const T* __restrict__ gr = grow;
    T* __restrict__ ogg = g_g + o;
    T* __restrict__ ogz = g_z + o;
    for (int64_t c = 0; c < H; ++c) value(zr[c], ggr[c], gr[c], ogg[c], ogz[c]);
  }
  EF_HD void value(T zi, T ggi, T gri, T& out_gg, T& out_gz) const {
    const T t = zi * p.beta;
    const T at = t >= T(0) ? t : -t;
    T s, sc;
    ef_sigmoid_pair(t, ef_exp_nonpos(-at), s, sc);
    out_gg = ggi * (t > p.threshold ? T(1) : s);
    out_gz = (((ggi * gri) * (s * sc)) * p.beta) * T(t < p.threshold ? 1 : 0);
  }
  // Element k = r * H + c alone (CUDA: one thread per element).
  EF_HD void element(int64_t k) const { value(z[k], gg[k], grow[k % H], g_g[k], g_z[k]); }
};

template <typename T>
struct SoftplusBackward {
  const T* g;
  const T* z;
  SoftplusParams<T> p;
  T* out;
  EF_HD void operator()(int64_t i) const {
    const T t = z[i] * p.beta;
    const T at = t >= T(0) ? t : -t;
    T s, sc;
    ef_sigmoid_pair(t, ef_exp_nonpos(-at), s, sc);
    out[i] = g[i] * (t > p.threshold ? T(1) : s);
  }
};

// kG / kZ: whether d/dg / d/dz is wanted (a null output otherwise).
template <typename T, bool kG, bool kZ>
struct SoftplusDoubleBackward {
  const T* gg;
  const T* g;
  const T* z;
  SoftplusParams<T> p;
  T* g_g;  // [n] or null
  T* g_z;  // [n] or null
  EF_HD void operator()(int64_t i) const {
    const T t = z[i] * p.beta;
    const T at = t >= T(0) ? t : -t;
    T s, sc;
    ef_sigmoid_pair(t, ef_exp_nonpos(-at), s, sc);
    const T ggi = gg[i];
    if (kG) g_g[i] = ggi * (t > p.threshold ? T(1) : s);
    if (kZ) {
      // times the mask (not a select), as torch: NaN / inf in gg, g or z still give NaN
      g_z[i] = (((ggi * g[i]) * (s * sc)) * p.beta) * T(t < p.threshold ? 1 : 0);
    }
  }
};

// ---------------------------------------------------------------------------------------
// Launchers (csrc/cpu/activation.cpp, csrc/cuda/activation.cu), T = float or double, n elements.
// double_backward: g_g and/or g_z may be null (not computed).
// ---------------------------------------------------------------------------------------
namespace cpu {
template <typename T>
void softplus_forward(const T* z, int64_t n, SoftplusParams<T> p, T* y);
// SoftplusBiasRows over `rows` rows; d null: no derivative; write_z: h += bias in place; gh non-null
// (needs d): gh = d * wrow.
template <typename T>
void softplus_bias_rows(T* h, const T* bias, int64_t rows, int64_t H, SoftplusParams<T> p, T* y, T* d, bool write_z,
                        const T* wrow, T* gh);
template <typename T>
void softplus_double_backward_rows(const T* gg, const T* grow, const T* z, int64_t rows, int64_t H,
                                   SoftplusParams<T> p, T* g_g, T* g_z);
template <typename T>
void softplus_backward(const T* g, const T* z, int64_t n, SoftplusParams<T> p, T* out);
template <typename T>
void softplus_double_backward(const T* gg, const T* g, const T* z, int64_t n, SoftplusParams<T> p, T* g_g, T* g_z);
}  // namespace cpu

namespace cuda {
template <typename T>
int softplus_forward(const T* z, int64_t n, SoftplusParams<T> p, T* y, void* stream);
template <typename T>
int softplus_bias_rows(T* h, const T* bias, int64_t rows, int64_t H, SoftplusParams<T> p, T* y, T* d, bool write_z,
                       const T* wrow, T* gh, void* stream);
template <typename T>
int softplus_double_backward_rows(const T* gg, const T* grow, const T* z, int64_t rows, int64_t H,
                                  SoftplusParams<T> p, T* g_g, T* g_z, void* stream);
template <typename T>
int softplus_backward(const T* g, const T* z, int64_t n, SoftplusParams<T> p, T* out, void* stream);
template <typename T>
int softplus_double_backward(const T* gg, const T* g, const T* z, int64_t n, SoftplusParams<T> p, T* g_g, T* g_z,
                             void* stream);
}  // namespace cuda

}  // namespace eyefast
