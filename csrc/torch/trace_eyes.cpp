// torch.ops.eyefast.trace_eyes{,_backward}: CPU and CUDA implementations.
#include "eyefast/trace_eyes.h"

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

constexpr const char* kOp = "trace_eyes";

void check_inputs(const char* op, const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& eyes) {
  check_float_dtype(op, "origins", origins);
  check_arg(op, "origins", origins, {-1, 3}, "[N, 3]");
  const int64_t n = origins.size(0);
  const std::string n3 = "[N, 3] (N = " + std::to_string(n) + ")";
  check_arg(op, "dirs", dirs, {n, 3}, n3.c_str(), &origins);
  check_arg(op, "eyes", eyes, {-1, kEyeParams},
            "[E, 12] (columns cx, cy, cz, radius, gx, gy, gz, cornea_radius, cornea_offset, limbus_radius, "
            "iris_depth, ior)",
            &origins);
  TORCH_CHECK(eyes.size(0) <= INT32_MAX, "eyefast.", op, ": too many eyes (", eyes.size(0), ")");
}

// Index tensors saved by the forward pass (eye, region): contiguous int64 [N] on the device.
void check_index(const char* name, const at::Tensor& t, int64_t n, const at::Tensor& ref) {
  TORCH_CHECK(t.defined() && t.scalar_type() == at::kLong && t.dim() == 1 && t.size(0) == n && t.is_contiguous() &&
                  t.device() == ref.device(),
              "eyefast.trace_eyes_backward: ", name, " must be a contiguous int64 [N] (N = ", n, ") tensor on ",
              ref.device());
}

using Outputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                           at::Tensor>;

Outputs forward(const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& eyes, bool check) {
  check_inputs(kOp, origins, dirs, eyes);
  const int64_t n = origins.size(0);
  const int32_t n_eyes = static_cast<int32_t>(eyes.size(0));
  auto opts = origins.options();
  at::Tensor t = prepare_output(at::empty({n}, opts));
  at::Tensor eye = prepare_output(at::empty({n}, opts.dtype(at::kLong)));
  at::Tensor region = prepare_output(at::empty({n}, opts.dtype(at::kLong)));
  at::Tensor normal = prepare_output(at::empty({n, 3}, opts));
  at::Tensor refr_dir = prepare_output(at::empty({n, 3}, opts));
  at::Tensor fresnel = prepare_output(at::empty({n}, opts));
  at::Tensor t_iris = prepare_output(at::empty({n}, opts));
  at::Tensor iris_uv = prepare_output(at::empty({n, 2}, opts));
  CheckBuffer rec(origins.device());
  CheckRecord* rec_ptr = check ? rec.get() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "eyefast_trace_eyes_fwd", [&] {
    const auto* o = origins.data_ptr<scalar_t>();
    const auto* d = dirs.data_ptr<scalar_t>();
    const auto* e = eyes.data_ptr<scalar_t>();
    if (origins.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(origins.device());
      check_cuda(kOp, cuda::trace_eyes_forward<scalar_t, int64_t>(
                          o, d, n, e, n_eyes, t.data_ptr<scalar_t>(), eye.data_ptr<int64_t>(),
                          region.data_ptr<int64_t>(), normal.data_ptr<scalar_t>(), refr_dir.data_ptr<scalar_t>(),
                          fresnel.data_ptr<scalar_t>(), t_iris.data_ptr<scalar_t>(), iris_uv.data_ptr<scalar_t>(),
                          rec_ptr, current_stream(origins)));
#endif
    } else {
      cpu::trace_eyes_forward<scalar_t, int64_t>(o, d, n, e, n_eyes, t.data_ptr<scalar_t>(), eye.data_ptr<int64_t>(),
                                                 region.data_ptr<int64_t>(), normal.data_ptr<scalar_t>(),
                                                 refr_dir.data_ptr<scalar_t>(), fresnel.data_ptr<scalar_t>(),
                                                 t_iris.data_ptr<scalar_t>(), iris_uv.data_ptr<scalar_t>(), rec_ptr);
    }
  });
  if (check) {
    raise_if_flagged(
        kOp, rec,
        {{kTE_OriginsNonFinite, "origins", "has a non-finite value"},
         {kTE_DirsNonFinite, "dirs", "has a non-finite value"},
         {kTE_DirsZero, "dirs", "has a zero-length direction"},
         {kTE_CenterNonFinite, "eyes", "columns 0-2 (centre cx, cy, cz) have a non-finite value"},
         {kTE_RadiusInvalid, "eyes", "column 3 (radius) must be finite and > 0"},
         {kTE_GazeInvalid, "eyes", "columns 4-6 (gaze gx, gy, gz) must be finite and not all zero"},
         {kTE_GazeBackward, "eyes",
          "columns 4-6 (gaze) point along -z (gz / |gaze| <= -1 + 1e-6): the iris frame (gaze_frame) is undefined "
          "for an eye looking straight back along -z"},
         {kTE_CorneaRadiusInvalid, "eyes", "column 7 (cornea_radius) must be finite and > 0"},
         {kTE_CorneaOffsetNonFinite, "eyes", "column 8 (cornea_offset) must be finite"},
         {kTE_LimbusRadiusInvalid, "eyes", "column 9 (limbus_radius) must be finite and > 0"},
         {kTE_IrisDepthNonFinite, "eyes", "column 10 (iris_depth) must be finite"},
         {kTE_IorInvalid, "eyes", "column 11 (ior) must be finite and > 0"}});
  }
  return {t, eye, region, normal, refr_dir, fresnel, t_iris, iris_uv};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& eyes, const at::Tensor& t,
    const at::Tensor& eye, const at::Tensor& region, const std::optional<at::Tensor>& grad_t_in,
    const std::optional<at::Tensor>& grad_normal_in, const std::optional<at::Tensor>& grad_refr_dir_in,
    const std::optional<at::Tensor>& grad_fresnel_in, const std::optional<at::Tensor>& grad_t_iris_in,
    const std::optional<at::Tensor>& grad_iris_uv_in) {
  const char* op = "trace_eyes_backward";
  check_inputs(op, origins, dirs, eyes);
  const int64_t n = origins.size(0);
  const int32_t n_eyes = static_cast<int32_t>(eyes.size(0));
  check_arg(op, "t", t, {n}, "[N]", &origins);
  check_index("eye", eye, n, origins);
  check_index("region", region, n, origins);
  at::Tensor g_t = grad_or_undefined(grad_t_in), g_n = grad_or_undefined(grad_normal_in),
             g_r = grad_or_undefined(grad_refr_dir_in), g_f = grad_or_undefined(grad_fresnel_in),
             g_ti = grad_or_undefined(grad_t_iris_in), g_uv = grad_or_undefined(grad_iris_uv_in);
  if (g_t.defined()) check_arg(op, "grad_t", g_t, {n}, "[N]", &origins);
  if (g_n.defined()) check_arg(op, "grad_normal", g_n, {n, 3}, "[N, 3]", &origins);
  if (g_r.defined()) check_arg(op, "grad_refr_dir", g_r, {n, 3}, "[N, 3]", &origins);
  if (g_f.defined()) check_arg(op, "grad_fresnel", g_f, {n}, "[N]", &origins);
  if (g_ti.defined()) check_arg(op, "grad_t_iris", g_ti, {n}, "[N]", &origins);
  if (g_uv.defined()) check_arg(op, "grad_iris_uv", g_uv, {n, 2}, "[N, 2]", &origins);
  at::Tensor g_o = prepare_output(at::empty_like(origins)), g_d = prepare_output(at::empty_like(dirs));
  at::Tensor g_e = prepare_output(at::empty_like(eyes));
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "eyefast_trace_eyes_bwd", [&] {
    const auto* o = origins.data_ptr<scalar_t>();
    const auto* d = dirs.data_ptr<scalar_t>();
    const auto* e = eyes.data_ptr<scalar_t>();
    if (origins.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(origins.device());
      check_cuda(op, cuda::trace_eyes_backward<scalar_t, int64_t>(
                         o, d, n, e, n_eyes, t.data_ptr<scalar_t>(), eye.data_ptr<int64_t>(),
                         region.data_ptr<int64_t>(), ptr_or_null<scalar_t>(g_t), ptr_or_null<scalar_t>(g_n),
                         ptr_or_null<scalar_t>(g_r), ptr_or_null<scalar_t>(g_f), ptr_or_null<scalar_t>(g_ti),
                         ptr_or_null<scalar_t>(g_uv), g_o.data_ptr<scalar_t>(), g_d.data_ptr<scalar_t>(),
                         g_e.data_ptr<scalar_t>(), current_stream(origins)));
#endif
    } else {
      cpu::trace_eyes_backward<scalar_t, int64_t>(
          o, d, n, e, n_eyes, t.data_ptr<scalar_t>(), eye.data_ptr<int64_t>(), region.data_ptr<int64_t>(),
          ptr_or_null<scalar_t>(g_t), ptr_or_null<scalar_t>(g_n), ptr_or_null<scalar_t>(g_r),
          ptr_or_null<scalar_t>(g_f), ptr_or_null<scalar_t>(g_ti), ptr_or_null<scalar_t>(g_uv),
          g_o.data_ptr<scalar_t>(), g_d.data_ptr<scalar_t>(), g_e.data_ptr<scalar_t>());
    }
  });
  return {g_o, g_d, g_e};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def(
      "trace_eyes(Tensor origins, Tensor dirs, Tensor eyes, bool check=True) -> "
      "(Tensor t, Tensor eye, Tensor region, Tensor normal, Tensor refr_dir, Tensor fresnel, Tensor t_iris, "
      "Tensor iris_uv)");
  m.def(
      "trace_eyes_backward(Tensor origins, Tensor dirs, Tensor eyes, Tensor t, Tensor eye, Tensor region, "
      "Tensor? grad_t, Tensor? grad_normal, Tensor? grad_refr_dir, Tensor? grad_fresnel, Tensor? grad_t_iris, "
      "Tensor? grad_iris_uv) -> (Tensor grad_origins, Tensor grad_dirs, Tensor grad_eyes)");
}

TORCH_LIBRARY_IMPL(eyefast, CPU, m) {
  m.impl("trace_eyes", &forward);
  m.impl("trace_eyes_backward", &backward);
}

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) {
  m.impl("trace_eyes", &forward);
  m.impl("trace_eyes_backward", &backward);
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
