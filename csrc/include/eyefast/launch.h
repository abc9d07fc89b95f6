// eyefast/launch.h: the CPU side of "one kernel body, two launchers".
//
// A kernel body is a functor `f` with `EF_HD void operator()(int64_t i) const`. The CPU
// launcher runs it for i in [0, n) with a parallel loop; launch_cuda.cuh runs the same functor
// in a grid-stride CUDA kernel.
//
// The parallel loop goes through a replaceable backend: by default a persistent pool of
// std::threads (EYEFAST_NUM_THREADS, else the hardware concurrency); the torch extension sizes the
// same pool with at::get_num_threads() so that torch.set_num_threads() governs eyefast too.
// (at::parallel_for itself cannot be used from an extension: in torch's OpenMP builds its body is
// a header-inlined `#pragma omp parallel`, silently serial unless the extension links OpenMP.)
#pragma once

#include <cstdint>
#include <vector>

#include "eyefast/common.h"

namespace eyefast {
namespace cpu {

// Runs fn(ctx, begin, end) over disjoint chunks covering [0, n); chunks hold >= grain items
// except possibly the last. Must return only when every chunk has finished.
using ChunkFn = void (*)(void* ctx, int64_t begin, int64_t end);
using ParallelBackend = void (*)(int64_t n, int64_t grain, void* ctx, ChunkFn fn);

// Installs a parallel backend (nullptr restores the built-in thread pool). Not thread-safe
// with respect to launches in flight; call it once at start-up.
EF_API void set_parallel_backend(ParallelBackend backend);
EF_API void parallel_for(int64_t n, int64_t grain, void* ctx, ChunkFn fn);
// The built-in pool with an explicit thread count (what the torch extension's backend calls).
EF_API void pool_parallel_for(int threads, int64_t n, int64_t grain, void* ctx, ChunkFn fn);

// Default grain: large enough that the per-chunk overhead vanishes, small enough to balance.
constexpr int64_t kDefaultGrain = 2048;

template <class F>
void for_each(int64_t n, const F& f, int64_t grain = kDefaultGrain) {
  if (n <= 0) return;
  parallel_for(n, grain, const_cast<void*>(static_cast<const void*>(&f)), [](void* ctx, int64_t b, int64_t e) {
    const F& body = *static_cast<const F*>(ctx);
    for (int64_t i = b; i < e; ++i) body(i);
  });
}

// Accumulating loop: f(i, acc) may call acc.add(j, v) for 0 <= j < m; the sums over all i land
// in out[0..m) (overwritten, not added to). Each chunk sums into a private double buffer, so
// the result does not depend on atomics and float32 sums keep double precision.
struct LocalAccumulator {
  double* slots;
  EF_HD void add(int64_t j, double v) const { slots[j] += v; }
};

template <typename T, class F>
void for_each_accumulate(int64_t n, int64_t m, const F& f, T* out /* [m] */, int64_t grain = kDefaultGrain) {
  std::vector<double> total(static_cast<size_t>(m), 0.0);
  if (n > 0 && m > 0) {
    struct Ctx {
      const F* f;
      int64_t m;
      std::vector<double>* total;
    } ctx{&f, m, &total};
    parallel_for(n, grain, &ctx, [](void* c, int64_t b, int64_t e) {
      Ctx& cx = *static_cast<Ctx*>(c);
      std::vector<double> local(static_cast<size_t>(cx.m), 0.0);
      LocalAccumulator acc{local.data()};
      for (int64_t i = b; i < e; ++i) (*cx.f)(i, acc);
      for (int64_t j = 0; j < cx.m; ++j) {
        // Chunks finish in any order: add with an atomic so no lock is needed.
        double* dst = &(*cx.total)[static_cast<size_t>(j)];
        double expected;
        __atomic_load(dst, &expected, __ATOMIC_RELAXED);
        double desired;
        do {
          desired = expected + local[static_cast<size_t>(j)];
        } while (!__atomic_compare_exchange(dst, &expected, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
      }
    });
  }
  for (int64_t j = 0; j < m; ++j) out[j] = static_cast<T>(total[static_cast<size_t>(j)]);
}

}  // namespace cpu

// CUDA launchers (declared per op in its header) take device pointers and a cudaStream_t passed
// as void*, return the launch's cudaError_t as an int (0 = success), and never synchronise.
// Their CheckRecord* points to device memory and is initialised by the launcher.
namespace cuda {
// True when this library was built with the CUDA launchers.
EF_API bool available();
// Initialises a CheckRecord in device memory (async on the stream; returns a cudaError_t).
int check_record_init(CheckRecord* check, void* stream);
}  // namespace cuda

}  // namespace eyefast
