// torch.ops.eyefast.rasterize, interpolate, interpolate_backward: CPU and CUDA implementations.
#include "eyefast/raster.h"

#include "utils.h"

namespace eyefast {
namespace torch_ext {
namespace {

// faces: int32 or int64 [F, 3] on `ref`'s device; its dtype picks the kernels' index type.
void check_faces(const char* op, const at::Tensor& faces, const at::Tensor& ref) {
  TORCH_CHECK(faces.defined(), "eyefast.", op, ": faces is undefined (None)");
  TORCH_CHECK_TYPE(faces.scalar_type() == at::kInt || faces.scalar_type() == at::kLong, "eyefast.", op,
                   ": faces must be int32 or int64, got ", faces.scalar_type());
  TORCH_CHECK(faces.device() == ref.device(), "eyefast.", op, ": faces must be on ", ref.device(),
              " like the first argument, got ", faces.device());
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3, "eyefast.", op, ": faces must have shape [F, 3], got ",
              faces.sizes());
  TORCH_CHECK(faces.is_contiguous(), "eyefast.", op, ": faces must be contiguous (call .contiguous() first)");
  TORCH_CHECK(faces.size(0) < INT32_MAX, "eyefast.", op, ": too many faces (", faces.size(0), "); at most ",
              INT32_MAX - 1);
}

// Calls fn.template operator()<I>() with I = int32_t or int64_t per faces' dtype.
template <class Fn>
void dispatch_index(const at::Tensor& faces, const Fn& fn) {
  if (faces.scalar_type() == at::kInt) {
    fn(int32_t{});
  } else {
    fn(int64_t{});
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize(const at::Tensor& verts_clip, const at::Tensor& faces,
                                                         int64_t height, int64_t width, bool check) {
  const char* op = "rasterize";
  check_float_dtype(op, "verts_clip", verts_clip);
  check_arg(op, "verts_clip", verts_clip, {-1, 4}, "[V, 4]");
  check_faces(op, faces, verts_clip);
  TORCH_CHECK_VALUE(height >= 0 && height <= kRasterMaxSize, "eyefast.rasterize: height must be in [0, ",
                    kRasterMaxSize, "], got ", height);
  TORCH_CHECK_VALUE(width >= 0 && width <= kRasterMaxSize, "eyefast.rasterize: width must be in [0, ",
                    kRasterMaxSize, "], got ", width);
  const int64_t v = verts_clip.size(0), f = faces.size(0), n_pix = height * width;
  auto opts = verts_clip.options();
  at::Tensor pix_to_face = prepare_output(at::empty({height, width}, opts.dtype(at::kInt)));
  at::Tensor bary = prepare_output(at::empty({height, width, 3}, opts));
  at::Tensor depth = prepare_output(at::empty({height, width}, opts));
  at::Tensor keys = at::empty({n_pix}, opts.dtype(at::kLong));  // scratch: 64-bit depth/face keys
  hugepage_hint(keys);
  CheckBuffer rec(verts_clip.device());
  CheckRecord* rec_ptr = check ? rec.get() : nullptr;
  auto* kp = reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>());
  AT_DISPATCH_FLOATING_TYPES(verts_clip.scalar_type(), "eyefast_rasterize", [&] {
    dispatch_index(faces, [&](auto tag) {
      using I = decltype(tag);
      const auto* vp = verts_clip.data_ptr<scalar_t>();
      const I* fp = faces.data_ptr<I>();
      if (verts_clip.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
        c10::cuda::CUDAGuard guard(verts_clip.device());
        check_cuda(op, cuda::rasterize<scalar_t, I>(vp, v, fp, f, static_cast<int32_t>(height),
                                                    static_cast<int32_t>(width), kp, pix_to_face.data_ptr<int32_t>(),
                                                    bary.data_ptr<scalar_t>(), depth.data_ptr<scalar_t>(), rec_ptr,
                                                    current_stream(verts_clip)));
#endif
      } else {
        cpu::rasterize<scalar_t, I>(vp, v, fp, f, static_cast<int32_t>(height), static_cast<int32_t>(width), kp,
                                    pix_to_face.data_ptr<int32_t>(), bary.data_ptr<scalar_t>(),
                                    depth.data_ptr<scalar_t>(), rec_ptr);
      }
    });
  });
  if (check) raise_if_flagged(op, rec, {{kRA_FacesOutOfRange, "faces", "has a vertex index outside [0, V)"}});
  return {pix_to_face, bary, depth};
}

// pix_to_face [...] int32, bary [..., 3]; returns P = numel(pix_to_face).
int64_t check_pixels(const char* op, const at::Tensor& attrs, const at::Tensor& pix_to_face, const at::Tensor& bary) {
  TORCH_CHECK(pix_to_face.defined(), "eyefast.", op, ": pix_to_face is undefined (None)");
  TORCH_CHECK_TYPE(pix_to_face.scalar_type() == at::kInt, "eyefast.", op,
                   ": pix_to_face must be int32 (as rasterize returns it), got ", pix_to_face.scalar_type());
  TORCH_CHECK(pix_to_face.device() == attrs.device(), "eyefast.", op, ": pix_to_face must be on ", attrs.device(),
              " like the first argument, got ", pix_to_face.device());
  TORCH_CHECK(pix_to_face.is_contiguous(), "eyefast.", op, ": pix_to_face must be contiguous");
  std::vector<int64_t> bshape(pix_to_face.sizes().begin(), pix_to_face.sizes().end());
  bshape.push_back(3);
  std::string text = "[..., 3] with ... = pix_to_face's shape " + c10::str(pix_to_face.sizes());
  check_arg(op, "bary", bary, bshape, text.c_str(), &attrs);
  return pix_to_face.numel();
}

at::Tensor interpolate(const at::Tensor& attrs, const at::Tensor& faces, const at::Tensor& pix_to_face,
                       const at::Tensor& bary, bool check) {
  const char* op = "interpolate";
  check_float_dtype(op, "attrs", attrs);
  check_arg(op, "attrs", attrs, {-1, -1}, "[V, C]");
  check_faces(op, faces, attrs);
  const int64_t p = check_pixels(op, attrs, pix_to_face, bary);
  const int64_t v = attrs.size(0), c = attrs.size(1), f = faces.size(0);
  std::vector<int64_t> oshape(pix_to_face.sizes().begin(), pix_to_face.sizes().end());
  oshape.push_back(c);
  at::Tensor out = prepare_output(at::empty(oshape, attrs.options()));
  CheckBuffer rec(attrs.device());
  CheckRecord* rec_ptr = check ? rec.get() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(attrs.scalar_type(), "eyefast_interpolate", [&] {
    dispatch_index(faces, [&](auto tag) {
      using I = decltype(tag);
      const auto* ap = attrs.data_ptr<scalar_t>();
      const I* fp = faces.data_ptr<I>();
      const int32_t* pp = pix_to_face.data_ptr<int32_t>();
      const auto* bp = bary.data_ptr<scalar_t>();
      if (attrs.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
        c10::cuda::CUDAGuard guard(attrs.device());
        check_cuda(op, cuda::interpolate_forward<scalar_t, I>(ap, v, c, fp, f, pp, bp, p, out.data_ptr<scalar_t>(),
                                                              rec_ptr, current_stream(attrs)));
#endif
      } else {
        cpu::interpolate_forward<scalar_t, I>(ap, v, c, fp, f, pp, bp, p, out.data_ptr<scalar_t>(), rec_ptr);
      }
    });
  });
  if (check) {
    raise_if_flagged(op, rec,
                     {{kIP_PixToFaceOutOfRange, "pix_to_face", "must lie in [-1, F)"},
                      {kIP_FacesOutOfRange, "faces", "has a vertex index outside [0, V)"}});
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_backward(const at::Tensor& attrs, const at::Tensor& faces,
                                                        const at::Tensor& pix_to_face, const at::Tensor& bary,
                                                        const at::Tensor& grad_out_in) {
  const char* op = "interpolate_backward";
  check_float_dtype(op, "attrs", attrs);
  check_arg(op, "attrs", attrs, {-1, -1}, "[V, C]");
  check_faces(op, faces, attrs);
  const int64_t p = check_pixels(op, attrs, pix_to_face, bary);
  const int64_t v = attrs.size(0), c = attrs.size(1), f = faces.size(0);
  at::Tensor grad_out = grad_out_in.contiguous();
  std::vector<int64_t> oshape(pix_to_face.sizes().begin(), pix_to_face.sizes().end());
  oshape.push_back(c);
  check_arg(op, "grad_out", grad_out, oshape, "the shape of the forward output", &attrs);
  at::Tensor g_attrs = prepare_output(at::empty_like(attrs));
  at::Tensor g_bary = prepare_output(at::empty_like(bary));
  AT_DISPATCH_FLOATING_TYPES(attrs.scalar_type(), "eyefast_interpolate_bwd", [&] {
    dispatch_index(faces, [&](auto tag) {
      using I = decltype(tag);
      const auto* ap = attrs.data_ptr<scalar_t>();
      const I* fp = faces.data_ptr<I>();
      const int32_t* pp = pix_to_face.data_ptr<int32_t>();
      const auto* bp = bary.data_ptr<scalar_t>();
      const auto* gp = grad_out.data_ptr<scalar_t>();
      if (attrs.is_cuda()) {
#ifdef EYEFAST_WITH_CUDA
        c10::cuda::CUDAGuard guard(attrs.device());
        check_cuda(op, cuda::interpolate_backward<scalar_t, I>(ap, v, c, fp, f, pp, bp, p, gp,
                                                               g_attrs.data_ptr<scalar_t>(),
                                                               g_bary.data_ptr<scalar_t>(), current_stream(attrs)));
#endif
      } else {
        cpu::interpolate_backward<scalar_t, I>(ap, v, c, fp, f, pp, bp, p, gp, g_attrs.data_ptr<scalar_t>(),
                                               g_bary.data_ptr<scalar_t>());
      }
    });
  });
  return {g_attrs, g_bary};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(eyefast, m) {
  m.def(
      "rasterize(Tensor verts_clip, Tensor faces, int height, int width, bool check=True) -> "
      "(Tensor pix_to_face, Tensor bary, Tensor depth)");
  m.def("interpolate(Tensor attrs, Tensor faces, Tensor pix_to_face, Tensor bary, bool check=True) -> Tensor");
  m.def(
      "interpolate_backward(Tensor attrs, Tensor faces, Tensor pix_to_face, Tensor bary, Tensor grad_out) -> "
      "(Tensor grad_attrs, Tensor grad_bary)");
}

TORCH_LIBRARY_IMPL(eyefast, CPU, m) {
  m.impl("rasterize", &rasterize);
  m.impl("interpolate", &interpolate);
  m.impl("interpolate_backward", &interpolate_backward);
}

#ifdef EYEFAST_WITH_CUDA
TORCH_LIBRARY_IMPL(eyefast, CUDA, m) {
  m.impl("rasterize", &rasterize);
  m.impl("interpolate", &interpolate);
  m.impl("interpolate_backward", &interpolate_backward);
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
