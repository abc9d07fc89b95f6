// Internal to the CPU launchers of hash_grid.h (csrc/cpu/hash_grid*.cpp): tiles of points walked
// level by level, every template switch of the bodies fixed per call (features, smoothstep, wanted
// gradients) and per level (dense or hashed). Table gradients accumulate into thread-private
// tables that are summed at the end, or with relaxed CAS atomics when private tables do not pay.
//
// The launchers instantiate a few thousand level loops (bodies x feature counts x flags x SIMD
// levels), too many for one translation unit (7 minutes and 5 GB of GCC for the one file they
// were): hash_grid.cpp holds the forward direction and hash_grid.h's templates, which forward
// the backward launchers to the overloads in hash_grid_detail below, one translation unit per
// entry point and dtype (hash_grid_{backward,double_backward,table_grad}_{f32,f64}.cpp), so that
// a parallel build spreads them over its cores.
//
// Everything else here has internal linkage (an unnamed namespace): each file gets its own copies
// of the instantiations it uses.
#pragma once

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#include "eyefast/hash_grid.h"
#include "eyefast/launch.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace eyefast {
namespace cpu {

namespace {

inline int64_t hw_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int64_t>(hw) : 1;
}

// Tile of points per work item: one per thread (measured best: 1M points, 2^19 rows, 2 threads:
// forward 1.8 s with 16K-point tiles, 0.77 s with 256K), at least 4096.
inline int64_t tile_for(int64_t n) { return std::max<int64_t>(4096, (n + hw_threads() - 1) / hw_threads()); }

// Whether a body scatters with atomics (bodies without a table gradient: no).
template <class B>
auto scatters_atomically(const B& b, int) -> decltype(bool(b.atomic)) {
  return b.atomic;
}
template <class B>
bool scatters_atomically(const B&, long) {
  return false;
}

// The level loops a body's template switches can reach, so that run_tile instantiates no others:
// atomic: it may scatter a table gradient with atomics (not when its table switch is 0, or it has
// no table gradient); prefetch: it may read the table (the prefetching loop; not when its
// x-gradient switch is 0, or it reads no table). The run-time choices in run_tile are unchanged
// for every case that remains.
template <class Body>
struct LevelLoops {  // HashGridForwardJacobian: reads the table, scatters nothing
  static constexpr bool atomic = false, prefetch = true;
};
template <typename T, int FS, int kSmooth, int kX, int kTable>
struct LevelLoops<HashGridBackward<T, FS, kSmooth, kX, kTable>> {
  static constexpr bool atomic = kTable != 0, prefetch = kX != 0;
};
template <typename T, int FS, int kSmooth, int kX, int kTable>
struct LevelLoops<HashGridDoubleBackward<T, FS, kSmooth, kX, kTable>> {
  static constexpr bool atomic = kTable != 0, prefetch = true;
};
template <typename T, int FS, int kSmooth, int kW, int kD>
struct LevelLoops<HashGridTableGrad<T, FS, kSmooth, kW, kD>> {
  static constexpr bool atomic = true, prefetch = false;
};

// One level of a tile (kept out of line: one call per level, and one symbol per case in profiles).
// Not vectorised (the table gradients scatter), but on x86-64 run in an AVX-512 / AVX2 copy when
// the CPU has it (launch.h's level): wider registers, three-operand forms and BMI for the
// hashing and weights. The same IEEE operations, so the same results at every level.
#define EF_HG_LEVEL_LOOP(NAME, ATTR)                                                                  \
  template <int kDense, int kAtomic, class Body, class Level>                                        \
  ATTR void NAME(const Body& body, int64_t lo, int64_t hi, int l, const Level& lv) {                 \
    for (int64_t i = lo; i < hi; ++i) body.template at_level<kDense, kAtomic>(i, l, lv);             \
  }
EF_HG_LEVEL_LOOP(run_level_base, __attribute__((noinline)))
#ifdef EF_X86_DISPATCH
EF_HG_LEVEL_LOOP(run_level_avx2, __attribute__((noinline, target("avx2,bmi,bmi2"), flatten)))
EF_HG_LEVEL_LOOP(run_level_avx512, __attribute__((noinline, target("avx2,bmi,bmi2,avx512f,avx512vl,avx512bw,avx512dq"), flatten)))
#endif
#undef EF_HG_LEVEL_LOOP

template <int kDense, int kAtomic, class Body, class Level>
void run_level(const Body& body, int64_t lo, int64_t hi, int l, const Level& lv) {
#ifdef EF_X86_DISPATCH
  switch (cpu_simd_level()) {
    case 2: return run_level_avx512<kDense, kAtomic>(body, lo, hi, l, lv);
    case 1: return run_level_avx2<kDense, kAtomic>(body, lo, hi, l, lv);
    default: break;
  }
#endif
  run_level_base<kDense, kAtomic>(body, lo, hi, l, lv);
}

// The same with the corner rows of point i + kAhead prefetched, for hashed levels whose table slice
// outgrows the L2 cache (>= kPrefetchBytes), where the random row gathers are latency bound.
// Measured (1 thread, 512K points, 16 x 2 features, linear): at 2^19 rows the x-gradient 0.43 ->
// 0.31 s and x + table 0.52 -> 0.42 s; at 2^17 rows still a gain, at 2^16 a loss (forward 63 ->
// 74 ms). Only for bodies that read the table: a table-gradient-only scatter lost with it.
constexpr int64_t kAhead = 8;
constexpr int64_t kPrefetchBytes = int64_t(1) << 20;

template <int kDense, int kAtomic, class Body, class Level>
__attribute__((noinline)) void run_level_prefetch(const Body& body, int64_t lo, int64_t hi, int l, const Level& lv) {
  const int F = body.features();
  const auto* read = body.read_table();
  const auto* update = body.update_table();
  int64_t i = lo;
  for (; i + kAhead < hi; ++i) {
    hash_grid_prefetch<kDense>(body.x + 3 * (i + kAhead), lv, F, read, update);
    body.template at_level<kDense, kAtomic>(i, l, lv);
  }
  for (; i < hi; ++i) body.template at_level<kDense, kAtomic>(i, l, lv);
}

// Points [lo, hi) level by level, so that one level's table (not all L of them) competes for the
// cache while the tile walks it. zero_table (or null): a table whose active levels are zeroed
// just before they are walked (a private gradient table: its level slice is then hot in cache).
template <class Body, typename T>
void run_tile(const Body& body, int64_t lo, int64_t hi, int32_t levels, T* zero_table) {
  constexpr int kMayAtomic = LevelLoops<Body>::atomic ? 1 : 0;
  const int F = body.features();
  // (a body that cannot scatter has no table gradient to add: the non-atomic loops, whatever its
  // atomic member says)
  const bool atomic = kMayAtomic && scatters_atomically(body, 0);
  for (int64_t i = lo; i < hi; ++i) body.begin(i);
  for (int l = 0; l < levels; ++l) {
    if (l >= body.L.n_active) {
      for (int64_t i = lo; i < hi; ++i) body.zero(i, l);
      continue;
    }
    const HashGridLevel<T> lv = hash_grid_level<T>(body.L, l, F);
    if (zero_table) std::memset(zero_table + lv.off, 0, sizeof(T) * body.L.table_size * F);
    const bool prefetch =
        body.read_table() && static_cast<int64_t>(sizeof(T)) * body.L.table_size * F >= kPrefetchBytes;
    if (lv.res) {  // dense levels are small enough for the cache
      atomic ? run_level<1, kMayAtomic>(body, lo, hi, l, lv) : run_level<1, 0>(body, lo, hi, l, lv);
      continue;
    }
    if constexpr (LevelLoops<Body>::prefetch) {
      if (prefetch) {
        atomic ? run_level_prefetch<0, kMayAtomic>(body, lo, hi, l, lv)
               : run_level_prefetch<0, 0>(body, lo, hi, l, lv);
        continue;
      }
    }
    atomic ? run_level<0, kMayAtomic>(body, lo, hi, l, lv) : run_level<0, 0>(body, lo, hi, l, lv);
  }
}

template <class Body>
using Scalar = typename std::remove_cv<typename std::remove_pointer<decltype(Body::x)>::type>::type;

template <class Body>
struct Tiled {
  Body body;
  int64_t n, tile;
  int32_t levels;
  void operator()(int64_t b) const {
    const int64_t lo = b * tile;
    run_tile(body, lo, std::min(n, lo + tile), levels, static_cast<Scalar<Body>*>(nullptr));
  }
};

template <class Body>
void run_tiled(int64_t n, const Body& body, int32_t levels) {
  const int64_t tile = tile_for(n);
  for_each((n + tile - 1) / tile, Tiled<Body>{body, n, tile, levels}, 1);
}

template <typename T>
void zero_parallel(T* p, int64_t elems) {
  struct Zero {
    T* p;
    int64_t elems;
    void operator()(int64_t b) const {
      const int64_t lo = b * 65536, hi = std::min(elems, lo + 65536);
      std::memset(p + lo, 0, sizeof(T) * (hi - lo));
    }
  };
  for_each((elems + 65535) / 65536, Zero{p, elems}, 1);
}

// Uninitialised scratch of n elements, 2 MiB-aligned with a transparent-huge-page hint when large:
// a fresh multi-MB buffer otherwise costs a page fault per 4 KiB on every call.
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
using ScratchPtr = std::unique_ptr<T[], FreeDeleter>;
template <typename T>
ScratchPtr<T> alloc_scratch(int64_t n) {
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t bytes = sizeof(T) * static_cast<size_t>(n);
  if (bytes < (size_t(4) << 20)) {
    T* p = static_cast<T*>(std::malloc(bytes > 0 ? bytes : 1));
    if (!p) throw std::bad_alloc();
    return ScratchPtr<T>(p);
  }
  const size_t rounded = (bytes + kHuge - 1) & ~(kHuge - 1);
  T* p = static_cast<T*>(std::aligned_alloc(kHuge, rounded));
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return ScratchPtr<T>(p);
}

// Scatter kernels (table gradients; the table need not be zeroed): the points are split into up
// to S contiguous slices; each chunk of slices that the parallel loop hands to one thread
// accumulates with plain adds into its own table (the first chunk into the output, the others into
// private copies), then the copies are summed into the output. Locked read-modify-writes would
// serialise the cache misses that dominate this loop. Falls back to atomics (on a table zeroed
// first) when there is one slice or the copies would exceed 1 GiB.
template <typename T, class Body>
void run_scatter(int64_t n, Body body, T* Body::*table_member, int32_t levels) {
  T* out = body.*table_member;
  if (!out) {
    run_tiled(n, body, levels);
    return;
  }
  const HashGridLayout& L = body.L;
  const int64_t level_elems = static_cast<int64_t>(L.table_size) * body.features();
  const int64_t active = L.n_active * level_elems, all = L.n_levels * level_elems;
  int64_t slices = std::min<int64_t>({hw_threads(), 8, (n + 16383) / 16384});
  while (slices > 1 && (slices - 1) * active * static_cast<int64_t>(sizeof(T)) > (int64_t(1) << 30)) --slices;
  if (slices <= 1) {
    zero_parallel(out, all);
    run_tiled(n, body, levels);
    return;
  }
  std::memset(out + active, 0, sizeof(T) * (all - active));  // inactive levels get no gradient
  std::vector<ScratchPtr<T>> copies(static_cast<size_t>(slices));  // [first slice of a chunk]
  struct Ctx {
    Body body;
    T* Body::*member;
    T* out;
    std::vector<ScratchPtr<T>>* copies;
    int64_t n, slices, active;
    int32_t levels;
  } ctx{body, table_member, out, &copies, n, slices, active, levels};
  parallel_for(slices, 1, &ctx, [](void* c, int64_t b, int64_t e) {
    Ctx& cx = *static_cast<Ctx*>(c);
    Body bs = cx.body;
    T* table = cx.out;
    if (b > 0) {
      auto& copy = (*cx.copies)[static_cast<size_t>(b)];
      copy = alloc_scratch<T>(cx.active);  // zeroed level by level in run_tile
      table = copy.get();
    }
    bs.*cx.member = table;
    bs.atomic = false;
    run_tile(bs, cx.n * b / cx.slices, cx.n * e / cx.slices, cx.levels, table);
  });
  std::vector<const T*> used;
  for (const auto& c : copies)
    if (c) used.push_back(c.get());
  if (used.empty()) return;
  struct Sum {
    T* out;
    const std::vector<const T*>* copies;
    int64_t elems;
    void operator()(int64_t b) const {
      const int64_t lo = b * 16384, hi = std::min(elems, lo + 16384);
      for (const T* c : *copies)
        for (int64_t j = lo; j < hi; ++j) out[j] += c[j];
    }
  };
  for_each((active + 16383) / 16384, Sum{out, &used, active}, 1);
}

// ---- the launchers' dispatch: template switches fixed from the call's arguments -----------------

template <typename T>
void launch_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out, T* grad_x,
                     T* grad_table) {
  if (!grad_x && !grad_table) return;
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    hash_grid_dispatch_flag(L.smoothstep, [&](auto sm) {
      hash_grid_dispatch_flag(grad_x != nullptr, [&](auto nx) {
        hash_grid_dispatch_flag(grad_table != nullptr, [&](auto nt) {
          using Body = HashGridBackward<T, decltype(fs)::value, decltype(sm)::value, decltype(nx)::value,
                                        decltype(nt)::value>;
          constexpr bool kX = decltype(nx)::value != 0, kTable = decltype(nt)::value != 0;
          const Body body{x, table, L, grad_out, grad_x, grad_table};
          if constexpr (kTable) {
            run_scatter(n, body, &Body::grad_table, L.n_active);
          } else if constexpr (kX) {  // no table gradient: nothing to scatter
            run_tiled(n, body, L.n_active);
          } else {  // neither gradient: returned above
            (void)body;
          }
        });
      });
    });
  });
}

template <typename T>
void launch_double_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out,
                            const T* gg_x, T* g_grad_out, T* g_x, T* g_table) {
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    hash_grid_dispatch_flag(L.smoothstep, [&](auto sm) {
      hash_grid_dispatch_flag(g_x != nullptr, [&](auto nx) {
        hash_grid_dispatch_flag(g_table != nullptr, [&](auto nt) {
          using Body = HashGridDoubleBackward<T, decltype(fs)::value, decltype(sm)::value, decltype(nx)::value,
                                              decltype(nt)::value>;
          constexpr bool kTable = decltype(nt)::value != 0;
          const Body body{x, table, L, grad_out, gg_x, g_grad_out, g_x, g_table};
          if constexpr (kTable) {
            run_scatter(n, body, &Body::g_table, L.n_levels);
          } else {  // no table gradient: nothing to scatter
            run_tiled(n, body, L.n_levels);
          }
        });
      });
    });
  });
}

template <typename T>
void launch_table_grad(const T* x, int64_t n, const HashGridLayout& L, const T* g_enc, const T* gg, const T* gu,
                       int64_t stride, T* g_table) {
  if (!g_enc && !gg) {
    std::memset(g_table, 0, sizeof(T) * static_cast<size_t>(L.n_levels) * L.table_size * L.n_features);
    return;
  }
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    hash_grid_dispatch_flag(L.smoothstep, [&](auto sm) {
      hash_grid_dispatch_flag(g_enc != nullptr, [&](auto nw) {
        hash_grid_dispatch_flag(gg != nullptr, [&](auto nd) {
          using Body = HashGridTableGrad<T, decltype(fs)::value, decltype(sm)::value, decltype(nw)::value,
                                         decltype(nd)::value>;
          constexpr bool kAny = decltype(nw)::value != 0 || decltype(nd)::value != 0;
          if constexpr (kAny) {  // (neither: returned above)
            run_scatter(n, Body{x, L, g_enc, gg, gu, stride, g_table}, &Body::g_table, L.n_active);
          }
        });
      });
    });
  });
}

}  // namespace

// The backward launchers per dtype, each defined in a file of its own (see the top of this file).
namespace hash_grid_detail {
void backward(const float* x, int64_t n, const float* table, const HashGridLayout& L, const float* grad_out,
              float* grad_x, float* grad_table);
void backward(const double* x, int64_t n, const double* table, const HashGridLayout& L, const double* grad_out,
              double* grad_x, double* grad_table);
void double_backward(const float* x, int64_t n, const float* table, const HashGridLayout& L, const float* grad_out,
                     const float* gg_x, float* g_grad_out, float* g_x, float* g_table);
void double_backward(const double* x, int64_t n, const double* table, const HashGridLayout& L, const double* grad_out,
                     const double* gg_x, double* g_grad_out, double* g_x, double* g_table);
void table_grad(const float* x, int64_t n, const HashGridLayout& L, const float* g_enc, const float* gg,
                const float* gu, int64_t stride, float* g_table);
void table_grad(const double* x, int64_t n, const HashGridLayout& L, const double* g_enc, const double* gg,
                const double* gu, int64_t stride, double* g_table);
}  // namespace hash_grid_detail

}  // namespace cpu
}  // namespace eyefast
