// CUDA launchers of hash_grid.h: the same kernel bodies as the CPU launchers (csrc/cpu/hash_grid*.cpp).
// One thread per (point, level), level-major (tiny-cuda-nn's shape: a warp's points read one level's
// table), wherever the levels write disjoint outputs: the forward, the forward with the Jacobian (stored
// feature-major, see csrc/torch/sdf_network.cpp), the table-gradient scatter, and the backward passes
// when no x-gradient is wanted; one thread per point where the levels sum into the point's x-gradient.
// Table gradients are zeroed (cudaMemsetAsync), then accumulate with atomicAdd.
#include "eyefast/hash_grid.h"
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"

namespace eyefast {
namespace cuda {

namespace {
// A body's per-level entry over n * L threads, k = l * n + i: begin(i) on level 0's thread (kBegin),
// at_level on the active levels, zero(i, l) on the others (kZero).
template <typename T, class Body, bool kBegin, bool kZero>
struct PointLevel {
  Body b;
  int64_t n;
  __device__ __forceinline__ void operator()(int64_t k) const {
    const int l = static_cast<int>(k / n);
    const int64_t i = k - static_cast<int64_t>(l) * n;
    if (kBegin && l == 0) b.begin(i);
    if (l < b.L.n_active) {
      b.template at_level<-1>(i, l, hash_grid_level<T>(b.L, l, b.features()));
    } else if (kZero) {
      b.zero(i, l);
    }
  }
};

template <typename T, bool kBegin, bool kZero, class Body>
cudaError_t for_each_point_level(int64_t n, int levels, const Body& b, void* stream) {
  return for_each_cuda(n * levels, PointLevel<T, Body, kBegin, kZero>{b, n}, stream);
}

// Zeroes a gradient table [L, T, F] (null: nothing to do) on the stream.
template <typename T>
cudaError_t zero_table(T* table, const HashGridLayout& L, void* stream) {
  if (!table) return cudaSuccess;
  const size_t bytes = sizeof(T) * static_cast<size_t>(L.n_levels) * L.table_size * L.n_features;
  return cudaMemsetAsync(table, 0, bytes, static_cast<cudaStream_t>(stream));
}
}  // namespace

template <typename T>
int hash_grid_forward(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* out, void* stream) {
  cudaError_t e = cudaSuccess;
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    e = for_each_point_level<T, true, true>(
        n, L.n_levels,
        HashGridForwardJacobian<T, decltype(fs)::value, -1, 0>{
            x, table, L, out, static_cast<int64_t>(L.n_levels) * L.n_features, false, nullptr},
        stream);
  });
  return static_cast<int>(e);
}

template <typename T>
int hash_grid_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out, T* grad_x,
                       T* grad_table, void* stream) {
  cudaError_t e = zero_table(grad_table, L, stream);
  if (e != cudaSuccess) return static_cast<int>(e);
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    const HashGridBackward<T, decltype(fs)::value> body{x, table, L, grad_out, grad_x, grad_table};
    // the levels sum into grad_x: one thread per point then; without it, one per (point, level)
    e = grad_x ? for_each_cuda(n, body, stream) : for_each_point_level<T, false, false>(n, L.n_levels, body, stream);
  });
  return static_cast<int>(e);
}

template <typename T>
int hash_grid_double_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out,
                              const T* gg_x, T* g_grad_out, T* g_x, T* g_table, void* stream) {
  cudaError_t e = zero_table(g_table, L, stream);
  if (e != cudaSuccess) return static_cast<int>(e);
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    const HashGridDoubleBackward<T, decltype(fs)::value> body{x, table, L, grad_out, gg_x, g_grad_out, g_x, g_table};
    e = g_x ? for_each_cuda(n, body, stream) : for_each_point_level<T, false, true>(n, L.n_levels, body, stream);
  });
  return static_cast<int>(e);
}

template <typename T>
int hash_grid_forward_jacobian(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* u, int64_t stride,
                               bool include_x, int64_t ones_col, T* jac, void* stream) {
  cudaError_t e = cudaSuccess;
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    HashGridForwardJacobian<T, decltype(fs)::value> body{x, table, L, u, stride, include_x, jac, ones_col};
    body.js_i = 1;  // feature-major J (see csrc/torch/sdf_network.cpp)
    body.js_j = 3 * n;
    body.js_k = n;
    e = for_each_point_level<T, true, true>(n, L.n_levels, body, stream);
  });
  return static_cast<int>(e);
}

template <typename T>
int hash_grid_table_grad(const T* x, int64_t n, const HashGridLayout& L, const T* g_enc, const T* gg, const T* gu,
                         int64_t stride, T* g_table, void* stream) {
  cudaError_t e = zero_table(g_table, L, stream);
  if (e != cudaSuccess || (!g_enc && !gg)) return static_cast<int>(e);
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    e = for_each_point_level<T, false, false>(
        n, L.n_levels, HashGridTableGrad<T, decltype(fs)::value>{x, L, g_enc, gg, gu, stride, g_table}, stream);
  });
  return static_cast<int>(e);
}

template <typename T>
int hash_grid_jacobian_apply(const T* jac, int64_t n, int64_t m, const T* in, int64_t stride, int col, bool transpose,
                             int64_t pad_col, T* out, void* stream) {
  // J feature-major (see csrc/torch/sdf_network.cpp): entry (i, j, k) at jac[i + j * 3n + k * n]
  const cudaError_t e =
      transpose ? for_each_cuda(n, HashGridJacobianApply<T, true>{jac, m, in, stride, col, out, pad_col, 1, 3 * n, n},
                                stream)
                : for_each_cuda(n, HashGridJacobianApply<T, false>{jac, m, in, stride, col, out, pad_col, 1, 3 * n, n},
                                stream);
  return static_cast<int>(e);
}

#define EF_INSTANTIATE(T)                                                                                           \
  template int hash_grid_forward<T>(const T*, int64_t, const T*, const HashGridLayout&, T*, void*);                 \
  template int hash_grid_backward<T>(const T*, int64_t, const T*, const HashGridLayout&, const T*, T*, T*, void*);  \
  template int hash_grid_double_backward<T>(const T*, int64_t, const T*, const HashGridLayout&, const T*, const T*, \
                                            T*, T*, T*, void*);                                             \
  template int hash_grid_forward_jacobian<T>(const T*, int64_t, const T*, const HashGridLayout&, T*, int64_t, bool, \
                                             int64_t, T*, void*);                                                         \
  template int hash_grid_table_grad<T>(const T*, int64_t, const HashGridLayout&, const T*, const T*, const T*,      \
                                       int64_t, T*, void*);                                                       \
  template int hash_grid_jacobian_apply<T>(const T*, int64_t, int64_t, const T*, int64_t, int, bool, int64_t, T*, \
                                           void*);
EF_INSTANTIATE(float)
EF_INSTANTIATE(double)
#undef EF_INSTANTIATE

}  // namespace cuda
}  // namespace eyefast
