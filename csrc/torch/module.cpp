// The eyefast._C extension module: the TORCH_LIBRARY of the eyefast namespace (each op adds its
// schemas with TORCH_LIBRARY_FRAGMENT in its own file), the CPU parallel backend, and a tiny
// Python module object so that `import eyefast._C` loads the library.
#include <Python.h>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "eyefast/launch.h"

namespace eyefast {
namespace torch_ext {
namespace {

// CPU launchers run on torch's own intra-op threads: at::parallel_for, which in torch's OpenMP
// builds is an inlined `#pragma omp parallel`, so the extension is compiled with -fopenmp (see
// eyefast/_build.py) and shares torch's libgomp. A pool of eyefast's own would fight torch's
// OpenMP threads, which spin for a while after every torch op, for the cores. Measured on 2 cores,
// runs of the two builds interleaved: a training step 284-294 ms vs 312-327 ms with the pool; a
// 4k-ray ray_sphere_intersect 0.01 vs 0.05-0.08 ms; 4M-ray kernels alike. Without OpenMP (other
// torch builds, EYEFAST_OPENMP=0 at build time): eyefast's pool sized by at::get_num_threads().
// Either way torch.set_num_threads() governs eyefast, and inside a torch parallel region the
// kernels run inline, like ATen's own ops.
void aten_parallel_for(int64_t n, int64_t grain, void* ctx, cpu::ChunkFn fn) {
#if defined(_OPENMP) && AT_PARALLEL_OPENMP
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { fn(ctx, b, e); });
#else
  const int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  cpu::pool_parallel_for(threads, n, grain, ctx, fn);
#endif
}

struct InstallBackend {
  InstallBackend() { cpu::set_parallel_backend(&aten_parallel_for); }
} install_backend;

}  // namespace

TORCH_LIBRARY(eyefast, m) {
  // The op schemas are added by TORCH_LIBRARY_FRAGMENT(eyefast, ...) next to each op.
}

}  // namespace torch_ext
}  // namespace eyefast

namespace {
// eyefast._C.cpu_simd(level=None) -> int: the CPU loop copies in use (launch.h: 0 baseline,
// 1 AVX2, 2 AVX-512); with an argument, sets the level first (capped at what the CPU has).
PyObject* py_cpu_simd(PyObject*, PyObject* args) {
  PyObject* level = Py_None;
  if (!PyArg_ParseTuple(args, "|O", &level)) return nullptr;
  if (level != Py_None) {
    const long v = PyLong_AsLong(level);
    if (v == -1 && PyErr_Occurred()) return nullptr;
    eyefast::cpu::set_cpu_simd_level(v < 0 ? 0 : (v > 2 ? 2 : static_cast<int>(v)));
  }
  return PyLong_FromLong(eyefast::cpu::cpu_simd_level());
}

PyMethodDef eyefast_c_methods[] = {
    {"cpu_simd", py_cpu_simd, METH_VARARGS,
     "cpu_simd(level=None) -> int: the CPU kernels' loop copies in use (0 baseline, 1 AVX2, 2 AVX-512); "
     "sets the level first when given (capped at what the CPU has)."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef eyefast_c_module = {PyModuleDef_HEAD_INIT, "_C",
                                "eyefast kernels; the ops are registered as torch.ops.eyefast.*", -1,
                                eyefast_c_methods};
}  // namespace

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&eyefast_c_module);
  if (!m) return nullptr;
#ifdef EYEFAST_WITH_CUDA
  PyModule_AddObject(m, "WITH_CUDA", Py_True);
  Py_INCREF(Py_True);
#else
  PyModule_AddObject(m, "WITH_CUDA", Py_False);
  Py_INCREF(Py_False);
#endif
  return m;
}
