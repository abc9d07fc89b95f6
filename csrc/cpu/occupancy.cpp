// CPU launchers of occupancy.h: the count/fill pass and the one-march form.
#include "eyefast/occupancy.h"

#include <limits>
#include <memory>

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

template <typename T>
void occupancy_march(const OccupancyMarch<T>& f, int64_t n_rays) {
  if (f.check) check_init(f.check);
  for_each(n_rays, f, 64);  // rays differ a lot in length: small chunks balance
}

template <typename T>
struct OccupancyOnePass<T>::Impl {
  OccupancyMarch<T> f{};
  int64_t n = 0;
  // Uninitialised scratch (every entry a ray uses is written by march() first): no zeroing pass.
  std::unique_ptr<int64_t[]> offsets;  // [n] exclusive prefix sum of the counts
  std::unique_ptr<T[]> t0;             // [n]
  std::unique_ptr<int32_t[]> runs;     // [n, kRuns, 2]: k_begin, k_end
  std::unique_ptr<int8_t[]> n_runs;    // [n]; -1: march again in write()
};

template <typename T>
OccupancyOnePass<T>::OccupancyOnePass() : impl_(new Impl()) {}
template <typename T>
OccupancyOnePass<T>::~OccupancyOnePass() {
  delete impl_;
}

namespace {
// Records a ray's samples as runs of consecutive steps.
template <typename T, int R>
struct RunSink {
  T* t0;
  int32_t* runs;  // [R, 2]
  int r = 0;
  bool overflow = false;
  int64_t last = -2;
  void start(T t) { *t0 = t; }
  void operator()(int64_t, int64_t k, T, T) {
    if (k + 1 > std::numeric_limits<int32_t>::max()) {  // the run bounds are int32: re-march
      overflow = true;
    } else if (k == last + 1 && r > 0) {
      runs[2 * (r - 1) + 1] = static_cast<int32_t>(k + 1);
    } else if (r < R) {
      runs[2 * r] = static_cast<int32_t>(k);
      runs[2 * r + 1] = static_cast<int32_t>(k + 1);
      ++r;
    } else {
      overflow = true;
    }
    last = k;
  }
};
}  // namespace

// One ray of march(): its count, t0 and runs (-1 runs: march it again in write()).
template <typename T>
struct OccupancyOnePass<T>::MarchRow {
  Impl* im;
  bool uniform;
  void operator()(int64_t i) const {
    Impl& m = *im;
    RunSink<T, kRuns> sink{m.t0.get() + i, m.runs.get() + i * kRuns * 2};
    m.f.counts[i] = m.f.march(i, sink);
    m.n_runs[static_cast<size_t>(i)] = (sink.overflow || !uniform) ? int8_t(-1) : static_cast<int8_t>(sink.r);
  }
};

template <typename T>
int64_t OccupancyOnePass<T>::march(const OccupancyMarch<T>& f, int64_t n_rays) {
  if (f.check) check_init(f.check);
  Impl& im = *impl_;
  im.f = f;
  im.n = n_rays;
  const size_t n = static_cast<size_t>(n_rays > 0 ? n_rays : 0);
  im.t0.reset(new T[n]);
  im.runs.reset(new int32_t[n * kRuns * 2]);
  im.n_runs.reset(new int8_t[n]);
  im.offsets.reset(new int64_t[n]);
  // for_each_simd: not to vectorise (a march is a loop of its own) but to run in the AVX2 /
  // AVX-512 copies, where floor and ceil are single instructions instead of library calls.
  // Rays differ a lot in length: small chunks balance.
  for_each_simd(n_rays, MarchRow{&im, f.cone_angle == T(0)}, 64);
  int64_t total = 0;
  for (int64_t i = 0; i < n_rays; ++i) {
    im.offsets[static_cast<size_t>(i)] = total;
    total += f.counts[i];
  }
  return total;
}

// One ray of write(): expands its runs, or marches it again (the same SIMD level as march(), so
// the same samples; the sink still never writes past the ray's count).
template <typename T>
struct OccupancyOnePass<T>::WriteRow {
  const Impl* im;
  OccupancyMarch<T> fill;  // im->f with the outputs and offsets set (the fill pass's form)
  void operator()(int64_t i) const {
    const Impl& m = *im;
    const int64_t out0 = m.offsets[i];
    const int nr = m.n_runs[i];
    if (nr < 0) {
      typename OccupancyMarch<T>::FillSink sink{&fill, i, out0, m.f.counts[i]};
      fill.march(i, sink);
      return;
    }
    int64_t out = out0;
    const T t0 = m.t0[i];
    const T step = m.f.step;
    const int32_t* runs = m.runs.get() + i * kRuns * 2;
    for (int r = 0; r < nr; ++r) {
      for (int64_t k = runs[2 * r]; k < runs[2 * r + 1]; ++k, ++out) {
        // The march's formulas: t_k = t0 + k step (t0 itself at k = 0).
        fill.ray_indices[out] = i;
        fill.t_starts[out] = k == 0 ? t0 : t0 + static_cast<T>(k) * step;
        fill.t_ends[out] = t0 + static_cast<T>(k + 1) * step;
      }
    }
  }
};

template <typename T>
void OccupancyOnePass<T>::write(int64_t* ray_indices, T* t_starts, T* t_ends) const {
  OccupancyMarch<T> fill = impl_->f;
  fill.counts = nullptr;
  fill.check = nullptr;
  fill.offsets = impl_->offsets.get();
  fill.ray_indices = ray_indices;
  fill.t_starts = t_starts;
  fill.t_ends = t_ends;
  // The re-marched rays run at the same SIMD level as march(), so they give the same samples;
  // the sink's limit (the ray's count) keeps a disagreement from writing past the ray anyway.
  for_each_simd(impl_->n, WriteRow{impl_, fill}, 256);
}

template void occupancy_march<float>(const OccupancyMarch<float>&, int64_t);
template void occupancy_march<double>(const OccupancyMarch<double>&, int64_t);
template class OccupancyOnePass<float>;
template class OccupancyOnePass<double>;

}  // namespace cpu
}  // namespace eyefast
