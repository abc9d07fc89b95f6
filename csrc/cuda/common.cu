// Shared pieces of the CUDA launchers.
#include <cuda_runtime.h>

#include "eyefast/launch.h"
#include "eyefast/launch_cuda.cuh"

namespace eyefast {
namespace cuda {

bool available() { return true; }

namespace {
__global__ void check_init_kernel(CheckRecord* rec) { check_init(rec); }
}  // namespace

int check_record_init(CheckRecord* check, void* stream) {
  check_init_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(check);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace cuda
}  // namespace eyefast
