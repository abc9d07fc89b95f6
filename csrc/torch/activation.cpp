// torch.ops.eyefast.softplus{,_backward,_double_backward}: CPU and CUDA implementations, and the
// autograd of softplus (twice differentiable) in C++ (needs_input_grad is the running pass's, as
// for the hash grid).
#include "eyefast/activation.h"

#include <torch/csrc/autograd/custom_function.h>

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

// beta as the kernels use it (float32 for float32 tensors) must be finite and > 0. (torch also
// accepts beta <= 0; eyefast's kernels do not.)
void check_params(const char* op, double beta, double threshold, at::ScalarType dtype) {
  const double b = dtype == at::kFloat ? static_cast<double>(static_cast<float>(beta)) : beta;
  TORCH_CHECK_VALUE(std::isfinite(b) && b > 0.0, "eyefast.", op, ": beta must be finite and > 0 (in ", dtype,
                    "), got ", beta);
  TORCH_CHECK_VALUE(!std::isnan(threshold), "eyefast.", op, ": threshold must not be NaN");
}

// `t` checked like the first argument `ref` (dtype, device, same shape), made contiguous.
at::Tensor like(const char* op, const char* name, const at::Tensor& t, const at::Tensor& ref) {
  TORCH_CHECK(t.defined(), "eyefast.", op, ": ", name, " is undefined (None)");
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "eyefast.", op, ": ", name, " must have dtype ",
                   ref.scalar_type(), " like the first argument, got ", t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "eyefast.", op, ": ", name, " must be on ", ref.device(),
              " like the first argument, got ", t.device());
  TORCH_CHECK_VALUE(t.sizes() == ref.sizes(), "eyefast.", op, ": ", name, " must have the shape of the first argument ",
                    ref.sizes(), ", got ", t.sizes());
  return t.contiguous();
}

at::Tensor softplus(const at::Tensor& z_in, double beta, double threshold) {
  constexpr const char* kOp = "softplus";
  check_float_dtype(kOp, "z", z_in);
  check_params(kOp, beta, threshold, z_in.scalar_type());
  const at::Tensor z = z_in.contiguous();
  at::Tensor y = prepare_output(at::empty_like(z, at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "eyefast_softplus", [&] {
    const SoftplusParams<scalar_t> p{static_cast<scalar_t>(beta), static_cast<scalar_t>(threshold)};
    if (z.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(z.device());
      check_cuda(kOp, cuda::softplus_forward<scalar_t>(z.data_ptr<scalar_t>(), z.numel(), p, y.data_ptr<scalar_t>(),
                                                       current_stream(z)));
#endif
    } else {
      cpu::softplus_forward<scalar_t>(z.data_ptr<scalar_t>(), z.numel(), p, y.data_ptr<scalar_t>());
    }
  });
  return y;
}

at::Tensor softplus_backward(const at::Tensor& grad_in, const at::Tensor& z_in, double beta, double threshold) {
  constexpr const char* kOp = "softplus_backward";
  check_float_dtype(kOp, "grad", grad_in);
  check_params(kOp, beta, threshold, grad_in.scalar_type());
  const at::Tensor g = grad_in.contiguous(), z = like(kOp, "z", z_in, grad_in);
  at::Tensor out = prepare_output(at::empty_like(z, at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "eyefast_softplus_bwd", [&] {
    const SoftplusParams<scalar_t> p{static_cast<scalar_t>(beta), static_cast<scalar_t>(threshold)};
    if (z.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(z.device());
      check_cuda(kOp, cuda::softplus_backward<scalar_t>(g.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), z.numel(), p,
                                                        out.data_ptr<scalar_t>(), current_stream(z)));
#endif
    } else {
      cpu::softplus_backward<scalar_t>(g.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), z.numel(), p,
                                       out.data_ptr<scalar_t>());
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> softplus_double_backward(const at::Tensor& gg_in, const at::Tensor& grad_in,
                                                            const at::Tensor& z_in, double beta, double threshold,
                                                            bool need_grad, bool need_z) {
  constexpr const char* kOp = "softplus_double_backward";
  check_float_dtype(kOp, "gg", gg_in);
  check_params(kOp, beta, threshold, gg_in.scalar_type());
  const at::Tensor gg = gg_in.contiguous(), g = like(kOp, "grad", grad_in, gg_in), z = like(kOp, "z", z_in, gg_in);
  at::Tensor g_g = need_grad ? prepare_output(at::empty_like(z, at::MemoryFormat::Contiguous)) : at::empty({0}, z.options());
  at::Tensor g_z = need_z ? prepare_output(at::empty_like(z, at::MemoryFormat::Contiguous)) : at::empty({0}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "eyefast_softplus_bwd2", [&] {
    const SoftplusParams<scalar_t> p{static_cast<scalar_t>(beta), static_cast<scalar_t>(threshold)};
    scalar_t* pg = need_grad ? g_g.data_ptr<scalar_t>() : nullptr;
    scalar_t* pz = need_z ? g_z.data_ptr<scalar_t>() : nullptr;
    if (z.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(z.device());
      check_cuda(kOp, cuda::softplus_double_backward<scalar_t>(gg.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                                                               z.data_ptr<scalar_t>(), z.numel(), p, pg, pz,
                                                               current_stream(z)));
#endif
    } else {
      cpu::softplus_double_backward<scalar_t>(gg.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(),
                                              z.numel(), p, pg, pz);
    }
  });
  return {g_g, g_z};
}

// ---- autograd -----------------------------------------------------------------------------------
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const auto& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eyefast::softplus_backward", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, double)>();
  return op;
}
const auto& double_backward_op() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("eyefast::softplus_double_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                                    double, bool, bool)>();
  return op;
}
const auto& forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eyefast::softplus", "")
                             .typed<at::Tensor(const at::Tensor&, double, double)>();
  return op;
}

// Not itself differentiable: recorded under create_graph, its backward raises instead of torch's
// default (a warning, then gradients silently treated as zero).
class SoftplusDoubleBackwardFn : public torch::autograd::Function<SoftplusDoubleBackwardFn> {
 public:
  static variable_list forward(AutogradContext*, const at::Tensor& gg, const at::Tensor& grad, const at::Tensor& z,
                               double beta, double threshold, bool need_grad, bool need_z) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto r = double_backward_op().call(gg, grad, z, beta, threshold, need_grad, need_z);
    return {std::get<0>(r), std::get<1>(r)};
  }
  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false,
                "eyefast.softplus_double_backward is not differentiable: softplus supports first and second "
                "derivatives, not third");
  }
};

std::tuple<at::Tensor, at::Tensor> softplus_double_backward_autograd(const at::Tensor& gg, const at::Tensor& grad,
                                                                     const at::Tensor& z, double beta,
                                                                     double threshold, bool need_grad, bool need_z) {
  auto r = SoftplusDoubleBackwardFn::apply(gg, grad, z, beta, threshold, need_grad, need_z);
  return {r[0], r[1]};
}

class SoftplusBackwardFn : public torch::autograd::Function<SoftplusBackwardFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad, const at::Tensor& z, double beta,
                            double threshold) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = backward_op().call(grad, z, beta, threshold);
    ctx->save_for_backward({grad, z});
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["threshold"] = threshold;
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const bool n_g = ctx->needs_input_grad(0), n_z = ctx->needs_input_grad(1);
    at::Tensor g_g, g_z;
    if (n_g || n_z) {
      const auto saved = ctx->get_saved_variables();
      auto r = double_backward_op().call(grads[0], saved[0], saved[1], ctx->saved_data["beta"].toDouble(),
                                         ctx->saved_data["threshold"].toDouble(), n_g, n_z);
      if (n_g) g_g = std::get<0>(r);
      if (n_z) g_z = std::get<1>(r);
    }
    return {g_g, g_z, at::Tensor(), at::Tensor()};
  }
};

class SoftplusFn : public torch::autograd::Function<SoftplusFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& z, double beta, double threshold) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor y = forward_op().call(z, beta, threshold);
    ctx->save_for_backward({z});
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["threshold"] = threshold;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor g_z;
    if (ctx->needs_input_grad(0)) {
      const auto saved = ctx->get_saved_variables();
      g_z = SoftplusBackwardFn::apply(grads[0], saved[0], ctx->saved_data["beta"].toDouble(),
                                      ctx->saved_data["threshold"].toDouble());
    }
    return {g_z, at::Tensor(), at::Tensor()};
  }
};

at::Tensor softplus_autograd(const at::Tensor& z, double beta, double threshold) {
  return SoftplusFn::apply(z, beta, threshold);
}
at::Tensor softplus_backward_autograd(const at::Tensor& grad, const at::Tensor& z, double beta, double threshold) {
  return SoftplusBackwardFn::apply(grad, z, beta, threshold);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def("softplus(Tensor z, float beta=1.0, float threshold=20.0) -> Tensor");
  m.def("softplus_backward(Tensor grad, Tensor z, float beta, float threshold) -> Tensor");
  m.def(
      "softplus_double_backward(Tensor gg, Tensor grad, Tensor z, float beta, float threshold, bool need_grad, "
      "bool need_z) -> (Tensor grad_grad, Tensor grad_z)");
}

TORCH_LIBRARY_IMPL(eyefast, CPU, m) {
  m.impl("softplus", &softplus);
  m.impl("softplus_backward", &softplus_backward);
  m.impl("softplus_double_backward", &softplus_double_backward);
}

TORCH_LIBRARY_IMPL(eyefast, Autograd, m) {
  m.impl("softplus", &softplus_autograd);
  m.impl("softplus_backward", &softplus_backward_autograd);
  m.impl("softplus_double_backward", &softplus_double_backward_autograd);
}

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) {
  m.impl("softplus", &softplus);
  m.impl("softplus_backward", &softplus_backward);
  m.impl("softplus_double_backward", &softplus_double_backward);
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
