// torch.ops.eyefast.hash_grid_{encode,backward,double_backward}: CPU and CUDA implementations, and
// the autograd of encode (twice differentiable) in C++.
#include "eyefast/hash_grid.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <vector>

#include "hash_grid_layout.h"
#include "utils.h"

namespace eyefast {
namespace torch_ext {

HashGridLayout hash_grid_make_layout(const char* op, const at::Tensor& x, const at::Tensor& table, at::ArrayRef<double> scales,
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

namespace {

HashGridLayout make_layout(const char* op, const at::Tensor& x, const at::Tensor& table, at::ArrayRef<double> scales,
                           int64_t n_active, bool smoothstep) {
  return hash_grid_make_layout(op, x, table, scales, n_active, smoothstep);
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

// ---- autograd -----------------------------------------------------------------------------------
// In C++ rather than torch.library.register_autograd because a C++ node's needs_input_grad asks
// the running backward pass which inputs it will actually use (Node::task_should_compute_output),
// where Python's is fixed at forward time. That matters twice per training step:
//   * torch.autograd.grad(sdf, x, create_graph=True) needs the x-gradient only: no table scatter;
//   * a final backward(inputs=parameters) needs no gradient for the sample points x (a leaf made for
//     the first pass): the double backward skips its Hessian term and the encode backward its
//     x-gradient.
// The ops are called through the dispatcher, so with create_graph the backward is itself recorded.
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct HashGridOps {
  c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, at::ArrayRef<double>, int64_t, bool)>
      encode;
  c10::TypedOperatorHandle<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                              at::ArrayRef<double>, int64_t, bool, bool, bool)>
      backward;
  c10::TypedOperatorHandle<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, at::ArrayRef<double>, int64_t, bool,
      bool, bool)>
      double_backward;
};

const HashGridOps& ops() {
  static const HashGridOps o{
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("eyefast::hash_grid_encode", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::ArrayRef<double>, int64_t, bool)>(),
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("eyefast::hash_grid_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    at::ArrayRef<double>, int64_t, bool, bool, bool)>(),
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("eyefast::hash_grid_double_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                const at::Tensor&, const at::Tensor&,
                                                                at::ArrayRef<double>, int64_t, bool, bool, bool)>()};
  return o;
}

void save_args(AutogradContext* ctx, const std::vector<double>& scales, int64_t n_active, bool smoothstep) {
  ctx->saved_data["scales"] = scales;
  ctx->saved_data["n_active"] = n_active;
  ctx->saved_data["smoothstep"] = smoothstep;
}

struct SavedArgs {
  std::vector<double> scales;
  int64_t n_active;
  bool smoothstep;
};

SavedArgs load_args(AutogradContext* ctx) {
  return {ctx->saved_data["scales"].toDoubleVector(), ctx->saved_data["n_active"].toInt(),
          ctx->saved_data["smoothstep"].toBool()};
}

class BackwardFn : public torch::autograd::Function<BackwardFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out, const at::Tensor& x,
                               const at::Tensor& table, std::vector<double> scales, int64_t n_active, bool smoothstep,
                               bool need_x, bool need_table) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto r = ops().backward.call(grad_out, x, table, scales, n_active, smoothstep, need_x, need_table);
    ctx->save_for_backward({grad_out, x, table});
    save_args(ctx, scales, n_active, smoothstep);
    ctx->saved_data["had_x"] = need_x;
    ctx->saved_data["had_table"] = need_table;
    // An output nobody differentiates (typically grad_table under autograd.grad(..., x,
    // create_graph=True)) arrives undefined rather than as zeros: no pass over an all-zero gradient.
    ctx->set_materialize_grads(false);
    return {std::get<0>(r), std::get<1>(r)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &grad_out = saved[0], &x = saved[1], &table = saved[2];
    const SavedArgs a = load_args(ctx);
    const bool n_go = ctx->needs_input_grad(0), n_x = ctx->needs_input_grad(1), n_t = ctx->needs_input_grad(2);
    const at::Tensor& gg_x = grads[0];
    at::Tensor gg_table = grads[1];
    at::Tensor g_go, g_x, g_t;
    if (ctx->saved_data["had_x"].toBool() && gg_x.defined() && (n_go || n_x || n_t)) {
      auto r = ops().double_backward.call(gg_x, grad_out, x, table, a.scales, a.n_active, a.smoothstep, n_x, n_t);
      if (n_go) g_go = std::get<0>(r);
      if (n_x) g_x = std::get<1>(r);
      if (n_t) g_t = std::get<2>(r);
    }
    if (ctx->saved_data["had_table"].toBool() && gg_table.defined() && (n_go || n_x)) {
      gg_table = gg_table.contiguous();  // autograd may hand over an expanded (stride-0) tensor
      // grad_table = sum_i w(x_i) grad_out_i is linear in grad_out: its adjoint is the encoding itself.
      if (n_go) {
        at::Tensor e = ops().encode.call(x, gg_table, a.scales, a.n_active, a.smoothstep);
        g_go = g_go.defined() ? g_go + e : e;
      }
      if (n_x) {
        at::Tensor e =
            std::get<0>(ops().backward.call(grad_out, x, gg_table, a.scales, a.n_active, a.smoothstep, true, false));
        g_x = g_x.defined() ? g_x + e : e;
      }
    }
    return {g_go, g_x, g_t, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class EncodeFn : public torch::autograd::Function<EncodeFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& table,
                            std::vector<double> scales, int64_t n_active, bool smoothstep) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = ops().encode.call(x, table, scales, n_active, smoothstep);
    ctx->save_for_backward({x, table});
    save_args(ctx, scales, n_active, smoothstep);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const bool n_x = ctx->needs_input_grad(0), n_t = ctx->needs_input_grad(1);
    at::Tensor g_x, g_t;
    if (n_x || n_t) {
      const auto saved = ctx->get_saved_variables();
      const SavedArgs a = load_args(ctx);
      auto r = BackwardFn::apply(grads[0], saved[0], saved[1], a.scales, a.n_active, a.smoothstep, n_x, n_t);
      if (n_x) g_x = r[0];
      if (n_t) g_t = r[1];
    }
    return {g_x, g_t, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The double backward is not itself differentiable: recorded under create_graph, its backward
// raises instead of torch's default (a warning, then gradients silently treated as zero).
class DoubleBackwardFn : public torch::autograd::Function<DoubleBackwardFn> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& gg_x, const at::Tensor& grad_out,
                               const at::Tensor& x, const at::Tensor& table, std::vector<double> scales,
                               int64_t n_active, bool smoothstep, bool need_x, bool need_table) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto r = ops().double_backward.call(gg_x, grad_out, x, table, scales, n_active, smoothstep, need_x, need_table);
    return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
  }
  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false,
                "eyefast.hash_grid_double_backward is not differentiable: hash_grid_encode supports first and "
                "second derivatives, not third");
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> double_backward_autograd(
    const at::Tensor& gg_x, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& table,
    at::ArrayRef<double> scales, int64_t n_active, bool smoothstep, bool need_x, bool need_table) {
  auto r = DoubleBackwardFn::apply(gg_x, grad_out, x, table, scales.vec(), n_active, smoothstep, need_x, need_table);
  return {r[0], r[1], r[2]};
}

at::Tensor encode_autograd(const at::Tensor& x, const at::Tensor& table, at::ArrayRef<double> scales,
                           int64_t n_active, bool smoothstep) {
  return EncodeFn::apply(x, table, scales.vec(), n_active, smoothstep);
}

std::tuple<at::Tensor, at::Tensor> backward_autograd(const at::Tensor& grad_out, const at::Tensor& x,
                                                     const at::Tensor& table, at::ArrayRef<double> scales,
                                                     int64_t n_active, bool smoothstep, bool need_x, bool need_table) {
  auto r = BackwardFn::apply(grad_out, x, table, scales.vec(), n_active, smoothstep, need_x, need_table);
  return {r[0], r[1]};
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

TORCH_LIBRARY_IMPL(eyefast, Autograd, m) {
  m.impl("hash_grid_encode", &encode_autograd);
  m.impl("hash_grid_backward", &backward_autograd);
  m.impl("hash_grid_double_backward", &double_backward_autograd);
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
