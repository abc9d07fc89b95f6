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

// ---------------------------------------------------------------------------------------
// Vectorised loops.
//
// for_each_simd / for_each_checked run bodies written for SIMD: branch-free (selects, not
// jumps), and rows independent: no two rows write the same element or read what another row
// writes (a row may own a segment, as a ray's samples in volrend), and outputs do not overlap
// inputs. EF_IVDEP states exactly that to the compiler, which then vectorises the row loop.
// Bodies that only want the AVX2/AVX-512 code generation (a loop of their own per row) may use
// for_each_simd as well.
// On x86-64 with GCC or Clang each chunk runs in a copy of the loop compiled for AVX-512
// (F, VL, BW, DQ; 256-bit vectors with mask registers) or AVX2 when the CPU has it, chosen at
// run time (the library itself stays baseline x86-64); elsewhere, in the baseline loop. All
// copies compute the same IEEE operations (no FMA contraction, no reassociation, no
// approximate reciprocals), so their results are bitwise equal: tests run every level.
//
// for_each_checked's body has `template <bool Check> EF_HD uint32_t run(int64_t i) const`
// returning row i's check-flag bits (always 0 when Check is false). A chunk whose rows are not
// all clean is run once more row by row to report the offending rows (it writes the same
// outputs again), so the checks cost no branch in the vectorised loop.
// ---------------------------------------------------------------------------------------

// The loop copies in use: 0 = baseline, 1 = AVX2, 2 = AVX-512. Default: the best the CPU has,
// capped by EYEFAST_CPU_SIMD (0, 1 or 2) when set.
EF_API int cpu_simd_level();
// Sets the level (capped at what the CPU has); returns the level now in use.
EF_API int set_cpu_simd_level(int level);

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__CUDACC__)
#define EF_X86_DISPATCH 1
#endif

namespace detail {

// The loops take a copy of the body, so the compiler knows its pointers do not change when
// the outputs are written, and EF_IVDEP states that rows do not depend on each other.
#define EF_ROW_LOOPS(SUFFIX, ATTR)                                                          \
  template <class F>                                                                         \
  ATTR void rows##SUFFIX(const F& body, int64_t b, int64_t e) {                              \
    const F f = body;                                                                        \
    EF_IVDEP                                                                                 \
    for (int64_t i = b; i < e; ++i) f(i);                                                    \
  }                                                                                          \
  template <bool Check, class F>                                                             \
  ATTR uint32_t rows_checked##SUFFIX(const F& body, int64_t b, int64_t e) {                  \
    const F f = body;                                                                        \
    uint32_t flags = 0;                                                                      \
    EF_IVDEP                                                                                 \
    for (int64_t i = b; i < e; ++i) flags |= f.template run<Check>(i);                       \
    return flags;                                                                            \
  }

EF_ROW_LOOPS(_base, __attribute__((flatten)))
#ifdef EF_X86_DISPATCH
// flatten: the body (inline, default target) must inline into the target copy to vectorise.
EF_ROW_LOOPS(_avx2, __attribute__((target("avx2"), flatten)))
EF_ROW_LOOPS(_avx512, __attribute__((target("avx2,avx512f,avx512vl,avx512bw,avx512dq"), flatten)))
#endif
#undef EF_ROW_LOOPS

template <class F>
void rows(const F& f, int64_t b, int64_t e) {
#ifdef EF_X86_DISPATCH
  switch (cpu_simd_level()) {
    case 2: return rows_avx512(f, b, e);
    case 1: return rows_avx2(f, b, e);
    default: break;
  }
#endif
  rows_base(f, b, e);
}

template <bool Check, class F>
uint32_t rows_checked(const F& f, int64_t b, int64_t e) {
#ifdef EF_X86_DISPATCH
  switch (cpu_simd_level()) {
    case 2: return rows_checked_avx512<Check>(f, b, e);
    case 1: return rows_checked_avx2<Check>(f, b, e);
    default: break;
  }
#endif
  return rows_checked_base<Check>(f, b, e);
}

}  // namespace detail

template <class F>
void for_each_simd(int64_t n, const F& f, int64_t grain = kDefaultGrain) {
  if (n <= 0) return;
  parallel_for(n, grain, const_cast<void*>(static_cast<const void*>(&f)), [](void* ctx, int64_t b, int64_t e) {
    detail::rows(*static_cast<const F*>(ctx), b, e);
  });
}

template <class F>
void for_each_checked(int64_t n, const F& f, CheckRecord* check, int64_t grain = kDefaultGrain) {
  if (n <= 0) return;
  struct Ctx {
    const F* f;
    CheckRecord* check;
  } ctx{&f, check};
  parallel_for(n, grain, &ctx, [](void* c, int64_t b, int64_t e) {
    const Ctx& cx = *static_cast<const Ctx*>(c);
    if (!cx.check) {
      detail::rows_checked<false>(*cx.f, b, e);
      return;
    }
    if (detail::rows_checked<true>(*cx.f, b, e) == 0) return;
    for (int64_t i = b; i < e; ++i) {  // rare: find and report the offending rows
      const uint32_t flags = cx.f->template run<true>(i);
      if (flags) report_flags(cx.check, flags, i);
    }
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
