// eyefast/volrend.h: volume rendering on packed samples (nerfacc semantics), forward and backward.
//
// Packed layout: M samples, sample j belongs to ray ray_indices[j] (int64, sorted ascending,
// 0 <= ray < n_rays). offsets[r] (r in [0, n_rays]) is the first sample index of ray r, so ray
// r owns samples [offsets[r], offsets[r + 1]). Rays with no samples are empty segments.
//
// Per ray (one thread per ray, samples in order), with dt_j = t_end_j - t_start_j:
//   from density:  sd_j = sigma_j dt_j,  T_j = exp(-sum_{k<j} sd_k),  alpha_j = 1 - exp(-sd_j),
//                  w_j = T_j alpha_j                                    (nerfacc 0.5 volrend)
//   from alpha:    T_j = prod_{k<j} (1 - alpha_k),  w_j = T_j alpha_j
// Backward passes are reverse scans over the same segment using the saved transmittance:
//   density: d/dsd_j = (g_alpha_j + g_w_j T_j) e^{-sd_j} - sum_{k>j} (g_T_k + g_w_k alpha_k) T_k
//   alpha:   d/dalpha_j = T_j (g_w_j - S_j),  S_{j-1} = c_j + (1 - alpha_j) S_j,
//            c_j = g_T_j + g_w_j alpha_j (no division by 1 - alpha, so alpha = 1 is safe).
#pragma once

#include "eyefast/common.h"
#include "eyefast/fastmath.h"

namespace eyefast {

// ef_exp (fastmath.h): the exp of the weights.

// Samples per block in the CPU form of the per-ray scans (see WeightFromDensityForward).
constexpr int kScanBlock = 16;

enum VolrendCheck : int64_t {
  kVR_RayIndexOutOfRange = 1,
  kVR_RayIndicesUnsorted = 2,
};

// Rows [0, max(m, n_rays + 1)): row r <= n_rays writes offsets[r] (a lower bound in the sorted
// ray_indices); row j < m checks ray_indices[j].
struct RayOffsets {
  const int64_t* ray_indices;  // [M]
  int64_t m;
  int64_t n_rays;
  int64_t* offsets;     // [n_rays + 1]
  CheckRecord* check;   // nullable

  EF_HD void operator()(int64_t i) const {
    if (check && i < m) {
      const int64_t r = ray_indices[i];
      if (r < 0 || r >= n_rays) report_bad_row(check, kVR_RayIndexOutOfRange, i);
      if (i > 0 && ray_indices[i - 1] > r) report_bad_row(check, kVR_RayIndicesUnsorted, i);
    }
    if (i > n_rays) return;
    int64_t lo = 0, hi = m;  // first j with ray_indices[j] >= i
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (ray_indices[mid] < i) lo = mid + 1;
      else hi = mid;
    }
    offsets[i] = lo;
  }
};

// Per ray r: weights, transmittance and alphas from density (see the file comment).
template <typename T>
struct WeightFromDensityForward {
  const int64_t* offsets;  // [n_rays + 1]
  const T* t_starts;       // [M]
  const T* t_ends;         // [M]
  const T* sigmas;         // [M]
  T* weights;              // [M]
  T* trans;                // [M]
  T* alphas;               // [M]

  // Sample j, given s (the optical depth before it) and its own depth sd.
  EF_HD void write(int64_t j, T s, T sd) const {
    const T tr = ef_exp(-s);
    const T a = T(1) - ef_exp(-sd);
    trans[j] = tr;
    alphas[j] = a;
    weights[j] = tr * a;
  }

  EF_HD void operator()(int64_t r) const {
    const int64_t b = offsets[r], e = offsets[r + 1];
    T s = T(0);
#if defined(__CUDA_ARCH__)
    for (int64_t j = b; j < e; ++j) {
      const T sd = sigmas[j] * (t_ends[j] - t_starts[j]);
      write(j, s, sd);
      s += sd;
    }
#else
    // The same sums in the same order, in blocks: the depths and the exps vectorise, only the
    // prefix sum stays a scalar chain of adds.
    for (int64_t j0 = b; j0 < e; j0 += kScanBlock) {
      const int64_t nb = e - j0 < kScanBlock ? e - j0 : kScanBlock;
      T sd[kScanBlock], sx[kScanBlock];
      EF_IVDEP
      for (int64_t q = 0; q < nb; ++q) sd[q] = sigmas[j0 + q] * (t_ends[j0 + q] - t_starts[j0 + q]);
      for (int64_t q = 0; q < nb; ++q) {
        sx[q] = s;
        s += sd[q];
      }
      EF_IVDEP
      for (int64_t q = 0; q < nb; ++q) write(j0 + q, sx[q], sd[q]);
    }
#endif
  }
};

template <typename T>
struct WeightFromDensityBackward {
  const int64_t* offsets;  // [n_rays + 1]
  const T* t_starts;       // [M]
  const T* t_ends;         // [M]
  const T* sigmas;         // [M]
  const T* trans;          // [M] saved forward output
  const T* g_w;            // [M] or null
  const T* g_t;            // [M] or null
  const T* g_a;            // [M] or null
  T* g_t_starts;           // [M] or null (with g_t_ends): not wanted
  T* g_t_ends;             // [M] or null
  T* g_sigmas;             // [M]

  EF_HD void operator()(int64_t r) const {
    T suffix = T(0);  // sum_{k>j} (g_T_k + g_w_k alpha_k) T_k
    for (int64_t j = offsets[r + 1] - 1, b = offsets[r]; j >= b; --j) {
      const T dt = t_ends[j] - t_starts[j];
      const T sig = sigmas[j];
      const T e = ef_exp(-sig * dt);
      const T a = T(1) - e;
      const T tr = trans[j];
      const T gw = g_w ? g_w[j] : T(0);
      const T gsd = ((g_a ? g_a[j] : T(0)) + gw * tr) * e - suffix;
      suffix += ((g_t ? g_t[j] : T(0)) + gw * a) * tr;
      g_sigmas[j] = gsd * dt;
      if (g_t_starts) {
        g_t_starts[j] = -gsd * sig;
        g_t_ends[j] = gsd * sig;
      }
    }
  }
};

template <typename T>
struct WeightFromAlphaForward {
  const int64_t* offsets;  // [n_rays + 1]
  const T* alphas;         // [M]
  T* weights;              // [M]
  T* trans;                // [M]

  EF_HD void operator()(int64_t r) const {
    T tr = T(1);
    for (int64_t j = offsets[r], e = offsets[r + 1]; j < e; ++j) {
      const T a = alphas[j];
      trans[j] = tr;
      weights[j] = tr * a;
      tr *= T(1) - a;
    }
  }
};

template <typename T>
struct WeightFromAlphaBackward {
  const int64_t* offsets;  // [n_rays + 1]
  const T* alphas;         // [M]
  const T* trans;          // [M] saved forward output
  const T* g_w;            // [M] or null
  const T* g_t;            // [M] or null
  T* g_alphas;             // [M]

  EF_HD void operator()(int64_t r) const {
    T s = T(0);  // S_j = sum_{k>j} c_k prod_{j<l<k} (1 - alpha_l)
    for (int64_t j = offsets[r + 1] - 1, b = offsets[r]; j >= b; --j) {
      const T a = alphas[j];
      const T gw = g_w ? g_w[j] : T(0);
      g_alphas[j] = trans[j] * (gw - s);
      s = (g_t ? g_t[j] : T(0)) + gw * a + (T(1) - a) * s;
    }
  }
};

// Per-object variant: sigmas [M, K] (K objects), see the file comment.
template <typename T>
struct AccumulateForward {
  const int64_t* offsets;  // [n_rays + 1]
  const T* weights;        // [M]
  const T* values;         // [M, C] or null
  int64_t c;
  T* out;                  // [n_rays, C]

  EF_HD void operator()(int64_t i) const {
    const int64_t r = i / c, ch = i % c;
    T acc = T(0);
    for (int64_t j = offsets[r], e = offsets[r + 1]; j < e; ++j) acc += weights[j] * (values ? values[j * c + ch] : T(1));
    out[i] = acc;
  }
};

// Per sample j: g_w_j = sum_c g_out[r, c] v_jc, g_v_jc = g_out[r, c] w_j.
template <typename T>
struct AccumulateBackward {
  const int64_t* ray_indices;  // [M]
  int64_t n_rays;
  const T* weights;            // [M]
  const T* values;             // [M, C] or null
  int64_t c;
  const T* g_out;              // [n_rays, C]
  T* g_weights;                // [M]
  T* g_values;                 // [M, C] or null

  EF_HD void operator()(int64_t j) const {
    const int64_t r = ray_indices[j];
    if (r < 0 || r >= n_rays) {  // a sample of no ray (the forward skips it too): no gradient
      g_weights[j] = T(0);
      if (values)
        for (int64_t ch = 0; ch < c; ++ch) g_values[j * c + ch] = T(0);
      return;
    }
    const T* g = g_out + r * c;
    if (!values) {
      g_weights[j] = g[0];
      return;
    }
    T gw = T(0);
    const T w = weights[j];
    for (int64_t ch = 0; ch < c; ++ch) {
      gw += g[ch] * values[j * c + ch];
      g_values[j * c + ch] = g[ch] * w;
    }
    g_weights[j] = gw;
  }
};

// ---------------------------------------------------------------------------------------
// Launchers (T = float, double). CPU in csrc/cpu/volrend.cpp, CUDA in csrc/cuda/volrend.cu.
// Each takes the functor already filled in; the CUDA versions also take the stream (void*)
// and return a cudaError_t as int.
// ---------------------------------------------------------------------------------------
namespace cpu {
void ray_offsets(const RayOffsets& f);
template <typename F>
void volrend_launch(int64_t n, const F& f);
}  // namespace cpu

namespace cuda {
int ray_offsets(const RayOffsets& f, void* stream);
template <typename F>
int volrend_launch(int64_t n, const F& f, void* stream);
}  // namespace cuda

}  // namespace eyefast
