// The checked hash-grid layout of the torch bindings (csrc/torch/hash_grid.cpp), shared with the
// fused network (csrc/torch/sdf_network.cpp).
#pragma once

#include <ATen/ATen.h>

#include "eyefast/hash_grid.h"

namespace eyefast {
namespace torch_ext {

// Checks x [N, 3] (float32 / float64), table [L, T, F] (same dtype and device), scales (one per
// level), n_active; errors name the op and the argument.
HashGridLayout hash_grid_make_layout(const char* op, const at::Tensor& x, const at::Tensor& table,
                                     at::ArrayRef<double> scales, int64_t n_active, bool smoothstep);

}  // namespace torch_ext
}  // namespace eyefast
