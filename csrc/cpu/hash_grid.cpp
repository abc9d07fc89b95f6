// CPU launchers of hash_grid.h (table gradients accumulate with relaxed CAS atomics).
#include "eyefast/hash_grid.h"

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

// Each point costs 8 * levels gathers: a smaller grain than the default balances better.
constexpr int64_t kHashGridGrain = 512;

template <typename T>
void hash_grid_forward(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* out) {
  for_each(n, HashGridForward<T>{x, table, L, out}, kHashGridGrain);
}

template <typename T>
void hash_grid_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out, T* grad_x,
                        T* grad_table) {
  for_each(n, HashGridBackward<T>{x, table, L, grad_out, grad_x, grad_table}, kHashGridGrain);
}

template <typename T>
void hash_grid_double_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out,
                               const T* gg_x, T* g_grad_out, T* g_x, T* g_table) {
  for_each(n, HashGridDoubleBackward<T>{x, table, L, grad_out, gg_x, g_grad_out, g_x, g_table}, kHashGridGrain);
}

#define EF_INSTANTIATE(T)                                                                                          \
  template void hash_grid_forward<T>(const T*, int64_t, const T*, const HashGridLayout&, T*);                      \
  template void hash_grid_backward<T>(const T*, int64_t, const T*, const HashGridLayout&, const T*, T*, T*);       \
  template void hash_grid_double_backward<T>(const T*, int64_t, const T*, const HashGridLayout&, const T*, const T*, \
                                             T*, T*, T*);
EF_INSTANTIATE(float)
EF_INSTANTIATE(double)
#undef EF_INSTANTIATE

}  // namespace cpu
}  // namespace eyefast
