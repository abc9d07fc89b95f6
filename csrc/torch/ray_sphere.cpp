// torch.ops.eyefast.ray_sphere_intersect{,_backward}: CPU and CUDA implementations.
#include "eyefast/ray_sphere.h"

#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

constexpr const char* kOp = "ray_sphere_intersect";

void check_inputs(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& centers,
                  const at::Tensor& radii) {
  check_float_dtype(kOp, "origins", origins);
  check_arg(kOp, "origins", origins, {-1, 3}, "[N, 3]");
  const int64_t n = origins.size(0);
  const std::string n3 = "[N, 3] (N = " + std::to_string(n) + ")";
  check_arg(kOp, "dirs", dirs, {n, 3}, n3.c_str(), &origins);
  check_arg(kOp, "centers", centers, {-1, 3}, "[S, 3]", &origins);
  const std::string s1 = "[S] (S = " + std::to_string(centers.size(0)) + ")";
  check_arg(kOp, "radii", radii, {centers.size(0)}, s1.c_str(), &origins);
  TORCH_CHECK(centers.size(0) <= INT32_MAX, "eyefast.", kOp, ": too many spheres (", centers.size(0), ")");
}

// Runs the forward kernel into the given (checked) outputs.
void run_forward(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& centers,
                 const at::Tensor& radii, bool check, at::Tensor& t_near, at::Tensor& t_far, at::Tensor& index,
                 at::Tensor& normal) {
  const int64_t n = origins.size(0);
  const int32_t s = static_cast<int32_t>(centers.size(0));
  CheckBuffer rec(origins.device());
  CheckRecord* rec_ptr = check ? rec.get() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "eyefast_ray_sphere_fwd", [&] {
    const auto* o = origins.data_ptr<scalar_t>();
    const auto* d = dirs.data_ptr<scalar_t>();
    const auto* c = centers.data_ptr<scalar_t>();
    const auto* r = radii.data_ptr<scalar_t>();
    if (origins.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(origins.device());
      check_cuda(kOp, cuda::ray_sphere_intersect_forward<scalar_t, int64_t>(
                          o, d, n, c, r, s, t_near.data_ptr<scalar_t>(), t_far.data_ptr<scalar_t>(),
                          index.data_ptr<int64_t>(), normal.data_ptr<scalar_t>(), rec_ptr, current_stream(origins)));
#endif
    } else {
      cpu::ray_sphere_intersect_forward<scalar_t, int64_t>(o, d, n, c, r, s, t_near.data_ptr<scalar_t>(),
                                                           t_far.data_ptr<scalar_t>(), index.data_ptr<int64_t>(),
                                                           normal.data_ptr<scalar_t>(), rec_ptr);
    }
  });
  if (check) {
    raise_if_flagged(kOp, rec,
                     {{kRS_OriginsNonFinite, "origins", "has a non-finite value"},
                      {kRS_DirsNonFinite, "dirs", "has a non-finite value"},
                      {kRS_DirsZero, "dirs", "has a zero-length direction"},
                      {kRS_CentersNonFinite, "centers", "has a non-finite value"},
                      {kRS_RadiiInvalid, "radii", "must be finite and > 0"}});
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& origins, const at::Tensor& dirs,
                                                                   const at::Tensor& centers, const at::Tensor& radii,
                                                                   bool check) {
  check_inputs(origins, dirs, centers, radii);
  const int64_t n = origins.size(0);
  auto opts = origins.options();
  at::Tensor t_near = prepare_output(at::empty({n}, opts)), t_far = prepare_output(at::empty({n}, opts));
  at::Tensor index = prepare_output(at::empty({n}, opts.dtype(at::kLong)));
  at::Tensor normal = prepare_output(at::empty({n, 3}, opts));
  run_forward(origins, dirs, centers, radii, check, t_near, t_far, index, normal);
  return {t_near, t_far, index, normal};
}

// The out= overload: writes into caller-owned buffers (no allocation, no page faults on reuse).
// It returns nothing (torch.compile's functionalisation supports mutated arguments, not outputs
// aliasing them); ops.ray_sphere_intersect returns the buffers.
void forward_out(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& centers, const at::Tensor& radii,
    bool check, at::Tensor& t_near, at::Tensor& t_far, at::Tensor& index, at::Tensor& normal) {
  check_inputs(origins, dirs, centers, radii);
  const int64_t n = origins.size(0);
  const std::string n1 = "[N] (N = " + std::to_string(n) + ")", n3 = "[N, 3] (N = " + std::to_string(n) + ")";
  const auto dt = origins.scalar_type();
  std::vector<std::pair<const char*, const at::Tensor*>> seen = {
      {"origins", &origins}, {"dirs", &dirs}, {"centers", &centers}, {"radii", &radii}};
  check_out(kOp, "t_near", t_near, dt, {n}, n1.c_str(), origins, seen);
  seen.push_back({"t_near", &t_near});
  check_out(kOp, "t_far", t_far, dt, {n}, n1.c_str(), origins, seen);
  seen.push_back({"t_far", &t_far});
  check_out(kOp, "index", index, at::kLong, {n}, n1.c_str(), origins, seen);
  seen.push_back({"index", &index});
  check_out(kOp, "normal", normal, dt, {n, 3}, n3.c_str(), origins, seen);
  // The huge-page hint, and the poison under the tests (unwritten elements show up).
  for (at::Tensor* t : {&t_near, &t_far, &index, &normal}) prepare_output(*t);
  run_forward(origins, dirs, centers, radii, check, t_near, t_far, index, normal);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& centers, const at::Tensor& radii,
    const at::Tensor& index, const std::optional<at::Tensor>& grad_t_near_in,
    const std::optional<at::Tensor>& grad_t_far_in, const std::optional<at::Tensor>& grad_normal_in) {
  check_inputs(origins, dirs, centers, radii);
  const int64_t n = origins.size(0);
  const int32_t s = static_cast<int32_t>(centers.size(0));
  TORCH_CHECK(index.scalar_type() == at::kLong && index.sizes() == at::IntArrayRef({n}) && index.is_contiguous() &&
                  index.device() == origins.device(),
              "eyefast.ray_sphere_intersect_backward: index must be a contiguous int64 [N] tensor on ",
              origins.device());
  at::Tensor g_tn = grad_or_undefined(grad_t_near_in), g_tf = grad_or_undefined(grad_t_far_in),
             g_n = grad_or_undefined(grad_normal_in);
  if (g_tn.defined()) check_arg("ray_sphere_intersect_backward", "grad_t_near", g_tn, {n}, "[N]", &origins);
  if (g_tf.defined()) check_arg("ray_sphere_intersect_backward", "grad_t_far", g_tf, {n}, "[N]", &origins);
  if (g_n.defined()) check_arg("ray_sphere_intersect_backward", "grad_normal", g_n, {n, 3}, "[N, 3]", &origins);
  at::Tensor g_o = prepare_output(at::empty_like(origins)), g_d = prepare_output(at::empty_like(dirs));
  at::Tensor g_sph = prepare_output(at::empty({s, 4}, origins.options()));
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "eyefast_ray_sphere_bwd", [&] {
    const auto* o = origins.data_ptr<scalar_t>();
    const auto* d = dirs.data_ptr<scalar_t>();
    const auto* c = centers.data_ptr<scalar_t>();
    const auto* r = radii.data_ptr<scalar_t>();
    if (origins.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(origins.device());
      check_cuda(kOp, cuda::ray_sphere_intersect_backward<scalar_t, int64_t>(
                          o, d, n, c, r, s, index.data_ptr<int64_t>(), ptr_or_null<scalar_t>(g_tn),
                          ptr_or_null<scalar_t>(g_tf), ptr_or_null<scalar_t>(g_n), g_o.data_ptr<scalar_t>(),
                          g_d.data_ptr<scalar_t>(), g_sph.data_ptr<scalar_t>(), current_stream(origins)));
#endif
    } else {
      cpu::ray_sphere_intersect_backward<scalar_t, int64_t>(
          o, d, n, c, r, s, index.data_ptr<int64_t>(), ptr_or_null<scalar_t>(g_tn), ptr_or_null<scalar_t>(g_tf),
          ptr_or_null<scalar_t>(g_n), g_o.data_ptr<scalar_t>(), g_d.data_ptr<scalar_t>(), g_sph.data_ptr<scalar_t>());
    }
  });
  // Outputs of a custom op may not alias each other: copy the two slices out.
  return {g_o, g_d, g_sph.narrow(1, 0, 3).contiguous(), g_sph.select(1, 3).contiguous()};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def(
      "ray_sphere_intersect(Tensor origins, Tensor dirs, Tensor centers, Tensor radii, bool check=True) -> "
      "(Tensor t_near, Tensor t_far, Tensor index, Tensor normal)");
  m.def(
      "ray_sphere_intersect.out(Tensor origins, Tensor dirs, Tensor centers, Tensor radii, bool check=True, *, "
      "Tensor(a!) t_near, Tensor(b!) t_far, Tensor(c!) index, Tensor(d!) normal) -> ()");
  m.def(
      "ray_sphere_intersect_backward(Tensor origins, Tensor dirs, Tensor centers, Tensor radii, Tensor index, "
      "Tensor? grad_t_near, Tensor? grad_t_far, Tensor? grad_normal) -> "
      "(Tensor grad_origins, Tensor grad_dirs, Tensor grad_centers, Tensor grad_radii)");
}

// The out= overload is not differentiable (as torch's own out= overloads): a backward through
// it raises. (ops.py refuses it up front, and advances the buffers' version counters.)
TORCH_LIBRARY_IMPL(eyefast, Autograd, m) { m.impl("ray_sphere_intersect.out", torch::autograd::autogradNotImplementedFallback()); }

TORCH_LIBRARY_IMPL(eyefast, CPU, m) {
  m.impl("ray_sphere_intersect", &forward);
  m.impl("ray_sphere_intersect.out", &forward_out);
  m.impl("ray_sphere_intersect_backward", &backward);
}

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) {
  m.impl("ray_sphere_intersect", &forward);
  m.impl("ray_sphere_intersect.out", &forward_out);
  m.impl("ray_sphere_intersect_backward", &backward);
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
