// The CPU parallel loop behind eyefast::cpu::for_each (launch.h): a replaceable backend with
// a built-in std::thread implementation.
#include <algorithm>
#include <cstdlib>
#include <thread>
#include <vector>

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {
namespace {

int builtin_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("EYEFAST_NUM_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) return v;
    }
    unsigned hc = std::thread::hardware_concurrency();
    return hc > 0 ? static_cast<int>(hc) : 1;
  }();
  return n;
}

void builtin_parallel_for(int64_t n, int64_t grain, void* ctx, ChunkFn fn) {
  const int64_t g = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + g - 1) / g;
  const int threads = static_cast<int>(std::min<int64_t>(builtin_threads(), max_chunks));
  if (threads <= 1) {
    fn(ctx, 0, n);
    return;
  }
  // One contiguous slice per thread: the bodies are uniform in cost.
  const int64_t per = (n + threads - 1) / threads;
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  for (int t = 1; t < threads; ++t) {
    const int64_t b = t * per, e = std::min<int64_t>(n, b + per);
    if (b < e) pool.emplace_back([=] { fn(ctx, b, e); });
  }
  fn(ctx, 0, std::min<int64_t>(n, per));
  for (auto& th : pool) th.join();
}

ParallelBackend g_backend = nullptr;

}  // namespace

void set_parallel_backend(ParallelBackend backend) { g_backend = backend; }

void parallel_for(int64_t n, int64_t grain, void* ctx, ChunkFn fn) {
  if (n <= 0) return;
  if (g_backend) {
    g_backend(n, grain, ctx, fn);
  } else {
    builtin_parallel_for(n, grain, ctx, fn);
  }
}

}  // namespace cpu
}  // namespace eyefast
