// CPU launcher of occupancy.h.
#include "eyefast/occupancy.h"

#include "eyefast/launch.h"

namespace eyefast {
namespace cpu {

template <typename T>
void occupancy_march(const OccupancyMarch<T>& f, int64_t n_rays) {
  if (f.check) check_init(f.check);
  for_each(n_rays, f, 64);  // rays differ a lot in length: small chunks balance
}

template void occupancy_march<float>(const OccupancyMarch<float>&, int64_t);
template void occupancy_march<double>(const OccupancyMarch<double>&, int64_t);

}  // namespace cpu
}  // namespace eyefast
