// eyefast/atomic.h: a host/device atomic add for scatter-style kernel bodies.
//
// On the device it is atomicAdd (float, and double on sm_60+). On the host it is a relaxed
// compare-and-swap loop (GCC/Clang __atomic builtins on the value's bytes), which is cheap when
// uncontended: the CPU launchers split work into contiguous chunks, so two threads rarely hit
// the same slot at once.
#pragma once

#include "eyefast/common.h"

namespace eyefast {

template <typename T>
EF_HD void atomic_add(T* p, T v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#else
  T expected;
  __atomic_load(p, &expected, __ATOMIC_RELAXED);
  T desired;
  do {
    desired = expected + v;
  } while (!__atomic_compare_exchange(p, &expected, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
#endif
}

}  // namespace eyefast
