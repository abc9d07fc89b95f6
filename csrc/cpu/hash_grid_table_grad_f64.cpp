// hash_grid_table_grad<double>: the fused network's table gradient.
// One launcher's instantiations for one dtype, a translation unit of their own so that a parallel
// build spreads them over its cores (see hash_grid_launch.h; hash_grid.cpp's template forwards here).
#include "hash_grid_launch.h"

namespace eyefast {
namespace cpu {
namespace hash_grid_detail {

void table_grad(const double* x, int64_t n, const HashGridLayout& L, const double* g_enc, const double* gg,
                const double* gu, int64_t stride, double* g_table) {
  launch_table_grad(x, n, L, g_enc, gg, gu, stride, g_table);
}

}  // namespace hash_grid_detail
}  // namespace cpu
}  // namespace eyefast
