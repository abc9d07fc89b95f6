// torch.ops.eyefast.sh_encode{,_backward}: CPU and CUDA implementations.
#include "eyefast/sh.h"

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

void check_degree(const char* op, int64_t degree) {
  TORCH_CHECK_VALUE(degree >= 1 && degree <= 4, "eyefast.", op, ": degree must be 1..4, got ", degree);
}

at::Tensor forward(const at::Tensor& dirs, int64_t degree) {
  constexpr const char* kOp = "sh_encode";
  check_float_dtype(kOp, "dirs", dirs);
  check_arg(kOp, "dirs", dirs, {-1, 3}, "[N, 3]");
  check_degree(kOp, degree);
  const int64_t n = dirs.size(0);
  at::Tensor out = at::empty({n, degree * degree}, dirs.options());
  AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "eyefast_sh_fwd", [&] {
    if (dirs.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(dirs.device());
      check_cuda(kOp, cuda::sh_encode_forward<scalar_t>(dirs.data_ptr<scalar_t>(), n, static_cast<int32_t>(degree),
                                                        out.data_ptr<scalar_t>(), current_stream(dirs)));
#endif
    } else {
      cpu::sh_encode_forward<scalar_t>(dirs.data_ptr<scalar_t>(), n, static_cast<int32_t>(degree),
                                       out.data_ptr<scalar_t>());
    }
  });
  return out;
}

at::Tensor backward(const at::Tensor& grad_out_in, const at::Tensor& dirs, int64_t degree) {
  constexpr const char* kOp = "sh_encode_backward";
  check_float_dtype(kOp, "dirs", dirs);
  check_arg(kOp, "dirs", dirs, {-1, 3}, "[N, 3]");
  check_degree(kOp, degree);
  const int64_t n = dirs.size(0);
  const at::Tensor grad_out = grad_out_in.contiguous();
  check_arg(kOp, "grad_out", grad_out, {n, degree * degree}, "[N, degree^2]", &dirs);
  at::Tensor g = at::empty_like(dirs);
  AT_DISPATCH_FLOATING_TYPES(dirs.scalar_type(), "eyefast_sh_bwd", [&] {
    if (dirs.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
      c10::cuda::CUDAGuard guard(dirs.device());
      check_cuda(kOp, cuda::sh_encode_backward<scalar_t>(dirs.data_ptr<scalar_t>(), n, static_cast<int32_t>(degree),
                                                         grad_out.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                                                         current_stream(dirs)));
#endif
    } else {
      cpu::sh_encode_backward<scalar_t>(dirs.data_ptr<scalar_t>(), n, static_cast<int32_t>(degree),
                                        grad_out.data_ptr<scalar_t>(), g.data_ptr<scalar_t>());
    }
  });
  return g;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def("sh_encode(Tensor dirs, int degree=4) -> Tensor");
  m.def("sh_encode_backward(Tensor grad_out, Tensor dirs, int degree) -> Tensor");
}

TORCH_LIBRARY_IMPL(eyefast, CPU, m) {
  m.impl("sh_encode", &forward);
  m.impl("sh_encode_backward", &backward);
}

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) {
  m.impl("sh_encode", &forward);
  m.impl("sh_encode_backward", &backward);
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
