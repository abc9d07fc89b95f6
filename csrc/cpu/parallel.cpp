// The CPU parallel loop behind eyefast::cpu::for_each (launch.h): a replaceable backend, and a
// built-in persistent thread pool (workers sleep on a condition variable between launches).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {
namespace {

int default_threads() {
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

thread_local bool t_in_pool = false;  // nested launches run inline

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  // Runs slices 0..threads-1 of [0, n); returns when all are done.
  void run(int threads, int64_t n, void* ctx, ChunkFn fn) {
    std::unique_lock<std::mutex> busy(launch_, std::try_to_lock);
    if (!busy.owns_lock() || t_in_pool) {  // another launch in flight, or nested: run inline
      fn(ctx, 0, n);
      return;
    }
    grow(threads - 1);
    {
      std::lock_guard<std::mutex> g(m_);
      n_ = n;
      ctx_ = ctx;
      fn_ = fn;
      slices_ = threads;
      next_ = 1;
      pending_ = threads - 1;
      ++generation_;
    }
    cv_.notify_all();
    t_in_pool = true;
    fn(ctx, 0, slice_end(0, threads, n));
    t_in_pool = false;
    std::unique_lock<std::mutex> g(m_);
    done_.wait(g, [&] { return pending_ == 0; });
  }

 private:
  static int64_t slice_begin(int s, int slices, int64_t n) { return n * s / slices; }
  static int64_t slice_end(int s, int slices, int64_t n) { return n * (s + 1) / slices; }

  void grow(int want) {
    while (static_cast<int>(workers_.size()) < want) workers_.emplace_back([this] { loop(); });
  }

  void loop() {
    t_in_pool = true;
    uint64_t seen = 0;
    std::unique_lock<std::mutex> g(m_);
    for (;;) {
      cv_.wait(g, [&] { return stop_ || (generation_ != seen && next_ < slices_); });
      if (stop_) return;
      const int s = next_++;
      if (next_ >= slices_) seen = generation_;
      const int64_t b = slice_begin(s, slices_, n_), e = slice_end(s, slices_, n_);
      void* ctx = ctx_;
      ChunkFn fn = fn_;
      g.unlock();
      if (b < e) fn(ctx, b, e);
      g.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex launch_, m_;
  std::condition_variable cv_, done_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  int64_t n_ = 0;
  void* ctx_ = nullptr;
  ChunkFn fn_ = nullptr;
  int slices_ = 0, next_ = 0, pending_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: safe at process exit with workers asleep
  return *p;
}

ParallelBackend g_backend = nullptr;

}  // namespace

void pool_parallel_for(int threads, int64_t n, int64_t grain, void* ctx, ChunkFn fn) {
  if (n <= 0) return;
  const int64_t g = std::max<int64_t>(grain, 1);
  const int t = static_cast<int>(std::min<int64_t>(std::max(threads, 1), (n + g - 1) / g));
  if (t <= 1) {
    fn(ctx, 0, n);
    return;
  }
  pool().run(t, n, ctx, fn);
}

void set_parallel_backend(ParallelBackend backend) { g_backend = backend; }

namespace {
int cpu_max_simd_level() {
#ifdef EF_X86_DISPATCH
  static const int level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
      return 2;
    }
    return __builtin_cpu_supports("avx2") ? 1 : 0;
  }();
  return level;
#else
  return 0;
#endif
}

std::atomic<int> g_simd{-1};  // -1: not decided yet
}  // namespace

int cpu_simd_level() {
  int v = g_simd.load(std::memory_order_relaxed);
  if (v < 0) {
    v = cpu_max_simd_level();
    // EYEFAST_CPU_SIMD: 0, 1 or 2 caps the level; anything else is ignored.
    if (const char* env = std::getenv("EYEFAST_CPU_SIMD")) {
      if (env[0] >= '0' && env[0] <= '2' && env[1] == '\0' && env[0] - '0' < v) v = env[0] - '0';
    }
    g_simd.store(v, std::memory_order_relaxed);
  }
  return v;
}

int set_cpu_simd_level(int level) {
  const int v = std::max(0, std::min(level, cpu_max_simd_level()));
  g_simd.store(v, std::memory_order_relaxed);
  return v;
}

void parallel_for(int64_t n, int64_t grain, void* ctx, ChunkFn fn) {
  if (n <= 0) return;
  if (g_backend) {
    g_backend(n, grain, ctx, fn);
  } else {
    pool_parallel_for(default_threads(), n, grain, ctx, fn);
  }
}

}  // namespace cpu
}  // namespace eyefast
