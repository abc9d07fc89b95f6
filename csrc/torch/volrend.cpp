// torch.ops.eyefast.render_weight_from_{density,alpha}, accumulate_along_rays and their *_backward
// ops: CPU and CUDA implementations. Every op takes the per-ray segment offsets the sampler returns
// (`offsets` [n_rays + 1]); without them it finds them in the sorted ray_indices (a binary search per ray).
#include "eyefast/volrend.h"

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

// Segment offsets [n_rays + 1] of the sorted ray_indices: `given` (the sampler's) when there are some,
// else found by a binary search per ray. With `check`, ray_indices are checked (in range, sorted) and
// given offsets must equal the ones found.
at::Tensor ray_offsets(const char* op, const at::Tensor& ray_indices, int64_t n_rays, const at::Tensor& ref,
                       bool check, const std::optional<at::Tensor>& given = std::nullopt) {
  TORCH_CHECK(ray_indices.defined(), "eyefast.", op, ": ray_indices is undefined (None)");
  TORCH_CHECK_TYPE(ray_indices.scalar_type() == at::kLong, "eyefast.", op, ": ray_indices must be int64, got ",
                   ray_indices.scalar_type());
  TORCH_CHECK(ray_indices.dim() == 1 && ray_indices.size(0) == ref.size(0), "eyefast.", op,
              ": ray_indices must have shape [M] (M = ", ref.size(0), "), got ", ray_indices.sizes());
  TORCH_CHECK(ray_indices.is_contiguous(), "eyefast.", op, ": ray_indices must be contiguous");
  TORCH_CHECK(ray_indices.device() == ref.device(), "eyefast.", op, ": ray_indices must be on ", ref.device(),
              ", got ", ray_indices.device());
  TORCH_CHECK_VALUE(n_rays >= 0, "eyefast.", op, ": n_rays must be >= 0, got ", n_rays);
  if (given.has_value() && given->defined()) {
    const at::Tensor& g = *given;
    TORCH_CHECK(g.scalar_type() == at::kLong && g.dim() == 1 && g.size(0) == n_rays + 1 && g.is_contiguous() &&
                    g.device() == ref.device(),
                "eyefast.", op, ": offsets must be a contiguous int64 [n_rays + 1] (n_rays = ", n_rays,
                ") tensor on ", ref.device(), ", got ", g.scalar_type(), " ", g.sizes(), " on ", g.device());
    if (!check) return g;
  }
  at::Tensor offsets = at::empty({n_rays + 1}, ray_indices.options());
  CheckBuffer rec(ray_indices.device());
  RayOffsets f{ray_indices.data_ptr<int64_t>(), ray_indices.size(0), n_rays, offsets.data_ptr<int64_t>(),
               check ? rec.get() : nullptr};
  if (ray_indices.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
    c10::cuda::CUDAGuard guard(ray_indices.device());
    check_cuda(op, cuda::ray_offsets(f, current_stream(ray_indices)));
#endif
  } else {
    cpu::ray_offsets(f);
  }
  if (check) {
    raise_if_flagged(op, rec,
                     {{kVR_RayIndexOutOfRange, "ray_indices", "must lie in [0, n_rays)"},
                      {kVR_RayIndicesUnsorted, "ray_indices", "must be sorted ascending"}});
    if (given.has_value() && given->defined()) {
      TORCH_CHECK_VALUE(at::equal(offsets, *given), "eyefast.", op,
                        ": offsets do not match ray_indices (offsets[r] must be the first sample of ray r)");
    }
  }
  return offsets;
}

template <typename F>
void launch(const char* op, const at::Tensor& ref, int64_t n, const F& f) {
  if (ref.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
    c10::cuda::CUDAGuard guard(ref.device());
    check_cuda(op, cuda::volrend_launch(n, f, current_stream(ref)));
#endif
  } else {
    cpu::volrend_launch(n, f);
  }
}

void check_samples(const char* op, const at::Tensor& t_starts, const at::Tensor& t_ends, const at::Tensor& sigmas,
                   bool per_object) {
  check_float_dtype(op, "t_starts", t_starts);
  check_arg(op, "t_starts", t_starts, {-1}, "[M]");
  const std::string m1 = "[M] (M = " + std::to_string(t_starts.size(0)) + ")";
  check_arg(op, "t_ends", t_ends, {t_starts.size(0)}, m1.c_str(), &t_starts);
  if (per_object) {
    const std::string mk = "[M, K] (M = " + std::to_string(t_starts.size(0)) + ")";
    check_arg(op, "sigmas", sigmas, {t_starts.size(0), -1}, mk.c_str(), &t_starts);
  } else {
    check_arg(op, "sigmas", sigmas, {t_starts.size(0)}, m1.c_str(), &t_starts);
  }
}

void check_grad(const char* op, const char* name, const at::Tensor& g, at::IntArrayRef shape, const at::Tensor& ref) {
  if (g.defined()) check_arg(op, name, g, shape, "the shape of the forward output", &ref);
}

// ---- from density -------------------------------------------------------------------------
std::tuple<at::Tensor, at::Tensor, at::Tensor> density_fwd(const at::Tensor& t_starts, const at::Tensor& t_ends,
                                                           const at::Tensor& sigmas, const at::Tensor& ray_indices,
                                                           int64_t n_rays, bool check,
                                                           const std::optional<at::Tensor>& offsets) {
  const char* op = "render_weight_from_density";
  check_samples(op, t_starts, t_ends, sigmas, false);
  at::Tensor off = ray_offsets(op, ray_indices, n_rays, t_starts, check, offsets);
  at::Tensor w = prepare_output(at::empty_like(sigmas)), tr = prepare_output(at::empty_like(sigmas)),
             a = prepare_output(at::empty_like(sigmas));
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "eyefast_vr_density_fwd", [&] {
    launch(op, sigmas, n_rays,
           WeightFromDensityForward<scalar_t>{off.data_ptr<int64_t>(), t_starts.data_ptr<scalar_t>(),
                                              t_ends.data_ptr<scalar_t>(), sigmas.data_ptr<scalar_t>(),
                                              w.data_ptr<scalar_t>(), tr.data_ptr<scalar_t>(), a.data_ptr<scalar_t>()});
  });
  return {w, tr, a};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> density_bwd(
    const at::Tensor& t_starts, const at::Tensor& t_ends, const at::Tensor& sigmas, const at::Tensor& ray_indices,
    int64_t n_rays, const at::Tensor& trans, const std::optional<at::Tensor>& g_w_in,
    const std::optional<at::Tensor>& g_t_in, const std::optional<at::Tensor>& g_a_in, bool t_grads,
    const std::optional<at::Tensor>& offsets) {
  const char* op = "render_weight_from_density_backward";
  check_samples(op, t_starts, t_ends, sigmas, false);
  at::Tensor off = ray_offsets(op, ray_indices, n_rays, t_starts, false, offsets);
  at::Tensor g_w = grad_or_undefined(g_w_in), g_t = grad_or_undefined(g_t_in), g_a = grad_or_undefined(g_a_in);
  check_grad(op, "transmittance", trans, sigmas.sizes(), sigmas);
  check_grad(op, "grad_weights", g_w, sigmas.sizes(), sigmas);
  check_grad(op, "grad_transmittance", g_t, sigmas.sizes(), sigmas);
  check_grad(op, "grad_alphas", g_a, sigmas.sizes(), sigmas);
  at::Tensor gs = prepare_output(at::empty_like(sigmas));
  at::Tensor gts = t_grads ? prepare_output(at::empty_like(t_starts)) : at::empty({0}, t_starts.options());
  at::Tensor gte = t_grads ? prepare_output(at::empty_like(t_starts)) : at::empty({0}, t_starts.options());
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "eyefast_vr_density_bwd", [&] {
    launch(op, sigmas, n_rays,
           WeightFromDensityBackward<scalar_t>{
               off.data_ptr<int64_t>(), t_starts.data_ptr<scalar_t>(), t_ends.data_ptr<scalar_t>(),
               sigmas.data_ptr<scalar_t>(), trans.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(g_w),
               ptr_or_null<scalar_t>(g_t), ptr_or_null<scalar_t>(g_a), t_grads ? gts.data_ptr<scalar_t>() : nullptr,
               t_grads ? gte.data_ptr<scalar_t>() : nullptr, gs.data_ptr<scalar_t>()});
  });
  return {gts, gte, gs};
}

// ---- from alpha ---------------------------------------------------------------------------
std::tuple<at::Tensor, at::Tensor> alpha_fwd(const at::Tensor& alphas, const at::Tensor& ray_indices, int64_t n_rays,
                                             bool check, const std::optional<at::Tensor>& offsets) {
  const char* op = "render_weight_from_alpha";
  check_float_dtype(op, "alphas", alphas);
  check_arg(op, "alphas", alphas, {-1}, "[M]");
  at::Tensor off = ray_offsets(op, ray_indices, n_rays, alphas, check, offsets);
  at::Tensor w = prepare_output(at::empty_like(alphas)), tr = prepare_output(at::empty_like(alphas));
  AT_DISPATCH_FLOATING_TYPES(alphas.scalar_type(), "eyefast_vr_alpha_fwd", [&] {
    launch(op, alphas, n_rays,
           WeightFromAlphaForward<scalar_t>{off.data_ptr<int64_t>(), alphas.data_ptr<scalar_t>(),
                                            w.data_ptr<scalar_t>(), tr.data_ptr<scalar_t>()});
  });
  return {w, tr};
}

at::Tensor alpha_bwd(const at::Tensor& alphas, const at::Tensor& ray_indices, int64_t n_rays, const at::Tensor& trans,
                     const std::optional<at::Tensor>& g_w_in, const std::optional<at::Tensor>& g_t_in,
                     const std::optional<at::Tensor>& offsets) {
  const char* op = "render_weight_from_alpha_backward";
  check_float_dtype(op, "alphas", alphas);
  check_arg(op, "alphas", alphas, {-1}, "[M]");
  at::Tensor off = ray_offsets(op, ray_indices, n_rays, alphas, false, offsets);
  at::Tensor g_w = grad_or_undefined(g_w_in), g_t = grad_or_undefined(g_t_in);
  check_grad(op, "transmittance", trans, alphas.sizes(), alphas);
  check_grad(op, "grad_weights", g_w, alphas.sizes(), alphas);
  check_grad(op, "grad_transmittance", g_t, alphas.sizes(), alphas);
  at::Tensor ga = prepare_output(at::empty_like(alphas));
  AT_DISPATCH_FLOATING_TYPES(alphas.scalar_type(), "eyefast_vr_alpha_bwd", [&] {
    launch(op, alphas, n_rays,
           WeightFromAlphaBackward<scalar_t>{off.data_ptr<int64_t>(), alphas.data_ptr<scalar_t>(),
                                             trans.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(g_w),
                                             ptr_or_null<scalar_t>(g_t), ga.data_ptr<scalar_t>()});
  });
  return ga;
}

// ---- accumulate ---------------------------------------------------------------------------
at::Tensor accumulate_fwd(const at::Tensor& weights, const std::optional<at::Tensor>& values_in,
                          const at::Tensor& ray_indices, int64_t n_rays, bool check,
                          const std::optional<at::Tensor>& offsets) {
  const char* op = "accumulate_along_rays";
  check_float_dtype(op, "weights", weights);
  check_arg(op, "weights", weights, {-1}, "[M]");
  at::Tensor values = values_in.has_value() ? *values_in : at::Tensor();
  if (values.defined()) {
    const std::string mc = "[M, C] (M = " + std::to_string(weights.size(0)) + ")";
    check_arg(op, "values", values, {weights.size(0), -1}, mc.c_str(), &weights);
  }
  const int64_t c = values.defined() ? values.size(1) : 1;
  at::Tensor off = ray_offsets(op, ray_indices, n_rays, weights, check, offsets);
  at::Tensor out = prepare_output(at::empty({n_rays, c}, weights.options()));
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "eyefast_vr_acc_fwd", [&] {
    launch(op, weights, n_rays * c,
           AccumulateForward<scalar_t>{off.data_ptr<int64_t>(), weights.data_ptr<scalar_t>(),
                                       ptr_or_null<scalar_t>(values), c, out.data_ptr<scalar_t>()});
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> accumulate_bwd(const at::Tensor& weights, const std::optional<at::Tensor>& values_in,
                                                  const at::Tensor& ray_indices, int64_t n_rays,
                                                  const at::Tensor& g_out_in) {
  const char* op = "accumulate_along_rays_backward";
  check_float_dtype(op, "weights", weights);
  check_arg(op, "weights", weights, {-1}, "[M]");
  at::Tensor values = values_in.has_value() ? *values_in : at::Tensor();
  const int64_t c = values.defined() ? values.size(1) : 1;
  if (values.defined()) check_arg(op, "values", values, {weights.size(0), c}, "[M, C]", &weights);
  at::Tensor g_out = g_out_in.contiguous();
  check_arg(op, "grad_out", g_out, {n_rays, c}, "[n_rays, C]", &weights);
  TORCH_CHECK(ray_indices.scalar_type() == at::kLong && ray_indices.dim() == 1 &&
                  ray_indices.size(0) == weights.size(0) && ray_indices.is_contiguous() &&
                  ray_indices.device() == weights.device(),
              "eyefast.", op, ": ray_indices must be a contiguous int64 [M] tensor on ", weights.device());
  TORCH_CHECK_VALUE(n_rays >= 0, "eyefast.", op, ": n_rays must be >= 0, got ", n_rays);
  at::Tensor gw = prepare_output(at::empty_like(weights));
  at::Tensor gv = values.defined() ? prepare_output(at::empty_like(values)) : at::zeros({0}, weights.options());
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "eyefast_vr_acc_bwd", [&] {
    launch(op, weights, weights.size(0),
           AccumulateBackward<scalar_t>{ray_indices.data_ptr<int64_t>(), n_rays, weights.data_ptr<scalar_t>(),
                                        ptr_or_null<scalar_t>(values), c, g_out.data_ptr<scalar_t>(),
                                        gw.data_ptr<scalar_t>(), values.defined() ? gv.data_ptr<scalar_t>() : nullptr});
  });
  return {gw, gv};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def(
      "render_weight_from_density(Tensor t_starts, Tensor t_ends, Tensor sigmas, Tensor ray_indices, int n_rays, "
      "bool check=True, Tensor? offsets=None) -> (Tensor weights, Tensor transmittance, Tensor alphas)");
  m.def(
      "render_weight_from_density_backward(Tensor t_starts, Tensor t_ends, Tensor sigmas, Tensor ray_indices, "
      "int n_rays, Tensor transmittance, Tensor? grad_weights, Tensor? grad_transmittance, Tensor? grad_alphas, "
      "bool t_grads=True, Tensor? offsets=None) -> (Tensor grad_t_starts, Tensor grad_t_ends, Tensor grad_sigmas)");
  m.def(
      "render_weight_from_alpha(Tensor alphas, Tensor ray_indices, int n_rays, bool check=True, "
      "Tensor? offsets=None) -> (Tensor weights, Tensor transmittance)");
  m.def(
      "render_weight_from_alpha_backward(Tensor alphas, Tensor ray_indices, int n_rays, Tensor transmittance, "
      "Tensor? grad_weights, Tensor? grad_transmittance, Tensor? offsets=None) -> Tensor");
  m.def(
      "accumulate_along_rays(Tensor weights, Tensor? values, Tensor ray_indices, int n_rays, bool check=True, "
      "Tensor? offsets=None) -> Tensor");
  m.def(
      "accumulate_along_rays_backward(Tensor weights, Tensor? values, Tensor ray_indices, int n_rays, "
      "Tensor grad_out) -> (Tensor grad_weights, Tensor grad_values)");
}

#define EF_IMPLS(m)                                                   \
  m.impl("render_weight_from_density", &density_fwd);                 \
  m.impl("render_weight_from_density_backward", &density_bwd);        \
  m.impl("render_weight_from_alpha", &alpha_fwd);                     \
  m.impl("render_weight_from_alpha_backward", &alpha_bwd);            \
  m.impl("accumulate_along_rays", &accumulate_fwd);                   \
  m.impl("accumulate_along_rays_backward", &accumulate_bwd);

TORCH_LIBRARY_IMPL(eyefast, CPU, m) { EF_IMPLS(m) }

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) { EF_IMPLS(m) }
#endif
#undef EF_IMPLS

}  // namespace torch_ext
}  // namespace eyefast
