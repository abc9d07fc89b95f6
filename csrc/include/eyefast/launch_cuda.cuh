// eyefast/launch_cuda.cuh: the CUDA side of "one kernel body, two launchers".
//
// Include only from .cu files. for_each_cuda runs a functor `f(i)` for i in [0, n) in a
// grid-stride kernel on the given stream; for_each_accumulate_cuda runs `f(i, acc)` and sums
// acc.add(j, v) contributions into out[0..m) (block-level shared-memory partial sums, then one
// global atomic per block and slot). Both return the launch's cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "eyefast/common.h"

namespace eyefast {
namespace cuda {

constexpr int kBlock = 256;

inline int multiprocessor_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) {
    sms = 108;
  }
  return sms;
}

// Grid size for a grid-stride loop: enough blocks to fill the device `per_sm` times over.
inline int grid_for(int64_t n, int block = kBlock, int per_sm = 16) {
  int64_t want = (n + block - 1) / block;
  int64_t cap = static_cast<int64_t>(multiprocessor_count()) * per_sm;
  int64_t g = want < cap ? want : cap;
  return static_cast<int>(g < 1 ? 1 : g);
}

template <class F>
__global__ void __launch_bounds__(kBlock) for_each_kernel(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

template <class F>
cudaError_t for_each_cuda(int64_t n, const F& f, void* stream) {
  if (n <= 0) return cudaSuccess;
  for_each_kernel<F><<<grid_for(n), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(n, f);
  return cudaGetLastError();
}

template <typename T>
struct SharedAccumulator {
  T* slots;  // shared memory [m]
  __device__ __forceinline__ void add(int64_t j, double v) const { atomicAdd(slots + j, static_cast<T>(v)); }
};
template <typename T>
struct GlobalAccumulator {
  T* slots;  // global memory [m]
  __device__ __forceinline__ void add(int64_t j, double v) const { atomicAdd(slots + j, static_cast<T>(v)); }
};

// Shared-memory path for up to this many slots (doubles: 32 KiB); above it, global atomics.
constexpr int64_t kMaxSharedSlots = 4096;

template <typename T, class F>
__global__ void __launch_bounds__(kBlock) for_each_accumulate_shared_kernel(int64_t n, int64_t m, F f, T* out) {
  extern __shared__ unsigned char smem_raw[];
  T* sm = reinterpret_cast<T*>(smem_raw);
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) sm[j] = T(0);
  __syncthreads();
  SharedAccumulator<T> acc{sm};
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i, acc);
  __syncthreads();
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    T v = sm[j];
    if (v != T(0)) atomicAdd(out + j, v);
  }
}

template <typename T, class F>
__global__ void __launch_bounds__(kBlock) for_each_accumulate_global_kernel(int64_t n, F f, T* out) {
  GlobalAccumulator<T> acc{out};
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i, acc);
}

// out must hold m elements of device memory; it is zeroed here, then summed into.
template <typename T, class F>
cudaError_t for_each_accumulate_cuda(int64_t n, int64_t m, const F& f, T* out, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (m > 0) {
    cudaError_t e = cudaMemsetAsync(out, 0, static_cast<size_t>(m) * sizeof(T), s);
    if (e != cudaSuccess) return e;
  }
  if (n <= 0) return cudaSuccess;
  if (m <= kMaxSharedSlots) {
    // Fewer blocks when m is large: each block pays m global atomics at its end.
    const int grid = grid_for(n, kBlock, m > 64 ? 4 : 16);
    size_t smem = static_cast<size_t>(m > 0 ? m : 1) * sizeof(T);
    for_each_accumulate_shared_kernel<T, F><<<grid, kBlock, smem, s>>>(n, m, f, out);
  } else {
    for_each_accumulate_global_kernel<T, F><<<grid_for(n), kBlock, 0, s>>>(n, f, out);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace eyefast
