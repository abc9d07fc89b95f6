// CPU launchers of hash_grid.h: tiles of points walked level by level, every template switch of
// the bodies fixed per call (features, smoothstep, wanted gradients) and per level (dense or
// hashed); table gradients accumulate into thread-private copies (or relaxed CAS atomics).
#include "eyefast/hash_grid.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

namespace {

int64_t hw_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int64_t>(hw) : 1;
}

// Tile of points per work item: one per thread (measured best: 1M points, 2^19 rows, 2 threads:
// forward 1.8 s with 16K-point tiles, 0.77 s with 256K), at least 4096.
int64_t tile_for(int64_t n) { return std::max<int64_t>(4096, (n + hw_threads() - 1) / hw_threads()); }

// Whether a body scatters with atomics (bodies without a table gradient: no).
template <class B>
auto scatters_atomically(const B& b, int) -> decltype(bool(b.atomic)) {
  return b.atomic;
}
template <class B>
bool scatters_atomically(const B&, long) {
  return false;
}

template <int kDense, int kAtomic, class Body, class Level>
void run_level(const Body& body, int64_t lo, int64_t hi, int l, const Level& lv) {
  for (int64_t i = lo; i < hi; ++i) body.template at_level<kDense, kAtomic>(i, l, lv);
}

// Points [lo, hi) of one tile, level by level, so that one level's table (not all L of them)
// competes for the cache while the tile walks it.
template <class Body>
void run_tile(const Body& body, int64_t lo, int64_t hi, int32_t levels) {
  using T = typename std::remove_cv<typename std::remove_pointer<decltype(body.x)>::type>::type;
  for (int64_t i = lo; i < hi; ++i) body.begin(i);
  for (int l = 0; l < levels; ++l) {
    if (l >= body.L.n_active) {
      for (int64_t i = lo; i < hi; ++i) body.zero(i, l);
      continue;
    }
    const HashGridLevel<T> lv = hash_grid_level<T>(body.L, l, body.features());
    const bool atomic = scatters_atomically(body, 0);
    if (lv.res) {
      atomic ? run_level<1, 1>(body, lo, hi, l, lv) : run_level<1, 0>(body, lo, hi, l, lv);
    } else {
      atomic ? run_level<0, 1>(body, lo, hi, l, lv) : run_level<0, 0>(body, lo, hi, l, lv);
    }
  }
}

template <class Body>
struct Tiled {
  Body body;
  int64_t n, tile;
  int32_t levels;
  void operator()(int64_t b) const {
    const int64_t lo = b * tile;
    run_tile(body, lo, std::min(n, lo + tile), levels);
  }
};

template <class Body>
void run_tiled(int64_t n, const Body& body, int32_t levels) {
  const int64_t tile = tile_for(n);
  for_each((n + tile - 1) / tile, Tiled<Body>{body, n, tile, levels}, 1);
}

// Scatter kernels (table gradients): the points are split into S slices, each accumulating with
// plain adds into its own copy of the gradient table (slice 0 into the output), then the copies
// are summed. Locked read-modify-writes would serialise the cache misses that dominate this loop.
// Falls back to atomics when there is one slice or the copies would exceed 1 GiB.
template <typename T, class Body>
void run_scatter(int64_t n, Body body, T* Body::*table_member, int32_t levels, int64_t table_elems) {
  T* out = body.*table_member;
  int64_t slices = std::min<int64_t>({hw_threads(), 8, (n + 16383) / 16384});
  while (slices > 1 && (slices - 1) * table_elems * static_cast<int64_t>(sizeof(T)) > (int64_t(1) << 30)) --slices;
  if (!out || slices <= 1) {
    run_tiled(n, body, levels);
    return;
  }
  std::vector<std::vector<T>> copies(static_cast<size_t>(slices - 1));
  struct Ctx {
    Body body;
    T* Body::*member;
    T* out;
    std::vector<std::vector<T>>* copies;
    int64_t n, slices, table_elems;
    int32_t levels;
  } ctx{body, table_member, out, &copies, n, slices, table_elems, levels};
  parallel_for(slices, 1, &ctx, [](void* c, int64_t b, int64_t e) {
    Ctx& cx = *static_cast<Ctx*>(c);
    for (int64_t s = b; s < e; ++s) {
      Body bs = cx.body;
      if (s == 0) {
        bs.*cx.member = cx.out;
      } else {
        auto& v = (*cx.copies)[static_cast<size_t>(s - 1)];
        v.assign(static_cast<size_t>(cx.table_elems), T(0));
        bs.*cx.member = v.data();
      }
      bs.atomic = false;
      run_tile(bs, cx.n * s / cx.slices, cx.n * (s + 1) / cx.slices, cx.levels);
    }
  });
  struct Sum {
    T* out;
    const std::vector<std::vector<T>>* copies;
    void operator()(int64_t j) const {
      T acc = out[j];
      for (const auto& v : *copies) acc += v[static_cast<size_t>(j)];
      out[j] = acc;
    }
  };
  for_each(table_elems, Sum{out, &copies});
}

}  // namespace

template <typename T>
void hash_grid_forward(const T* x, int64_t n, const T* table, const HashGridLayout& L, T* out) {
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    hash_grid_dispatch_flag(L.smoothstep, [&](auto sm) {
      run_tiled(n, HashGridForward<T, decltype(fs)::value, decltype(sm)::value>{x, table, L, out}, L.n_levels);
    });
  });
}

template <typename T>
void hash_grid_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out, T* grad_x,
                        T* grad_table) {
  if (!grad_x && !grad_table) return;
  const int64_t elems = static_cast<int64_t>(L.n_levels) * L.table_size * L.n_features;
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    hash_grid_dispatch_flag(L.smoothstep, [&](auto sm) {
      hash_grid_dispatch_flag(grad_x != nullptr, [&](auto nx) {
        hash_grid_dispatch_flag(grad_table != nullptr, [&](auto nt) {
          using Body = HashGridBackward<T, decltype(fs)::value, decltype(sm)::value, decltype(nx)::value,
                                        decltype(nt)::value>;
          run_scatter(n, Body{x, table, L, grad_out, grad_x, grad_table}, &Body::grad_table, L.n_active, elems);
        });
      });
    });
  });
}

template <typename T>
void hash_grid_double_backward(const T* x, int64_t n, const T* table, const HashGridLayout& L, const T* grad_out,
                               const T* gg_x, T* g_grad_out, T* g_x, T* g_table) {
  const int64_t elems = static_cast<int64_t>(L.n_levels) * L.table_size * L.n_features;
  hash_grid_dispatch_features(L.n_features, [&](auto fs) {
    hash_grid_dispatch_flag(L.smoothstep, [&](auto sm) {
      hash_grid_dispatch_flag(g_x != nullptr, [&](auto nx) {
        hash_grid_dispatch_flag(g_table != nullptr, [&](auto nt) {
          using Body = HashGridDoubleBackward<T, decltype(fs)::value, decltype(sm)::value, decltype(nx)::value,
                                              decltype(nt)::value>;
          run_scatter(n, Body{x, table, L, grad_out, gg_x, g_grad_out, g_x, g_table}, &Body::g_table, L.n_levels,
                      elems);
        });
      });
    });
  });
}

#define EF_INSTANTIATE(T)                                                                                          \
  template void hash_grid_forward<T>(const T*, int64_t, const T*, const HashGridLayout&, T*);                      \
  template void hash_grid_backward<T>(const T*, int64_t, const T*, const HashGridLayout&, const T*, T*, T*);       \
  template void hash_grid_double_backward<T>(const T*, int64_t, const T*, const HashGridLayout&, const T*, const T*, \
                                             T*, T*, T*);
EF_INSTANTIATE(float)
EF_INSTANTIATE(double)
#undef EF_INSTANTIATE

}  // namespace cpu
}  // namespace eyefast
