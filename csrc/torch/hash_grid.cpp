// torch.ops.eyefast.hash_grid_{encode,backward,double_backward}: CPU and CUDA implementations.
#include "eyefast/hash_grid.h"

#include <cstring>

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

HashGridLayout make_layout(const char* op, const at::Tensor& x, const at::Tensor& table, at::ArrayRef<double> scales,
                           int64_t n_active, bool smoothstep) {
  check_float_dtype(op, "x", x);
  check_arg(op, "x", x, {-1, 3}, "[N, 3]");
  check_arg(op, "table", table, {-1, -1, -1}, "[L, T, F]", &x);
  const int64_t L = table.size(0), T = table.size(1), F = table.size(2);
  TORCH_CHECK_VALUE(L >= 1 && L <= kHashGridMaxLevels, "eyefast.", op, ": table must have 1..", kHashGridMaxLevels,
                    " levels, got ", L);
  TORCH_CHECK_VALUE(F >= 1 && F <= kHashGridMaxFeatures, "eyefast.", op, ": table must have 1..",
                    kHashGridMaxFeatures, " features per level, got ", F);
  TORCH_CHECK_VALUE(T >= 1 && T <= (int64_t(1) << 31) && (T & (T - 1)) == 0, "eyefast.", op,
                    ": table rows per level must be a power of two <= 2^31, got ", T);
  TORCH_CHECK_VALUE(static_cast<int64_t>(scales.size()) == L, "eyefast.", op, ": scales must have one entry per level (",
                    L, "), got ", scales.size());
  TORCH_CHECK_VALUE(n_active >= 0 && n_active <= L, "eyefast.", op, ": n_active must be in [0, ", L, "], got ",
                    n_active);
  HashGridLayout lay;
  std::memset(&lay, 0, sizeof(lay));
  lay.n_levels = static_cast<int32_t>(L);
  lay.n_features = static_cast<int32_t>(F);
  lay.n_active = static_cast<int32_t>(n_active);
  lay.table_size = static_cast<uint32_t>(T);
  lay.smoothstep = smoothstep;
  for (int64_t l = 0; l < L; ++l) {
    TORCH_CHECK_VALUE(scales[l] > 0.0 && scales[l] < 4.0e9, "eyefast.", op, ": scales[", l,
                      "] must be in (0, 4e9), got ", scales[l]);
    lay.scale[l] = scales[l];
  }
  hash_grid_finish_layout(lay);
  return lay;
}

at::Tensor encode(const at::Tensor& x, const at::Tensor& table, at::ArrayRef<double> scales, int64_t n_active,
                  bool smoothstep) {
  constexpr const char* kOp = "hash_grid_encode";
  const HashGridLayout lay = make_layout(kOp, x, table, scales, n_active, smoothstep);
  const int64_t n = x.size(0);
  at::Tensor out = prepare_output(at::empty({n, table.size(0) * table.size(2)}, x.options()));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eyefast_hash_grid_fwd", [&] {
    if (x.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(x.device());
      check_cuda(kOp, cuda::hash_grid_forward<scalar_t>(x.data_ptr<scalar_t>(), n, table.data_ptr<scalar_t>(), lay,
                                                        out.data_ptr<scalar_t>(), current_stream(x)));
#endif
    } else {
      cpu::hash_grid_forward<scalar_t>(x.data_ptr<scalar_t>(), n, table.data_ptr<scalar_t>(), lay,
                                       out.data_ptr<scalar_t>());
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_out_in, const at::Tensor& x, const at::Tensor& table,
                                            at::ArrayRef<double> scales, int64_t n_active, bool smoothstep,
                                            bool need_x, bool need_table) {
  constexpr const char* kOp = "hash_grid_backward";
  const HashGridLayout lay = make_layout(kOp, x, table, scales, n_active, smoothstep);
  const int64_t n = x.size(0);
  const at::Tensor grad_out = grad_out_in.contiguous();
  check_arg(kOp, "grad_out", grad_out, {n, table.size(0) * table.size(2)}, "[N, L * F]", &x);
  at::Tensor g_x = need_x ? prepare_output(at::empty({n, 3}, x.options())) : at::empty({0}, x.options());
  // The launchers overwrite the table gradient (no zero fill here).
  at::Tensor g_t = need_table ? prepare_output(at::empty_like(table)) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eyefast_hash_grid_bwd", [&] {
    scalar_t* gx = need_x ? g_x.data_ptr<scalar_t>() : nullptr;
    scalar_t* gt = need_table ? g_t.data_ptr<scalar_t>() : nullptr;
    if (x.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(x.device());
      check_cuda(kOp, cuda::hash_grid_backward<scalar_t>(x.data_ptr<scalar_t>(), n, table.data_ptr<scalar_t>(), lay,
                                                         grad_out.data_ptr<scalar_t>(), gx, gt, current_stream(x)));
#endif
    } else {
      cpu::hash_grid_backward<scalar_t>(x.data_ptr<scalar_t>(), n, table.data_ptr<scalar_t>(), lay,
                                        grad_out.data_ptr<scalar_t>(), gx, gt);
    }
  });
  return {g_x, g_t};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> double_backward(const at::Tensor& gg_x_in, const at::Tensor& grad_out_in,
                                                               const at::Tensor& x, const at::Tensor& table,
                                                               at::ArrayRef<double> scales, int64_t n_active,
                                                               bool smoothstep, bool need_x, bool need_table) {
  constexpr const char* kOp = "hash_grid_double_backward";
  const HashGridLayout lay = make_layout(kOp, x, table, scales, n_active, smoothstep);
  const int64_t n = x.size(0);
  const at::Tensor grad_out = grad_out_in.contiguous(), gg_x = gg_x_in.contiguous();
  check_arg(kOp, "grad_out", grad_out, {n, table.size(0) * table.size(2)}, "[N, L * F]", &x);
  check_arg(kOp, "gg_x", gg_x, {n, 3}, "[N, 3]", &x);
  at::Tensor g_go = prepare_output(at::empty_like(grad_out));
  at::Tensor g_x = need_x ? prepare_output(at::empty({n, 3}, x.options())) : at::empty({0}, x.options());
  // The launchers overwrite the table gradient (no zero fill here).
  at::Tensor g_t = need_table ? prepare_output(at::empty_like(table)) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eyefast_hash_grid_bwd2", [&] {
    scalar_t* gx = need_x ? g_x.data_ptr<scalar_t>() : nullptr;
    scalar_t* gt = need_table ? g_t.data_ptr<scalar_t>() : nullptr;
    if (x.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(x.device());
      check_cuda(kOp, cuda::hash_grid_double_backward<scalar_t>(
                          x.data_ptr<scalar_t>(), n, table.data_ptr<scalar_t>(), lay, grad_out.data_ptr<scalar_t>(),
                          gg_x.data_ptr<scalar_t>(), g_go.data_ptr<scalar_t>(), gx, gt, current_stream(x)));
#endif
    } else {
      cpu::hash_grid_double_backward<scalar_t>(x.data_ptr<scalar_t>(), n, table.data_ptr<scalar_t>(), lay,
                                               grad_out.data_ptr<scalar_t>(), gg_x.data_ptr<scalar_t>(),
                                               g_go.data_ptr<scalar_t>(), gx, gt);
    }
  });
  return {g_go, g_x, g_t};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def("hash_grid_encode(Tensor x, Tensor table, float[] scales, int n_active, bool smoothstep) -> Tensor");
  m.def(
      "hash_grid_backward(Tensor grad_out, Tensor x, Tensor table, float[] scales, int n_active, bool smoothstep, "
      "bool need_x, bool need_table) -> (Tensor grad_x, Tensor grad_table)");
  m.def(
      "hash_grid_double_backward(Tensor gg_x, Tensor grad_out, Tensor x, Tensor table, float[] scales, int n_active, "
      "bool smoothstep, bool need_x, bool need_table) -> (Tensor grad_grad_out, Tensor grad_x, Tensor grad_table)");
}

TORCH_LIBRARY_IMPL(eyefast, CPU, m) {
  m.impl("hash_grid_encode", &encode);
  m.impl("hash_grid_backward", &backward);
  m.impl("hash_grid_double_backward", &double_backward);
}

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) {
  m.impl("hash_grid_encode", &encode);
  m.impl("hash_grid_backward", &backward);
  m.impl("hash_grid_double_backward", &double_backward);
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
