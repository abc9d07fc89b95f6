// torch.ops.eyefast.occupancy_sampling: on CUDA count pass, cumsum, fill pass; on the CPU one
// march that records each ray's runs of steps, then their expansion (cpu::OccupancyOnePass).
#include "eyefast/occupancy.h"

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

constexpr const char* kOp = "occupancy_sampling";

template <typename T>
void run(const OccupancyMarch<T>& f, const at::Tensor& ref, int64_t n) {
  if (ref.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
    c10::cuda::CUDAGuard guard(ref.device());
    check_cuda(kOp, cuda::occupancy_march(f, n, current_stream(ref)));
#endif
  } else {
    cpu::occupancy_march(f, n);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sampling(
    const at::Tensor& rays_o, const at::Tensor& rays_d, const std::optional<at::Tensor>& t_min_in,
    const std::optional<at::Tensor>& t_max_in, const std::optional<at::Tensor>& u_in, const at::Tensor& bitfield,
    const std::optional<at::Tensor>& coarse_in, int64_t block, const at::Tensor& level_aabbs, int64_t resolution, double near_plane, double far_plane, double step,
    double cone_angle, bool check) {
  check_float_dtype(kOp, "rays_o", rays_o);
  check_arg(kOp, "rays_o", rays_o, {-1, 3}, "[N, 3]");
  const int64_t n = rays_o.size(0);
  const std::string n3 = "[N, 3] (N = " + std::to_string(n) + ")", n1 = "[N] (N = " + std::to_string(n) + ")";
  check_arg(kOp, "rays_d", rays_d, {n, 3}, n3.c_str(), &rays_o);
  at::Tensor t_min = t_min_in.has_value() ? *t_min_in : at::Tensor();
  at::Tensor t_max = t_max_in.has_value() ? *t_max_in : at::Tensor();
  at::Tensor u = u_in.has_value() ? *u_in : at::Tensor();
  if (t_min.defined()) check_arg(kOp, "t_min", t_min, {n}, n1.c_str(), &rays_o);
  if (t_max.defined()) check_arg(kOp, "t_max", t_max, {n}, n1.c_str(), &rays_o);
  if (u.defined()) check_arg(kOp, "u", u, {n}, n1.c_str(), &rays_o);
  check_arg(kOp, "level_aabbs", level_aabbs, {-1, 6}, "[L, 6]", &rays_o);
  const int64_t levels = level_aabbs.size(0);
  TORCH_CHECK_VALUE(levels >= 1 && resolution >= 1, "eyefast.", kOp, ": need levels >= 1 and resolution >= 1");
  TORCH_CHECK(bitfield.scalar_type() == at::kByte && bitfield.dim() == 1 && bitfield.is_contiguous() &&
                  bitfield.device() == rays_o.device(),
              "eyefast.", kOp, ": bitfield must be a contiguous uint8 [ceil(L R^3 / 8)] tensor on ", rays_o.device());
  const int64_t bits = levels * resolution * resolution * resolution;
  TORCH_CHECK(bitfield.size(0) * 8 >= bits, "eyefast.", kOp, ": bitfield has ", bitfield.size(0),
              " bytes, need ", (bits + 7) / 8);
  at::Tensor coarse = coarse_in.has_value() ? *coarse_in : at::Tensor();
  if (coarse.defined()) {
    TORCH_CHECK_VALUE(block >= 1 && block <= INT32_MAX, "eyefast.", kOp, ": block must be in [1, 2^31 - 1], got ",
                      block);
    const int64_t rc = (resolution + block - 1) / block;
    TORCH_CHECK(coarse.scalar_type() == at::kByte && coarse.dim() == 1 && coarse.is_contiguous() &&
                    coarse.device() == rays_o.device() && coarse.size(0) * 8 >= levels * rc * rc * rc,
                "eyefast.", kOp, ": coarse must be a contiguous uint8 [ceil(L Rc^3 / 8)] tensor on ", rays_o.device());
  }
  TORCH_CHECK_VALUE(step > 0 && std::isfinite(step), "eyefast.", kOp, ": render_step_size must be > 0, got ", step);
  TORCH_CHECK_VALUE(cone_angle >= 0, "eyefast.", kOp, ": cone_angle must be >= 0, got ", cone_angle);
  at::Tensor counts = at::empty({n}, rays_o.options().dtype(at::kLong));
  at::Tensor ri, ts, te;
  // the per-ray segment offsets [n + 1] (nerfacc's packed_info): the volume-rendering ops take them
  at::Tensor packed = at::zeros({n + 1}, counts.options());
  CheckBuffer rec(rays_o.device());
  AT_DISPATCH_FLOATING_TYPES(rays_o.scalar_type(), "eyefast_occ_sampling", [&] {
    OccupancyMarch<scalar_t> f{rays_o.data_ptr<scalar_t>(),
                               rays_d.data_ptr<scalar_t>(),
                               ptr_or_null<scalar_t>(t_min),
                               ptr_or_null<scalar_t>(t_max),
                               ptr_or_null<scalar_t>(u),
                               bitfield.data_ptr<uint8_t>(),
                               coarse.defined() ? coarse.data_ptr<uint8_t>() : nullptr,
                               static_cast<int32_t>(block),
                               level_aabbs.data_ptr<scalar_t>(),
                               static_cast<int32_t>(levels),
                               static_cast<int32_t>(resolution),
                               static_cast<scalar_t>(near_plane),
                               static_cast<scalar_t>(far_plane),
                               static_cast<scalar_t>(step),
                               static_cast<scalar_t>(cone_angle),
                               counts.data_ptr<int64_t>(),
                               nullptr,
                               nullptr,
                               nullptr,
                               nullptr,
                               check ? rec.get() : nullptr};
    if (!rays_o.is_cuda()) {
      // CPU: one march recording runs, then their expansion (cpu::OccupancyOnePass).
      cpu::OccupancyOnePass<scalar_t> one;
      const int64_t total = one.march(f, n);
      if (check) {
        raise_if_flagged(kOp, rec,
                         {{kOC_OriginsNonFinite, "rays_o", "has a non-finite value"},
                          {kOC_DirsNonFinite, "rays_d", "has a non-finite value"},
                          {kOC_DirsZero, "rays_d", "has a zero-length direction"}});
      }
      ri = prepare_output(at::empty({total}, counts.options()));
      ts = prepare_output(at::empty({total}, rays_o.options()));
      te = prepare_output(at::empty({total}, rays_o.options()));
      one.write(ri.data_ptr<int64_t>(), ts.data_ptr<scalar_t>(), te.data_ptr<scalar_t>());
      if (n) {
        at::Tensor inclusive = packed.slice(0, 1);
        at::cumsum_out(inclusive, counts, 0);
      }
      return;
    }
    run(f, rays_o, n);
    if (check) {
      raise_if_flagged(kOp, rec,
                       {{kOC_OriginsNonFinite, "rays_o", "has a non-finite value"},
                        {kOC_DirsNonFinite, "rays_d", "has a non-finite value"},
                        {kOC_DirsZero, "rays_d", "has a zero-length direction"}});
    }
    at::Tensor inclusive = packed.slice(0, 1);
    if (n) at::cumsum_out(inclusive, counts, 0);
    const int64_t total = n ? inclusive[n - 1].item<int64_t>() : 0;
    at::Tensor offsets = inclusive - counts;
    ri = prepare_output(at::empty({total}, counts.options()));
    ts = prepare_output(at::empty({total}, rays_o.options()));
    te = prepare_output(at::empty({total}, rays_o.options()));
    f.counts = nullptr;
    f.check = nullptr;
    f.offsets = offsets.data_ptr<int64_t>();
    f.ray_indices = ri.data_ptr<int64_t>();
    f.t_starts = ts.data_ptr<scalar_t>();
    f.t_ends = te.data_ptr<scalar_t>();
    run(f, rays_o, n);
  });
  return {ri, ts, te, packed};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def(
      "occupancy_sampling(Tensor rays_o, Tensor rays_d, Tensor? t_min, Tensor? t_max, Tensor? u, Tensor bitfield, "
      "Tensor? coarse, int block, Tensor level_aabbs, int resolution, float near_plane, float far_plane, float render_step_size, "
      "float cone_angle, bool check=True) -> (Tensor ray_indices, Tensor t_starts, Tensor t_ends, Tensor offsets)");
}

TORCH_LIBRARY_IMPL(eyefast, CPU, m) { m.impl("occupancy_sampling", &sampling); }

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) { m.impl("occupancy_sampling", &sampling); }
#endif

}  // namespace torch_ext
}  // namespace eyefast
