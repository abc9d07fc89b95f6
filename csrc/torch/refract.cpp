// torch.ops.eyefast.refract{,_backward}: CPU and CUDA implementations.
#include "eyefast/refract.h"

#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

constexpr const char* kOp = "refract";

// Returns the eta stride: 0 for a shared eta ([] or [1]), 1 for one per ray ([N]).
int64_t check_inputs(const at::Tensor& dirs, const at::Tensor& normals, const at::Tensor& eta) {
  check_float_dtype(kOp, "dirs", dirs);
  check_arg(kOp, "dirs", dirs, {-1, 3}, "[N, 3]");
  const int64_t n = dirs.size(0);
  const std::string n3 = "[N, 3] (N = " + std::to_string(n) + ")";
  check_arg(kOp, "normals", normals, {n, 3}, n3.c_str(), &dirs);
  TORCH_CHECK_TYPE(eta.scalar_type() == dirs.scalar_type(), "eyefast.refract: eta must have dtype ",
                   dirs.scalar_type(), " like dirs, got ", eta.scalar_type());
  TORCH_CHECK(eta.device() == dirs.device(), "eyefast.refract: eta must be on ", dirs.device(), " like dirs, got ",
              eta.device());
  const bool shared = eta.dim() == 0 || (eta.dim() == 1 && eta.size(0) == 1 && n != 1);
  TORCH_CHECK(shared || (eta.dim() == 1 && eta.size(0) == n), "eyefast.refract: eta must be a float, a 0-d tensor or "
              "have shape [N] (N = ", n, "), got ", eta.sizes());
  TORCH_CHECK(eta.is_contiguous(), "eyefast.refract: eta must be contiguous");
  return shared ? 0 : 1;
}

// Runs the forward kernel into the given (checked) outputs.
void run_forward(const at::Tensor& dirs, const at::Tensor& normals, const at::Tensor& eta, int64_t stride,
                 bool check, at::Tensor& out, at::Tensor& refl, at::Tensor& tir) {
  const int64_t n = dirs.size(0);
  CheckBuffer rec(dirs.device());
  CheckRecord* rec_ptr = check ? rec.get() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "eyefast_refract_fwd", [&] {
    const auto* d = dirs.data_ptr<scalar_t>();
    const auto* nm = normals.data_ptr<scalar_t>();
    const auto* e = eta.data_ptr<scalar_t>();
    auto* tir_ptr = reinterpret_cast<uint8_t*>(tir.data_ptr<bool>());
    if (dirs.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(dirs.device());
      check_cuda(kOp, cuda::refract_forward<scalar_t>(d, nm, e, stride, n, out.data_ptr<scalar_t>(),
                                                      refl.data_ptr<scalar_t>(), tir_ptr, rec_ptr, current_stream(dirs)));
#endif
    } else {
      cpu::refract_forward<scalar_t>(d, nm, e, stride, n, out.data_ptr<scalar_t>(), refl.data_ptr<scalar_t>(), tir_ptr,
                                     rec_ptr);
    }
  });
  if (check) {
    raise_if_flagged(kOp, rec,
                     {{kRF_DirsNonFinite, "dirs", "has a non-finite value"},
                      {kRF_DirsZero, "dirs", "has a zero-length direction"},
                      {kRF_NormalsNonFinite, "normals", "has a non-finite value"},
                      {kRF_NormalsZero, "normals", "has a zero-length normal"},
                      {kRF_EtaInvalid, "eta", "must be finite and > 0"}});
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& dirs, const at::Tensor& normals,
                                                       const at::Tensor& eta, bool check) {
  const int64_t stride = check_inputs(dirs, normals, eta);
  const int64_t n = dirs.size(0);
  at::Tensor out = prepare_output(at::empty({n, 3}, dirs.options()));
  at::Tensor refl = prepare_output(at::empty({n}, dirs.options()));
  at::Tensor tir = prepare_output(at::empty({n}, dirs.options().dtype(at::kBool)));
  run_forward(dirs, normals, eta, stride, check, out, refl, tir);
  return {out, refl, tir};
}

// The out= overload: writes into caller-owned buffers, returns nothing (see ray_sphere.cpp).
void forward_out(const at::Tensor& dirs, const at::Tensor& normals, const at::Tensor& eta, bool check,
                 at::Tensor& out, at::Tensor& reflectance, at::Tensor& tir) {
  const int64_t stride = check_inputs(dirs, normals, eta);
  const int64_t n = dirs.size(0);
  const std::string n1 = "[N] (N = " + std::to_string(n) + ")", n3 = "[N, 3] (N = " + std::to_string(n) + ")";
  std::vector<std::pair<const char*, const at::Tensor*>> seen = {{"dirs", &dirs}, {"normals", &normals}, {"eta", &eta}};
  check_out(kOp, "out", out, dirs.scalar_type(), {n, 3}, n3.c_str(), dirs, seen);
  seen.push_back({"out", &out});
  check_out(kOp, "reflectance", reflectance, dirs.scalar_type(), {n}, n1.c_str(), dirs, seen);
  seen.push_back({"reflectance", &reflectance});
  check_out(kOp, "tir", tir, at::kBool, {n}, n1.c_str(), dirs, seen);
  // The huge-page hint, and the poison under the tests (unwritten elements show up).
  for (at::Tensor* t : {&out, &reflectance, &tir}) prepare_output(*t);
  run_forward(dirs, normals, eta, stride, check, out, reflectance, tir);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& dirs, const at::Tensor& normals,
                                                        const at::Tensor& eta,
                                                        const std::optional<at::Tensor>& grad_out_in,
                                                        const std::optional<at::Tensor>& grad_refl_in) {
  const int64_t stride = check_inputs(dirs, normals, eta);
  const int64_t n = dirs.size(0);
  at::Tensor g_out = grad_or_undefined(grad_out_in), g_refl = grad_or_undefined(grad_refl_in);
  if (g_out.defined()) check_arg("refract_backward", "grad_out", g_out, {n, 3}, "[N, 3]", &dirs);
  if (g_refl.defined()) check_arg("refract_backward", "grad_reflectance", g_refl, {n}, "[N]", &dirs);
  at::Tensor g_d = prepare_output(at::empty_like(dirs)), g_n = prepare_output(at::empty_like(normals));
  at::Tensor g_eta_rows = prepare_output(at::empty({n}, dirs.options()));
  AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "eyefast_refract_bwd", [&] {
    const auto* d = dirs.data_ptr<scalar_t>();
    const auto* nm = normals.data_ptr<scalar_t>();
    const auto* e = eta.data_ptr<scalar_t>();
    if (dirs.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(dirs.device());
      check_cuda(kOp, cuda::refract_backward<scalar_t>(d, nm, e, stride, n, ptr_or_null<scalar_t>(g_out),
                                                       ptr_or_null<scalar_t>(g_refl), g_d.data_ptr<scalar_t>(),
                                                       g_n.data_ptr<scalar_t>(), g_eta_rows.data_ptr<scalar_t>(),
                                                       current_stream(dirs)));
#endif
    } else {
      cpu::refract_backward<scalar_t>(d, nm, e, stride, n, ptr_or_null<scalar_t>(g_out), ptr_or_null<scalar_t>(g_refl),
                                      g_d.data_ptr<scalar_t>(), g_n.data_ptr<scalar_t>(),
                                      g_eta_rows.data_ptr<scalar_t>());
    }
  });
  at::Tensor g_eta = stride == 0 ? g_eta_rows.sum().reshape(eta.sizes()) : g_eta_rows;
  return {g_d, g_n, g_eta};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def(
      "refract(Tensor dirs, Tensor normals, Tensor eta, bool check=True) -> "
      "(Tensor out, Tensor reflectance, Tensor tir)");
  m.def(
      "refract.out(Tensor dirs, Tensor normals, Tensor eta, bool check=True, *, Tensor(a!) out, "
      "Tensor(b!) reflectance, Tensor(c!) tir) -> ()");
  m.def(
      "refract_backward(Tensor dirs, Tensor normals, Tensor eta, Tensor? grad_out, Tensor? grad_reflectance) -> "
      "(Tensor grad_dirs, Tensor grad_normals, Tensor grad_eta)");
}

// The out= overload is not differentiable (as torch's own out= overloads): a backward through
// it raises. (ops.py refuses it up front, and advances the buffers' version counters.)
TORCH_LIBRARY_IMPL(eyefast, Autograd, m) { m.impl("refract.out", torch::autograd::autogradNotImplementedFallback()); }

TORCH_LIBRARY_IMPL(eyefast, CPU, m) {
  m.impl("refract", &forward);
  m.impl("refract.out", &forward_out);
  m.impl("refract_backward", &backward);
}

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) {
  m.impl("refract", &forward);
  m.impl("refract.out", &forward_out);
  m.impl("refract_backward", &backward);
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
