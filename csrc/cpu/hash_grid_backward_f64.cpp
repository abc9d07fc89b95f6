// hash_grid_backward<double>: the encoding's x- and table gradients.
// One launcher's instantiations for one dtype, a translation unit of their own so that a parallel
// build spreads them over its cores (see hash_grid_launch.h; hash_grid.cpp's template forwards here).
#include "hash_grid_launch.h"

namespace eyefast {
namespace cpu {
namespace hash_grid_detail {

void backward(const double* x, int64_t n, const double* table, const HashGridLayout& L, const double* grad_out,
              double* grad_x, double* grad_table) {
  launch_backward(x, n, table, L, grad_out, grad_x, grad_table);
}

}  // namespace hash_grid_detail
}  // namespace cpu
}  // namespace eyefast
