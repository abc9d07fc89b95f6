// hash_grid_double_backward<float>: the backward of the encoding's x-gradient.
// One launcher's instantiations for one dtype, a translation unit of their own so that a parallel
// build spreads them over its cores (see hash_grid_launch.h; hash_grid.cpp's template forwards here).
#include "hash_grid_launch.h"

namespace eyefast {
namespace cpu {
namespace hash_grid_detail {

void double_backward(const float* x, int64_t n, const float* table, const HashGridLayout& L,
                     const float* grad_out, const float* gg_x, float* g_grad_out, float* g_x, float* g_table) {
  launch_double_backward(x, n, table, L, grad_out, gg_x, g_grad_out, g_x, g_table);
}

}  // namespace hash_grid_detail
}  // namespace cpu
}  // namespace eyefast
