// eyefast/launch_cuda.cuh: the CUDA side of "one kernel body, two launchers".
//
// Include only from .cu files. for_each_cuda runs a functor `f(i)` for i in [0, n) in a
// grid-stride kernel on the given stream; for_each_accumulate_cuda runs `f(i, acc)` and sums
// acc.add(j, v) contributions into out[0..m) (in double: block-level shared-memory partial sums, then
// the blocks' sums added in a fixed order). Both return the launch's cudaError_t.
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

// Accumulators hand their contributions to double slots, whatever T is: float32 gradients of a few
// parameters summed over millions of rays agree with the CPU's double sums to float32 rounding.
struct SharedAccumulator {
  double* slots;  // shared memory [m]
  __device__ __forceinline__ void add(int64_t j, double v) const { atomicAdd(slots + j, v); }
};
struct GlobalAccumulator {
  double* slots;  // global memory [m]
  __device__ __forceinline__ void add(int64_t j, double v) const { atomicAdd(slots + j, v); }
};

// Shared-memory path for up to this many slots (doubles: 32 KiB); above it, global atomics.
constexpr int64_t kMaxSharedSlots = 4096;

// Stage 1: each block sums its rows' contributions in shared memory and writes its m partial sums
// to partial[blockIdx.x * m + j].
template <class F>
__global__ void __launch_bounds__(kBlock) for_each_accumulate_shared_kernel(int64_t n, int64_t m, F f,
                                                                             double* partial) {
  extern __shared__ unsigned char smem_raw[];
  double* sm = reinterpret_cast<double*>(smem_raw);
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) sm[j] = 0.0;
  __syncthreads();
  SharedAccumulator acc{sm};
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i, acc);
  __syncthreads();
  for (int64_t j = threadIdx.x; j < m; j += blockDim.x) partial[static_cast<int64_t>(blockIdx.x) * m + j] = sm[j];
}

// Stage 2: slot j is the sum of the blocks' partial sums, in block order (the same result every run).
template <typename T>
__global__ void __launch_bounds__(kBlock) sum_partials_kernel(int64_t blocks, int64_t m, const double* partial,
                                                              T* out) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= m) return;
  double s = 0.0;
  for (int64_t b = 0; b < blocks; ++b) s += partial[b * m + j];
  out[j] = static_cast<T>(s);
}

template <class F>
__global__ void __launch_bounds__(kBlock) for_each_accumulate_global_kernel(int64_t n, F f, double* slots) {
  GlobalAccumulator acc{slots};
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i, acc);
}

// out[0..m) = the sums of f(i, acc)'s acc.add(j, v) over i in [0, n), accumulated in double (shared
// memory per block, then the blocks' partial sums added in a fixed order; above kMaxSharedSlots slots,
// global double atomics) and written as T. out is device memory of m elements.
template <typename T, class F>
cudaError_t for_each_accumulate_cuda(int64_t n, int64_t m, const F& f, T* out, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (m <= 0) return cudaSuccess;
  if (n <= 0) return cudaMemsetAsync(out, 0, static_cast<size_t>(m) * sizeof(T), s);
  const bool shared = m <= kMaxSharedSlots;
  // Fewer blocks when m is large: each block writes m partial sums at its end.
  const int grid = shared ? grid_for(n, kBlock, m > 64 ? 4 : 16) : grid_for(n);
  const int64_t scratch = shared ? static_cast<int64_t>(grid) * m : m;
  double* buf = nullptr;
  cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&buf), static_cast<size_t>(scratch) * sizeof(double), s);
  if (e != cudaSuccess) return e;
  if (shared) {
    const size_t smem = static_cast<size_t>(m) * sizeof(double);
    for_each_accumulate_shared_kernel<F><<<grid, kBlock, smem, s>>>(n, m, f, buf);
    e = cudaGetLastError();
    if (e == cudaSuccess)
      sum_partials_kernel<T><<<static_cast<int>((m + kBlock - 1) / kBlock), kBlock, 0, s>>>(grid, m, buf, out);
  } else {
    e = cudaMemsetAsync(buf, 0, static_cast<size_t>(m) * sizeof(double), s);
    if (e == cudaSuccess) {
      for_each_accumulate_global_kernel<F><<<grid, kBlock, 0, s>>>(n, f, buf);
      e = cudaGetLastError();
    }
    if (e == cudaSuccess)
      sum_partials_kernel<T><<<static_cast<int>((m + kBlock - 1) / kBlock), kBlock, 0, s>>>(1, m, buf, out);
  }
  if (e == cudaSuccess) e = cudaGetLastError();
  cudaError_t ef = cudaFreeAsync(buf, s);
  return e != cudaSuccess ? e : ef;
}

}  // namespace cuda
}  // namespace eyefast
