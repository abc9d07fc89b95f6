// CUDA launcher of occupancy.h: the same functor as csrc/cpu/occupancy.cpp.
#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"
#include "eyefast/occupancy.h"

namespace eyefast {
namespace cuda {

template <typename T>
int occupancy_march(const OccupancyMarch<T>& f, int64_t n_rays, void* stream) {
  if (f.check) {
    int e = check_record_init(f.check, stream);
    if (e) return e;
  }
  return static_cast<int>(for_each_cuda(n_rays, f, stream));
}

template int occupancy_march<float>(const OccupancyMarch<float>&, int64_t, void*);
template int occupancy_march<double>(const OccupancyMarch<double>&, int64_t, void*);

}  // namespace cuda
}  // namespace eyefast
