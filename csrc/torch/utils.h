// Shared helpers of the torch bindings: argument checks that name the argument, the
// per-row CheckRecord round trip, and the CUDA stream. The only torch-dependent code in eyefast
// lives in csrc/torch/; the kernels it calls are torch-free (csrc/include, csrc/cpu, csrc/cuda).
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstdint>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "eyefast/common.h"

#ifdef EYEFAST_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace eyefast {
namespace torch_ext {

// Checks one tensor argument: floating dtype equal to `ref_dtype` (when given), device equal to
// `ref` (when given), contiguity, and the shape pattern (-1 = any size). Errors name the op and
// the argument, e.g. "eyefast.refract: normals must have shape [N, 3] (N = 5), got [5, 2]".
inline void check_arg(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef shape,
                      const char* shape_text, const at::Tensor* ref = nullptr) {
  TORCH_CHECK(t.defined(), "eyefast.", op, ": ", name, " is undefined (None)");
  if (ref) {
    TORCH_CHECK_TYPE(t.scalar_type() == ref->scalar_type(), "eyefast.", op, ": ", name, " must have dtype ",
                     ref->scalar_type(), " like the first argument, got ", t.scalar_type());
    TORCH_CHECK(t.device() == ref->device(), "eyefast.", op, ": ", name, " must be on ", ref->device(),
                " like the first argument, got ", t.device());
  }
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  for (size_t k = 0; ok && k < shape.size(); ++k) ok = shape[k] < 0 || t.size(static_cast<int64_t>(k)) == shape[k];
  TORCH_CHECK(ok, "eyefast.", op, ": ", name, " must have shape ", shape_text, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "eyefast.", op, ": ", name,
              " must be contiguous (call .contiguous() first); got strides ", t.strides());
}

inline void check_float_dtype(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "eyefast.", op, ": ", name,
                   " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.device().is_cpu() || t.device().is_cuda(), "eyefast.", op, ": ", name,
              " must be a CPU or CUDA tensor, got ", t.device());
#ifndef EYEFAST_WITH_CUDA
  TORCH_CHECK(!t.device().is_cuda(), "eyefast.", op, ": ", name,
              " is a CUDA tensor but this eyefast build has no CUDA kernels (rebuild with EYEFAST_CUDA=1)");
#endif
}

// Checks an `out=` buffer: dtype, device and exact shape (no resizing), contiguous, and sharing no
// memory with any of `inputs` or of the outputs checked before it (`earlier`). Errors name it,
// e.g. "eyefast.refract: out tensor reflectance must have shape [N] (N = 5), got [4]".
inline void check_out(const char* op, const char* name, const at::Tensor& out, at::ScalarType dtype,
                      at::IntArrayRef shape, const char* shape_text, const at::Tensor& like,
                      const std::vector<std::pair<const char*, const at::Tensor*>>& others) {
  TORCH_CHECK_TYPE(out.scalar_type() == dtype, "eyefast.", op, ": out tensor ", name, " must have dtype ", dtype,
                   ", got ", out.scalar_type());
  TORCH_CHECK(out.device() == like.device(), "eyefast.", op, ": out tensor ", name, " must be on ", like.device(),
              " like the inputs, got ", out.device());
  TORCH_CHECK(out.sizes() == shape, "eyefast.", op, ": out tensor ", name, " must have shape ", shape_text,
              ", got ", out.sizes());
  TORCH_CHECK(out.is_contiguous(), "eyefast.", op, ": out tensor ", name, " must be contiguous");
  if (out.numel() == 0) return;
  const auto* b = static_cast<const char*>(out.data_ptr());
  const auto* e = b + out.nbytes();
  for (const auto& other : others) {
    const at::Tensor& t = *other.second;
    if (!t.defined() || t.numel() == 0 || !t.has_storage()) continue;
    const auto* tb = static_cast<const char*>(t.data_ptr());
    const auto* te = tb + t.nbytes();
    TORCH_CHECK(e <= tb || te <= b, "eyefast.", op, ": out tensor ", name, " shares memory with ", other.first,
                " (out= buffers must not overlap the inputs or each other)");
  }
}

// EYEFAST_POISON=1 (set by the test suite): outputs are filled with NaN (floats) or a sentinel
// (integers) before each launch, so that any element a kernel fails to write shows up.
inline bool poison_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("EYEFAST_POISON");
    return v && v[0] == '1';
  }();
  return on;
}
// Large CPU outputs: ask for transparent huge pages before the first touch (where the kernel's
// THP mode is "madvise", the default on many distributions). A fresh multi-MB output otherwise
// costs one page fault per 4 KiB, which dominated the eye kernels' CPU time (44 -> 30 ms for
// ray_sphere_intersect on 4M rays). A hint only: ignored where unsupported.
inline void hugepage_hint(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t bytes = t.nbytes();
  if (!t.device().is_cpu() || bytes < (size_t(4) << 20)) return;
  const uintptr_t huge = uintptr_t(2) << 20;
  uintptr_t b = (reinterpret_cast<uintptr_t>(t.data_ptr()) + huge - 1) & ~(huge - 1);
  uintptr_t e = (reinterpret_cast<uintptr_t>(t.data_ptr()) + bytes) & ~(huge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

// Every op output goes through here: the huge-page hint, then the optional poison.
inline at::Tensor prepare_output(at::Tensor t) {
  hugepage_hint(t);
  if (!poison_enabled() || t.numel() == 0) return t;
  if (at::isFloatingType(t.scalar_type())) {
    t.fill_(std::numeric_limits<double>::quiet_NaN());
  } else if (t.scalar_type() == at::kBool) {
    t.fill_(true);
  } else {
    t.fill_(0x5EADBEEF);
  }
  return t;
}

// Contiguous view of an optional gradient (autograd may hand over expanded, stride-0 tensors).
inline at::Tensor grad_or_undefined(const std::optional<at::Tensor>& g) {
  if (!g.has_value() || !g->defined()) return at::Tensor();
  return g->contiguous();
}
template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// A CheckRecord for one launch: host memory on the CPU, device memory on CUDA.
struct CheckBuffer {
  static_assert(sizeof(CheckRecord) == sizeof(int64_t) * (1 + kCheckFlags), "CheckRecord layout");
  at::Tensor storage;  // int64 [1 + kCheckFlags]
  explicit CheckBuffer(const at::Device& dev)
      : storage(at::empty({1 + kCheckFlags}, at::TensorOptions(at::kLong).device(dev))) {}
  CheckRecord* get() { return reinterpret_cast<CheckRecord*>(storage.data_ptr<int64_t>()); }
  // Reads the record back (a device-to-host copy on CUDA).
  CheckRecord read() const {
    at::Tensor h = storage.device().is_cpu() ? storage : storage.cpu();
    CheckRecord r;
    std::memcpy(&r, h.data_ptr<int64_t>(), sizeof(r));
    return r;
  }
};

// Turns a CheckRecord into a ValueError naming the argument of the first failed flag.
// `messages` maps each flag bit to "<argument> ... " text; the row is inserted as name[row].
struct FlagMessage {
  int64_t flag;
  const char* argument;
  const char* problem;
};
inline void raise_if_flagged(const char* op, const CheckBuffer& buf, const std::vector<FlagMessage>& messages) {
  const CheckRecord rec = buf.read();
  if (rec.flags == 0) return;
  for (const auto& m : messages) {
    if (rec.flags & m.flag) {
      TORCH_CHECK_VALUE(false, "eyefast.", op, ": ", m.argument, " ", m.problem, " (first bad row: ", m.argument,
                        "[", rec.first_row[flag_bit(m.flag)], "]); pass check=False to skip these data checks");
    }
  }
  TORCH_CHECK_VALUE(false, "eyefast.", op, ": invalid input (flags ", rec.flags, ")");
}

#ifdef EYEFAST_WITH_CUDA
inline void* current_stream(const at::Tensor& t) { return at::cuda::getCurrentCUDAStream(t.device().index()).stream(); }
inline void check_cuda(const char* op, int err) {
  TORCH_CHECK(err == 0, "eyefast.", op, ": CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}
#endif

}  // namespace torch_ext
}  // namespace eyefast
