// CPU launchers of hash_grid.h. Here the forward direction: the encoding (hash_grid_forward), the
// fused network's encoding with its Jacobian (hash_grid_forward_jacobian) and that Jacobian's
// products (hash_grid_jacobian_apply). The backward launchers' templates forward to one translation
// unit per launcher and dtype, hash_grid_{backward,double_backward,table_grad}_{f32,f64}.cpp; the
// tile / scatter machinery and the dispatch they all share is hash_grid_launch.h.
#include "eyefast/hash_grid.h"

#include "hash_grid_launch.h"

namespace eyefast {
namespace cpu {

template <typename T>
void hash_grid_forward(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* out) {
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    hash_grid_dispatch_flag(L.smoothstep, [&](auto sm) {
      // the fused network's encoding body with output rows of stride L*F and no Jacobian
      run_tiled(n,
                HashGridForwardJacobian<T, decltype(fs)::value, decltype(sm)::value, 0>{
                    x, table, L, out, static_cast<int64_t>(L.n_levels) * L.n_features, false, nullptr},
                L.n_levels);
    });
  });
}

template <typename T>
void hash_grid_forward_jacobian(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* u, int64_t stride,
                                bool include_x, int64_t ones_col, T* jac) {
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    hash_grid_dispatch_flag(L.smoothstep, [&](auto sm) {
      hash_grid_dispatch_flag(jac != nullptr, [&](auto nj) {
        run_tiled(n,
                  HashGridForwardJacobian<T, decltype(fs)::value, decltype(sm)::value, decltype(nj)::value>{
                      x, table, L, u, stride, include_x, jac, ones_col},
                  L.n_levels);
      });
    });
  });
}

template <typename T>
void hash_grid_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out, T* grad_x,
                        T* grad_table) {
  hash_grid_detail::backward(x, n, table, L, grad_out, grad_x, grad_table);
}

template <typename T>
void hash_grid_double_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out,
                               const T* gg_x, T* g_grad_out, T* g_x, T* g_table) {
  hash_grid_detail::double_backward(x, n, table, L, grad_out, gg_x, g_grad_out, g_x, g_table);
}

template <typename T>
void hash_grid_table_grad(const T* x, int64_t n, const HashGridLayout& L, const T* g_enc, const T* gg, const T* gu,
                          int64_t stride, T* g_table) {
  hash_grid_detail::table_grad(x, n, L, g_enc, gg, gu, stride, g_table);
}

template <typename T>
void hash_grid_jacobian_apply(const T* jac, int64_t n, int64_t m, const T* in, int64_t stride, int col, bool transpose,
                              int64_t pad_col, T* out) {
  if (transpose) {
    for_each(n, HashGridJacobianApply<T, true>{jac, m, in, stride, col, out, pad_col}, 4096);
  } else {
    for_each(n, HashGridJacobianApply<T, false>{jac, m, in, stride, col, out, pad_col}, 4096);
  }
}

#define EF_INSTANTIATE(T)                                                                                          \
  template void hash_grid_forward<T>(const T*, int64_t, const T*, const HashGridLayout&, T*);                      \
  template void hash_grid_backward<T>(const T*, int64_t, const T*, const HashGridLayout&, const T*, T*, T*);       \
  template void hash_grid_double_backward<T>(const T*, int64_t, const T*, const HashGridLayout&, const T*, const T*, \
                                             T*, T*, T*);                                                          \
  template void hash_grid_forward_jacobian<T>(const T*, int64_t, const T*, const HashGridLayout&, T*, int64_t, bool, \
                                              int64_t, T*);                                                        \
  template void hash_grid_table_grad<T>(const T*, int64_t, const HashGridLayout&, const T*, const T*, const T*,      \
                                        int64_t, T*);                                                              \
  template void hash_grid_jacobian_apply<T>(const T*, int64_t, int64_t, const T*, int64_t, int, bool, int64_t, T*);
EF_INSTANTIATE(float)
EF_INSTANTIATE(double)
#undef EF_INSTANTIATE

}  // namespace cpu
}  // namespace eyefast
