// torch.ops.eyefast.sdf_network / sdf_network_backward: a hash-grid encoding and a Softplus MLP
// evaluated together with the x-gradient of its first output, in one op (the SDF network of SPEC 2
// and its normals / eikonal term), and that op's backward in one op.
//
//   u   = [2 x - 1 (include_x) | hash_grid_encode(x)]                       [N, n_in]
//         (stored with a ones column, n_in + 1 wide: the first layer's bias as a weight column)
//   a_0 = u,  a_{k+1} = softplus_beta(W_k a_k + b_k)  (k < K - 1),  out = W_{K-1} a_{K-1} + b_{K-1}
//   grad = d out[:, 0] / d x                                                 [N, 3]
//
// Why one op: composed from separate ops, torch's autograd computes `grad` with a backward pass
// (create_graph) and the training loss then differentiates that pass again. Done by hand here:
//   * the encoding writes the network's input row in place and, with it, its Jacobian J [N, L*F, 3],
//     so the x-gradient is a contraction (no second pass over the table), and so is the
//     table-gradient path's d/d(gu) = J gg;
//   * the two table-gradient terms (the encoding's own and the one through the x-gradient) are
//     one scatter (HashGridTableGrad) instead of two;
//   * the first backward step is a broadcast row (d out_0 / d a = W_{K-1}[0]), not a product;
//   * the Softplus adds the layer's bias and keeps its derivative in the same pass as its value
//     (SoftplusBiasRows), and its second derivative is one pass (SoftplusDoubleBackward);
//   * no autograd nodes, views, slices or gradient accumulations per layer.
// The products: x W^T-shaped ones through oneDNN's linear on the CPU in float32 (linear_nt), the
// weight gradients (a^T b, summed over the points) through at::mm (MKL), all through cuBLAS on CUDA.
// The result equals the composition of hash_grid_encode, nn.Linear, softplus and
// torch.autograd.grad (eyefast/reference/sdf_network.py): tests/test_sdf_network.py checks values
// and gradients against it (float64 to 1e-11, float32 to 2e-5) and runs gradcheck and opcheck.
//
// Differentiable once (the training loss's gradient w.r.t. x, the table, weights and biases); the
// backward raises if differentiated again.
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "eyefast/activation.h"
#include "eyefast/hash_grid.h"
#include "hash_grid_layout.h"
#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

constexpr double kSoftplusThreshold = 20.0;  // torch.nn.Softplus's default

// u's layout: [2 x - 1 (include_x) | encoding | 1]: n_in network inputs, then a ones column (the
// first layer's bias as a weight column, folded into its product: no bias pass, and n_u = 36 columns
// for FaceSDF's 35 inputs, which MKL multiplies faster than 35).
struct Net {
  int64_t n, K, m, n_in, n_u;
  int col;  // first encoding column of u (3 with include_x)
};

Net check_net(const char* op, const at::Tensor& x, const HashGridLayout& lay, at::TensorList weights,
              at::TensorList biases, double beta, bool include_x) {
  Net net;
  net.n = x.size(0);
  net.K = static_cast<int64_t>(weights.size());
  net.m = static_cast<int64_t>(lay.n_levels) * lay.n_features;
  net.col = include_x ? 3 : 0;
  net.n_in = net.m + net.col;
  net.n_u = net.n_in + 1;
  TORCH_CHECK_VALUE(net.K >= 1, "eyefast.", op, ": weights must hold at least one layer");
  TORCH_CHECK_VALUE(static_cast<int64_t>(biases.size()) == net.K, "eyefast.", op, ": biases must have one entry per ",
                    "layer (", net.K, "), got ", biases.size());
  TORCH_CHECK_VALUE(std::isfinite(beta) && beta > 0.0, "eyefast.", op, ": beta must be finite and > 0, got ", beta);
  int64_t prev = net.n_in;
  for (int64_t k = 0; k < net.K; ++k) {
    const at::Tensor &W = weights[k], &b = biases[k];
    TORCH_CHECK(W.defined() && b.defined(), "eyefast.", op, ": weights[", k, "] / biases[", k, "] is undefined");
    TORCH_CHECK_TYPE(W.scalar_type() == x.scalar_type() && b.scalar_type() == x.scalar_type(), "eyefast.", op,
                     ": weights[", k, "] and biases[", k, "] must have dtype ", x.scalar_type(), " like x, got ",
                     W.scalar_type(), " and ", b.scalar_type());
    TORCH_CHECK(W.device() == x.device() && b.device() == x.device(), "eyefast.", op, ": weights[", k,
                "] and biases[", k, "] must be on ", x.device(), " like x");
    TORCH_CHECK(W.dim() == 2 && W.size(1) == prev && W.size(0) >= 1, "eyefast.", op, ": weights[", k,
                "] must have shape [H, ", prev, "] (layer ", k, "'s input width), got ", W.sizes());
    TORCH_CHECK(b.dim() == 1 && b.size(0) == W.size(0), "eyefast.", op, ": biases[", k, "] must have shape [",
                W.size(0), "], got ", b.sizes());
    prev = W.size(0);
  }
  return net;
}

// x [N, k] times w^T (w [H, k], any strides) plus an optional bias [H] -> [N, H], contiguous.
// float32 CPU tensors go through oneDNN's linear (mkldnn::_linear_pointwise, the kernel torch's own
// CPU fusion passes call): on this project's AMD Zen 4 it runs these tall, narrow products 1.2-1.7x
// as fast as MKL's sgemm behind at::mm (measured at 67k x {16, 36, 64} x {16, 36, 64}, float32,
// 2 threads; the same results up to summation order). Elsewhere (float64, CUDA, a torch without
// oneDNN, torch.backends.mkldnn disabled, or EYEFAST_ONEDNN=0): at::mm / at::addmm.
bool use_onednn(const at::Tensor& x) {
  static const bool env_ok = [] {
    const char* v = std::getenv("EYEFAST_ONEDNN");
    return !(v && v[0] == '0');
  }();
  return env_ok && x.is_cpu() && x.scalar_type() == at::kFloat && at::globalContext().userEnabledMkldnn();
}

at::Tensor linear_nt(const at::Tensor& x, const at::Tensor& w, const at::Tensor* bias = nullptr) {
  static const std::optional<c10::OperatorHandle> onednn =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
  if (onednn.has_value() && onednn->hasKernelForDispatchKey(c10::DispatchKey::CPU) && use_onednn(x)) {
    std::vector<c10::IValue> stack{x.contiguous(),
                                   w.contiguous(),
                                   bias ? c10::IValue(bias->contiguous()) : c10::IValue(),
                                   c10::IValue(std::string("none")),
                                   c10::IValue(c10::List<std::optional<c10::Scalar>>()),
                                   c10::IValue(std::string(""))};
    onednn->callBoxed(&stack);
    return stack[0].toTensor();
  }
  return bias ? at::addmm(*bias, x, w.t()) : at::mm(x, w.t());
}

// What both ops check and set up first: the hash-grid layout, the network's shapes, and (CUDA) x's
// device for the raw launches, held for the op's lifetime.
struct OpSetup {
  HashGridLayout lay;
  Net net;
#ifdef EYEFAST_WITH_CUDA
  std::optional<c10::cuda::CUDAGuard> guard;
#endif
  OpSetup(const char* op, const at::Tensor& x, const at::Tensor& table, at::ArrayRef<double> scales, int64_t n_active,
          bool smoothstep, at::TensorList weights, at::TensorList biases, double beta, bool include_x)
      : lay(hash_grid_make_layout(op, x, table, scales, n_active, smoothstep)),
        net(check_net(op, x, lay, weights, biases, beta, include_x)) {
#ifdef EYEFAST_WITH_CUDA
    if (x.is_cuda()) guard.emplace(x.device());
#endif
  }
};

// ---- device dispatch of the kernels -----------------------------------------------------------

// The encoding's Jacobian J [N, L*F, 3]: point-major (contiguous) on the CPU; feature-major on CUDA
// (a permuted view of [L*F, 3, N] storage, strides 1, 3N, N): there one thread handles one point (or
// one point and level), and consecutive points' entries lie at consecutive addresses.
at::Tensor new_jacobian(int64_t n, int64_t m, const at::TensorOptions& opt) {
  if (opt.device().is_cuda()) return at::empty({m, 3, n}, opt).permute({2, 0, 1});
  return at::empty({n, m, 3}, opt);
}

bool jacobian_layout_ok(const at::Tensor& jac) {
  if (!jac.is_cuda()) return jac.is_contiguous();
  const int64_t n = jac.size(0);
  return jac.stride(0) == 1 && jac.stride(1) == 3 * n && jac.stride(2) == n;
}

// J in its device's layout (a copy when it came in another, e.g. moved or made contiguous by the caller)
at::Tensor jacobian_in_layout(const at::Tensor& jac) {
  if (jacobian_layout_ok(jac)) return jac;
  at::Tensor out = new_jacobian(jac.size(0), jac.size(1), jac.options());
  out.copy_(jac);
  return out;
}

void run_encode(const at::Tensor& x, const at::Tensor& table, const HashGridLayout& lay, at::Tensor& u, const Net& net,
                bool include_x, at::Tensor* jac) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eyefast_sdf_network_encode", [&] {
    scalar_t* j = jac ? jac->data_ptr<scalar_t>() : nullptr;
    if (x.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      check_cuda("sdf_network", cuda::hash_grid_forward_jacobian<scalar_t>(
                                    x.data_ptr<scalar_t>(), x.size(0), table.data_ptr<scalar_t>(), lay,
                                    u.data_ptr<scalar_t>(), net.n_u, include_x, net.n_in, j, current_stream(x)));
#endif
    } else {
      cpu::hash_grid_forward_jacobian<scalar_t>(x.data_ptr<scalar_t>(), x.size(0), table.data_ptr<scalar_t>(), lay,
                                                u.data_ptr<scalar_t>(), net.n_u, include_x, net.n_in, j);
    }
  });
}

// h += bias (in place, when write_h), y = softplus(h + bias) and, when d is given, d = softplus'(h + bias);
// when gh is given (with d), gh = d * wrow (per column).
void run_softplus_bias(at::Tensor& h, const at::Tensor& bias, double beta, at::Tensor& y, at::Tensor* d, bool write_h,
                       const at::Tensor* wrow = nullptr, at::Tensor* gh = nullptr) {
  const at::Tensor b = bias.contiguous();
  const at::Tensor w = wrow ? wrow->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "eyefast_sdf_network_softplus_bias", [&] {
    const SoftplusParams<scalar_t> p{static_cast<scalar_t>(beta), static_cast<scalar_t>(kSoftplusThreshold)};
    scalar_t* dp = d ? d->data_ptr<scalar_t>() : nullptr;
    const scalar_t* wp = gh ? w.data_ptr<scalar_t>() : nullptr;
    scalar_t* ghp = gh ? gh->data_ptr<scalar_t>() : nullptr;
    if (h.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      check_cuda("sdf_network", cuda::softplus_bias_rows<scalar_t>(h.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
                                                                   h.size(0), h.size(1), p, y.data_ptr<scalar_t>(), dp,
                                                                   write_h, wp, ghp, current_stream(h)));
#endif
    } else {
      cpu::softplus_bias_rows<scalar_t>(h.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), h.size(0), h.size(1), p,
                                        y.data_ptr<scalar_t>(), dp, write_h, wp, ghp);
    }
  });
}

// g_g = gg softplus'(h), g_z = gg grow softplus''(h), with grow [H] the same for every row
void run_softplus_dbwd_rows(const at::Tensor& gg, const at::Tensor& grow_in, const at::Tensor& h, double beta,
                            at::Tensor& g_g, at::Tensor& g_z) {
  const at::Tensor grow = grow_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "eyefast_sdf_network_softplus2_rows", [&] {
    const SoftplusParams<scalar_t> p{static_cast<scalar_t>(beta), static_cast<scalar_t>(kSoftplusThreshold)};
    if (h.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      check_cuda("sdf_network_backward",
                 cuda::softplus_double_backward_rows<scalar_t>(gg.data_ptr<scalar_t>(), grow.data_ptr<scalar_t>(),
                                                               h.data_ptr<scalar_t>(), h.size(0), h.size(1), p,
                                                               g_g.data_ptr<scalar_t>(), g_z.data_ptr<scalar_t>(),
                                                               current_stream(h)));
#endif
    } else {
      cpu::softplus_double_backward_rows<scalar_t>(gg.data_ptr<scalar_t>(), grow.data_ptr<scalar_t>(),
                                                   h.data_ptr<scalar_t>(), h.size(0), h.size(1), p,
                                                   g_g.data_ptr<scalar_t>(), g_z.data_ptr<scalar_t>());
    }
  });
}

// g_g = gg softplus'(h), g_z = gg g softplus''(h)
void run_softplus_dbwd(const at::Tensor& gg, const at::Tensor& g, const at::Tensor& h, double beta, at::Tensor& g_g,
                       at::Tensor& g_z) {
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "eyefast_sdf_network_softplus2", [&] {
    const SoftplusParams<scalar_t> p{static_cast<scalar_t>(beta), static_cast<scalar_t>(kSoftplusThreshold)};
    if (h.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      check_cuda("sdf_network_backward",
                 cuda::softplus_double_backward<scalar_t>(gg.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                                                          h.data_ptr<scalar_t>(), h.numel(), p,
                                                          g_g.data_ptr<scalar_t>(), g_z.data_ptr<scalar_t>(),
                                                          current_stream(h)));
#endif
    } else {
      cpu::softplus_double_backward<scalar_t>(gg.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                                              h.numel(), p, g_g.data_ptr<scalar_t>(), g_z.data_ptr<scalar_t>());
    }
  });
}

// transpose: out [N, 3] = J^T in[:, col:] (+ 2 in[:, :3]); else out [N, n_u] = [2 in | J in | 0]
// (rows of u's layout)
void run_jacobian(const at::Tensor& jac, const at::Tensor& in, const Net& net, bool transpose, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES(jac.scalar_type(), "eyefast_sdf_network_jacobian", [&] {
    if (jac.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      check_cuda("sdf_network", cuda::hash_grid_jacobian_apply<scalar_t>(
                                    jac.data_ptr<scalar_t>(), net.n, net.m, in.data_ptr<scalar_t>(), net.n_u, net.col,
                                    transpose, net.n_in, out.data_ptr<scalar_t>(), current_stream(jac)));
#endif
    } else {
      cpu::hash_grid_jacobian_apply<scalar_t>(jac.data_ptr<scalar_t>(), net.n, net.m, in.data_ptr<scalar_t>(),
                                              net.n_u, net.col, transpose, net.n_in, out.data_ptr<scalar_t>());
    }
  });
}

// ---- the ops ----------------------------------------------------------------------------------
// saved (forward with save): [u, J, gu, then per hidden layer j: h_j, a_j, s_j, ga_j, gh_j], where
// a_j = softplus(h_j), s_j = softplus'(h_j), ga_j = d out_0 / d a_j, gh_j = s_j ga_j and
// gu = d out_0 / d u. Without need_grad, J, gu, ga_j, gh_j are empty; ga of the last hidden layer
// (the broadcast row W_{K-1}[0]) is always empty.
constexpr int64_t kSavedHead = 3, kSavedPerLayer = 5;

// The first layer's weight with its bias as a last column [H_0, n_u] (its product with u adds the bias).
at::Tensor first_layer(at::TensorList weights, at::TensorList biases) {
  return at::cat({weights[0], biases[0].unsqueeze(1)}, 1);
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> sdf_network(
    const at::Tensor& x, const at::Tensor& table, at::ArrayRef<double> scales, int64_t n_active, bool smoothstep,
    at::TensorList weights, at::TensorList biases, double beta, bool include_x, bool need_grad, bool save) {
  constexpr const char* kOp = "sdf_network";
  const OpSetup setup(kOp, x, table, scales, n_active, smoothstep, weights, biases, beta, include_x);
  const HashGridLayout& lay = setup.lay;
  const Net& net = setup.net;
  const int64_t n = net.n, K = net.K;
  const auto opt = x.options();
  // an absent saved tensor: a fresh empty one per slot (the op's outputs must not alias each other)
  auto none = [&] { return at::empty({0}, opt); };
  // Kernel-written outputs are poisoned first when EYEFAST_POISON is set (prepare_output).
  at::Tensor u = prepare_output(at::empty({n, net.n_u}, opt));
  at::Tensor jac = need_grad ? prepare_output(new_jacobian(n, net.m, opt)) : none();
  run_encode(x, table, lay, u, net, include_x, need_grad ? &jac : nullptr);
  const at::Tensor w0 = first_layer(weights, biases);
  const bool keep_s = need_grad || save;
  std::vector<at::Tensor> hs, as, ss;
  at::Tensor a = u;
  at::Tensor gh_top;  // d out_0 / d h of the last hidden layer, from its activation's pass
  for (int64_t k = 0; k + 1 < K; ++k) {
    // the product alone (layer 0's includes its bias through u's ones column); the bias of the others
    // is added by the activation's pass (addmm would first copy the bias into every row, then
    // accumulate the product onto it)
    at::Tensor h = linear_nt(a, k == 0 ? w0 : weights[k]);
    at::Tensor y = prepare_output(at::empty_like(h)), s = keep_s ? prepare_output(at::empty_like(h)) : none();
    const at::Tensor bias = k == 0 ? at::zeros_like(biases[0]) : biases[k];
    const bool top = k + 2 == K;
    if (top && need_grad) {
      gh_top = prepare_output(at::empty_like(h));
      const at::Tensor wrow = weights[K - 1].select(0, 0);
      run_softplus_bias(h, bias, beta, y, &s, /*write_h=*/save && k > 0, &wrow, &gh_top);
    } else {
      run_softplus_bias(h, bias, beta, y, keep_s ? &s : nullptr, /*write_h=*/save && k > 0);
    }
    hs.push_back(h);
    as.push_back(y);
    ss.push_back(s);
    a = y;
  }
  at::Tensor out = K == 1 ? linear_nt(u, w0) : linear_nt(a, weights[K - 1], &biases[K - 1]);
  at::Tensor grad = prepare_output(at::empty({need_grad ? n : 0, 3}, opt));
  at::Tensor gu = none();
  std::vector<at::Tensor> gas, ghs;
  for (int64_t j = 0; j + 1 < K; ++j) {
    gas.push_back(none());
    ghs.push_back(none());
  }
  if (need_grad) {  // (also for N = 0: [0, H] tensors, as the backward and the fake expect)
    const at::Tensor w_top = (K == 1 ? w0 : weights[K - 1]).select(0, 0);  // d out_0 / d a_{K-1}
    if (K == 1) {
      gu = w_top.unsqueeze(0).expand({n, net.n_u}).contiguous();
    } else {
      at::Tensor gh = gh_top;  // = s_{K-2} * w_top
      ghs[K - 2] = gh;
      for (int64_t j = K - 3; j >= 0; --j) {
        at::Tensor ga = linear_nt(gh, weights[j + 1].t());
        gh = ss[j] * ga;
        gas[j] = ga;
        ghs[j] = gh;
      }
      gu = linear_nt(gh, w0.t());  // [N, n_u]; its last column (d out_0 / d of the ones column) is unused
    }
    run_jacobian(jac, gu, net, /*transpose=*/true, grad);
  }
  std::vector<at::Tensor> saved;
  if (save) {
    saved = {u, jac, gu};
    for (int64_t j = 0; j + 1 < K; ++j) {
      saved.push_back(hs[j]);
      saved.push_back(as[j]);
      saved.push_back(ss[j]);
      saved.push_back(gas[j]);
      saved.push_back(ghs[j]);
    }
  }
  return {out, grad, saved};
}

// dst += a^T b (dst undefined: = a^T b)
void add_mm_t(at::Tensor& dst, const at::Tensor& a, const at::Tensor& b) {
  if (dst.defined()) {
    dst.addmm_(a.t(), b);
  } else {
    dst = at::mm(a.t(), b);
  }
}

void add_to(at::Tensor& dst, const at::Tensor& v) {
  if (dst.defined()) {
    dst.add_(v);
  } else {
    dst = v;
  }
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> sdf_network_backward(
    const std::optional<at::Tensor>& g_out_opt, const std::optional<at::Tensor>& g_grad_opt, const at::Tensor& x,
    const at::Tensor& table, at::ArrayRef<double> scales, int64_t n_active, bool smoothstep, at::TensorList weights,
    at::TensorList biases, double beta, bool include_x, at::TensorList saved, bool need_x, bool need_table,
    bool need_params) {
  constexpr const char* kOp = "sdf_network_backward";
  const OpSetup setup(kOp, x, table, scales, n_active, smoothstep, weights, biases, beta, include_x);
  const HashGridLayout& lay = setup.lay;
  const Net& net = setup.net;
  const int64_t n = net.n, K = net.K;
  const auto opt = x.options();
  TORCH_CHECK_VALUE(static_cast<int64_t>(saved.size()) == kSavedHead + kSavedPerLayer * (K - 1), "eyefast.", kOp,
                    ": saved must hold the ", kSavedHead + kSavedPerLayer * (K - 1),
                    " tensors sdf_network(..., save=True) returned, got ", saved.size());
  const at::Tensor &u = saved[0], &gu = saved[2];
  at::Tensor jac = saved[1];
  check_arg(kOp, "saved[0] (u)", u, {n, net.n_u}, "[N, n_in + 1]", &x);
  auto layer = [&](int64_t j, int64_t what) -> const at::Tensor& { return saved[kSavedHead + kSavedPerLayer * j + what]; };
  const at::Tensor g_out = g_out_opt.has_value() && g_out_opt->defined() ? g_out_opt->contiguous() : at::Tensor();
  const at::Tensor g_grad = g_grad_opt.has_value() && g_grad_opt->defined() ? g_grad_opt->contiguous() : at::Tensor();
  if (g_out.defined()) check_arg(kOp, "g_out", g_out, {n, weights[K - 1].size(0)}, "[N, n_out]", &x);
  if (g_grad.defined()) {
    check_arg(kOp, "g_grad", g_grad, {n, 3}, "[N, 3]", &x);
    TORCH_CHECK_VALUE(jac.numel() == n * net.m * 3 && gu.numel() == n * net.n_u, "eyefast.", kOp,
                      ": g_grad needs the saved tensors of a forward with need_grad=True");
    TORCH_CHECK(jac.dim() == 3 && jac.size(0) == n && jac.size(1) == net.m && jac.size(2) == 3 &&
                    jac.scalar_type() == x.scalar_type() && jac.device() == x.device(),
                "eyefast.", kOp, ": saved[1] (J) must be a [N, L * F, 3] tensor like x, got ", jac.sizes());
    jac = jacobian_in_layout(jac);
    check_arg(kOp, "saved[2] (gu)", gu, {n, net.n_u}, "[N, n_in + 1]", &x);
  }
  for (int64_t j = 0; j + 1 < K; ++j) {
    for (int64_t w = 0; w < 3; ++w) check_arg(kOp, "saved (h, a, s)", layer(j, w), {n, weights[j].size(0)}, "[N, H]", &x);
    if (g_grad.defined()) {  // the gradient pass's ga_j (not of the last hidden layer: a broadcast row) and gh_j
      if (j + 2 < K) check_arg(kOp, "saved (ga)", layer(j, 3), {n, weights[j].size(0)}, "[N, H]", &x);
      check_arg(kOp, "saved (gh)", layer(j, 4), {n, weights[j].size(0)}, "[N, H]", &x);
    }
  }
  // The layers' product weights: the first with its bias column (u's ones column), then the others.
  std::vector<at::Tensor> Wm(weights.begin(), weights.end());
  Wm[0] = first_layer(weights, biases);
  std::vector<at::Tensor> gW(K), gb(K);  // gW[0] is the first layer's [H_0, n_u] (its bias in the last column)
  std::vector<at::Tensor> P(K - 1);      // d loss / d h_j through the gradient path
  const at::Tensor w_top = Wm[K - 1].select(0, 0);
  auto add_top_row = [&](const at::Tensor& row) {  // gW[K-1][0, :] += row
    if (!gW[K - 1].defined()) gW[K - 1] = at::zeros_like(Wm[K - 1], at::MemoryFormat::Contiguous);
    gW[K - 1].select(0, 0).add_(row);
  };

  // The gradient path (grad = J^T gu, gu = gh_0 W_0, ga_j = gh_{j+1} W_{j+1}, gh_j = s_j ga_j), upwards.
  if (g_grad.defined()) {
    at::Tensor g_gu = prepare_output(at::empty({n, net.n_u}, opt));  // [2 G | J G | 0]
    run_jacobian(jac, g_grad, net, /*transpose=*/false, g_gu);
    if (K == 1) {
      if (need_params) add_top_row(g_gu.sum(0));
    } else {
      at::Tensor g_gh = linear_nt(g_gu, Wm[0]);
      if (need_params) add_mm_t(gW[0], layer(0, 4), g_gu);
      for (int64_t j = 0; j + 1 < K; ++j) {
        const bool top = j + 2 == K;
        at::Tensor g_ga = prepare_output(at::empty_like(g_gh)), p = prepare_output(at::empty_like(g_gh));
        if (top) {  // ga_{K-2} is the row W_{K-1}[0] for every point
          run_softplus_dbwd_rows(g_gh, w_top, layer(j, 0), beta, g_ga, p);
        } else {
          run_softplus_dbwd(g_gh, layer(j, 3), layer(j, 0), beta, g_ga, p);
        }
        P[j] = p;
        if (!top) {
          g_gh = linear_nt(g_ga, weights[j + 1]);
          if (need_params) add_mm_t(gW[j + 1], layer(j + 1, 4), g_ga);
        } else if (need_params) {
          add_top_row(g_ga.sum(0));
        }
      }
    }
  }

  // The value path, downwards; g_a: d loss / d (the current layer's input).
  at::Tensor g_a;
  if (g_out.defined()) {
    const at::Tensor& a_top = K >= 2 ? layer(K - 2, 1) : u;
    if (K >= 2 || need_table || need_x) g_a = linear_nt(g_out, Wm[K - 1].t());
    if (need_params) {
      add_mm_t(gW[K - 1], g_out, a_top);
      if (K >= 2) gb[K - 1] = g_out.sum(0);  // (the first layer's bias gradient is gW[0]'s last column)
    }
  }
  for (int64_t j = K - 2; j >= 0; --j) {
    at::Tensor g_h;
    if (g_a.defined()) {
      g_h = P[j].defined() ? P[j].addcmul_(g_a, layer(j, 2)) : g_a * layer(j, 2);
    } else {
      g_h = P[j];
    }
    g_a = at::Tensor();
    if (!g_h.defined()) continue;
    if (need_params) {
      add_mm_t(gW[j], g_h, j > 0 ? layer(j - 1, 1) : u);
      if (j > 0) add_to(gb[j], g_h.sum(0));
    }
    if (j > 0 || need_table || need_x) g_a = linear_nt(g_h, Wm[j].t());
  }
  const at::Tensor& g_u = g_a;  // d loss / d u [N, n_u] (undefined: none flows; the last column unused)

  at::Tensor g_table = at::empty({0}, opt), g_x = at::empty({0}, opt);
  if (need_table) {
    g_table = prepare_output(at::empty_like(table, at::MemoryFormat::Contiguous));
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eyefast_sdf_network_table", [&] {
      const scalar_t* ge = g_u.defined() ? g_u.data_ptr<scalar_t>() + net.col : nullptr;
      const scalar_t* gg = g_grad.defined() ? g_grad.data_ptr<scalar_t>() : nullptr;
      const scalar_t* gup = g_grad.defined() ? gu.data_ptr<scalar_t>() + net.col : nullptr;
      if (x.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
        check_cuda(kOp, cuda::hash_grid_table_grad<scalar_t>(x.data_ptr<scalar_t>(), n, lay, ge, gg, gup, net.n_u,
                                                             g_table.data_ptr<scalar_t>(), current_stream(x)));
#endif
      } else {
        cpu::hash_grid_table_grad<scalar_t>(x.data_ptr<scalar_t>(), n, lay, ge, gg, gup, net.n_u,
                                            g_table.data_ptr<scalar_t>());
      }
    });
  }
  if (need_x) {
    g_x = at::zeros({n, 3}, opt);
    if (g_u.defined()) {
      // (d u / d x)^T g_u: 2 g_u[:, :3] + J^T g_u[:, col:]; without a saved J, the encoding's backward kernel
      at::Tensor t;
      if (jac.numel() == n * net.m * 3 && n > 0) {
        t = prepare_output(at::empty({n, 3}, opt));
        run_jacobian(jac, g_u, net, /*transpose=*/true, t);
      } else {
        const at::Tensor ge = g_u.narrow(1, net.col, net.m).contiguous();
        auto r = c10::Dispatcher::singleton()
                     .findSchemaOrThrow("eyefast::hash_grid_backward", "")
                     .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                               at::ArrayRef<double>, int64_t, bool, bool, bool)>()
                     .call(ge, x, table, scales, n_active, smoothstep, true, false);
        t = std::get<0>(r);
        if (include_x) t.add_(g_u.narrow(1, 0, 3), 2.0);
      }
      g_x.add_(t);
    }
    if (g_grad.defined()) {
      // the encoding's Hessian: d/dx of J(x)^T gu_enc, applied to g_grad
      const at::Tensor ge = gu.narrow(1, net.col, net.m).contiguous();
      auto r = c10::Dispatcher::singleton()
                   .findSchemaOrThrow("eyefast::hash_grid_double_backward", "")
                   .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                       const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                       at::ArrayRef<double>, int64_t, bool, bool, bool)>()
                   .call(g_grad, ge, x, table, scales, n_active, smoothstep, true, false);
      g_x.add_(std::get<1>(r));
    }
  }
  std::vector<at::Tensor> g_weights, g_biases;
  if (need_params) {
    if (gW[0].defined()) {  // split the first layer's [H_0, n_u] into its weight and its bias
      gb[0] = gW[0].select(1, net.n_in).contiguous();
      gW[0] = gW[0].narrow(1, 0, net.n_in).contiguous();
    }
    for (int64_t k = 0; k < K; ++k) {
      g_weights.push_back(gW[k].defined() ? gW[k] : at::zeros_like(weights[k], at::MemoryFormat::Contiguous));
      g_biases.push_back(gb[k].defined() ? gb[k] : at::zeros_like(biases[k], at::MemoryFormat::Contiguous));
    }
  }
  return {g_x, g_table, g_weights, g_biases};
}

// ---- autograd ---------------------------------------------------------------------------------
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ForwardSig = std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>>(
    const at::Tensor&, const at::Tensor&, at::ArrayRef<double>, int64_t, bool, at::TensorList, at::TensorList, double,
    bool, bool, bool);
using BackwardSig = std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>>(
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
    at::ArrayRef<double>, int64_t, bool, at::TensorList, at::TensorList, double, bool, at::TensorList, bool, bool,
    bool);

const c10::TypedOperatorHandle<ForwardSig>& forward_op() {
  static const auto h =
      c10::Dispatcher::singleton().findSchemaOrThrow("eyefast::sdf_network", "").typed<ForwardSig>();
  return h;
}
const c10::TypedOperatorHandle<BackwardSig>& backward_op() {
  static const auto h =
      c10::Dispatcher::singleton().findSchemaOrThrow("eyefast::sdf_network_backward", "").typed<BackwardSig>();
  return h;
}

// The backward, recorded under create_graph as a node that raises when differentiated (third order).
class BackwardFn : public torch::autograd::Function<BackwardFn> {
 public:
  static variable_list forward(AutogradContext*, const std::optional<at::Tensor>& g_out,
                               const std::optional<at::Tensor>& g_grad, const at::Tensor& x, const at::Tensor& table,
                               at::TensorList weights, at::TensorList biases, at::TensorList saved,
                               std::vector<double> scales, int64_t n_active, bool smoothstep, double beta,
                               bool include_x, bool need_x, bool need_table, bool need_params) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto r = backward_op().call(g_out, g_grad, x, table, scales, n_active, smoothstep, weights, biases, beta, include_x,
                                saved, need_x, need_table, need_params);
    variable_list out{std::get<0>(r), std::get<1>(r)};
    for (auto& t : std::get<2>(r)) out.push_back(t);
    for (auto& t : std::get<3>(r)) out.push_back(t);
    return out;
  }
  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false,
                "eyefast.sdf_network_backward is not differentiable: sdf_network (which returns the x-gradient "
                "itself) supports first derivatives of its outputs, not second");
  }
};

class ForwardFn : public torch::autograd::Function<ForwardFn> {
 public:
  // return_saved: the saved tensors also come out, after (out, grad), as non-differentiable outputs.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& table,
                               at::TensorList weights, at::TensorList biases, std::vector<double> scales,
                               int64_t n_active, bool smoothstep, double beta, bool include_x, bool need_grad,
                               bool return_saved) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto r = forward_op().call(x, table, scales, n_active, smoothstep, weights, biases, beta, include_x, need_grad,
                               /*save=*/true);
    variable_list keep{x, table};
    for (const auto& t : weights) keep.push_back(t);
    for (const auto& t : biases) keep.push_back(t);
    for (auto& t : std::get<2>(r)) keep.push_back(t);
    ctx->save_for_backward(keep);
    ctx->saved_data["need_grad"] = need_grad;
    ctx->saved_data["K"] = static_cast<int64_t>(weights.size());
    ctx->saved_data["scales"] = scales;
    ctx->saved_data["n_active"] = n_active;
    ctx->saved_data["smoothstep"] = smoothstep;
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["include_x"] = include_x;
    ctx->set_materialize_grads(false);
    variable_list outs{std::get<0>(r), std::get<1>(r)};
    if (return_saved) {
      variable_list extra(std::get<2>(r).begin(), std::get<2>(r).end());
      ctx->mark_non_differentiable(extra);
      outs.insert(outs.end(), extra.begin(), extra.end());
    }
    return outs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const int64_t K = ctx->saved_data["K"].toInt();
    // grad is an empty [0, 3] without need_grad: a loss may still touch it (a defined, empty gradient)
    if (!ctx->saved_data["need_grad"].toBool()) grads[1] = at::Tensor();
    const bool n_x = ctx->needs_input_grad(0), n_t = ctx->needs_input_grad(1);
    bool n_p = false;
    for (int64_t k = 0; k < 2 * K; ++k) n_p = n_p || ctx->needs_input_grad(2 + k);
    variable_list result(2 + 2 * K + 7);
    const bool any = grads[0].defined() || grads[1].defined();
    if (!any || !(n_x || n_t || n_p)) return result;
    const auto s = ctx->get_saved_variables();
    const std::vector<at::Tensor> weights(s.begin() + 2, s.begin() + 2 + K), biases(s.begin() + 2 + K,
                                                                                 s.begin() + 2 + 2 * K);
    const std::vector<at::Tensor> saved(s.begin() + 2 + 2 * K, s.end());
    const std::optional<at::Tensor> g_out = grads[0].defined() ? std::optional<at::Tensor>(grads[0]) : std::nullopt;
    const std::optional<at::Tensor> g_grad = grads[1].defined() ? std::optional<at::Tensor>(grads[1]) : std::nullopt;
    auto r = BackwardFn::apply(g_out, g_grad, s[0], s[1], weights, biases, saved,
                               ctx->saved_data["scales"].toDoubleVector(), ctx->saved_data["n_active"].toInt(),
                               ctx->saved_data["smoothstep"].toBool(), ctx->saved_data["beta"].toDouble(),
                               ctx->saved_data["include_x"].toBool(), n_x, n_t, n_p);
    if (n_x) result[0] = r[0];
    if (n_t) result[1] = r[1];
    if (n_p) {
      for (int64_t k = 0; k < 2 * K; ++k) {
        if (ctx->needs_input_grad(2 + k)) result[2 + k] = r[2 + k];
      }
    }
    return result;
  }
};

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> sdf_network_autograd(
    const at::Tensor& x, const at::Tensor& table, at::ArrayRef<double> scales, int64_t n_active, bool smoothstep,
    at::TensorList weights, at::TensorList biases, double beta, bool include_x, bool need_grad, bool save) {
  bool track = at::GradMode::is_enabled() && (x.requires_grad() || table.requires_grad());
  for (const auto& t : weights) track = track || (at::GradMode::is_enabled() && t.requires_grad());
  for (const auto& t : biases) track = track || (at::GradMode::is_enabled() && t.requires_grad());
  if (!track) {  // nothing to record
    at::AutoDispatchBelowADInplaceOrView guard;
    return forward_op().call(x, table, scales, n_active, smoothstep, weights, biases, beta, include_x, need_grad,
                             save);
  }
  auto r = ForwardFn::apply(x, table, weights, biases, scales.vec(), n_active, smoothstep, beta, include_x, need_grad,
                            save);
  std::vector<at::Tensor> saved(r.begin() + 2, r.end());  // (empty without save)
  return {r[0], r[1], saved};
}

std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> sdf_network_backward_autograd(
    const std::optional<at::Tensor>& g_out, const std::optional<at::Tensor>& g_grad, const at::Tensor& x,
    const at::Tensor& table, at::ArrayRef<double> scales, int64_t n_active, bool smoothstep, at::TensorList weights,
    at::TensorList biases, double beta, bool include_x, at::TensorList saved, bool need_x, bool need_table,
    bool need_params) {
  auto r = BackwardFn::apply(g_out, g_grad, x, table, weights, biases, saved, scales.vec(), n_active, smoothstep, beta,
                             include_x, need_x, need_table, need_params);
  const int64_t K = static_cast<int64_t>(weights.size());
  std::vector<at::Tensor> gw, gb;
  if (need_params) {
    gw.assign(r.begin() + 2, r.begin() + 2 + K);
    gb.assign(r.begin() + 2 + K, r.begin() + 2 + 2 * K);
  }
  return {r[0], r[1], gw, gb};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def(
      "sdf_network(Tensor x, Tensor table, float[] scales, int n_active, bool smoothstep, Tensor[] weights, "
      "Tensor[] biases, float beta, bool include_x, bool need_grad, bool save) -> (Tensor out, Tensor grad, "
      "Tensor[] saved)");
  m.def(
      "sdf_network_backward(Tensor? g_out, Tensor? g_grad, Tensor x, Tensor table, float[] scales, int n_active, "
      "bool smoothstep, Tensor[] weights, Tensor[] biases, float beta, bool include_x, Tensor[] saved, bool need_x, "
      "bool need_table, bool need_params) -> (Tensor grad_x, Tensor grad_table, Tensor[] grad_weights, "
      "Tensor[] grad_biases)");
}

TORCH_LIBRARY_IMPL(eyefast, CPU, m) {
  m.impl("sdf_network", &sdf_network);
  m.impl("sdf_network_backward", &sdf_network_backward);
}

TORCH_LIBRARY_IMPL(eyefast, Autograd, m) {
  m.impl("sdf_network", &sdf_network_autograd);
  m.impl("sdf_network_backward", &sdf_network_backward_autograd);
}

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) {
  m.impl("sdf_network", &sdf_network);
  m.impl("sdf_network_backward", &sdf_network_backward);
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
