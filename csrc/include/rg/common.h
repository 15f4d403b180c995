// Portability macros of the header-only math shared by the CPU and CUDA backends.
//
// RG_HD marks a function callable from host and device code: `__host__ __device__
// __forceinline__` under nvcc, `inline` for a plain C++ compiler.
#pragma once

#include <cstring>

#if defined(__CUDACC__)
#define RG_HD __host__ __device__ __forceinline__
#else
#define RG_HD inline
#endif

#if !defined(__CUDA_ARCH__) && __cplusplus >= 202002L
#include <atomic>
#endif

namespace rg {

// Accumulate into a gradient buffer: atomicAdd on the device (order-dependent rounding: CUDA
// gradients are not bit-deterministic); on the host an atomic fetch_add through std::atomic_ref
// (C++20), or a plain += before C++20 (the g++ emulation checks). The CPU backend calls it only on
// memory a single task owns and sums across tasks in a fixed order (csrc/README.md,
// "Determinism"), so its gradients are bit-identical for any thread count.
RG_HD void atomic_add(float* p, float v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#elif __cplusplus >= 202002L
  std::atomic_ref<float>(*p).fetch_add(v, std::memory_order_relaxed);
#else
  *p += v;
#endif
}

// Record a bad index in slot `slot` of an int32 error array (null: ignored). Every writer stores
// the same value 1, so concurrent stores are benign; the host uses a relaxed atomic store.
RG_HD void flag_error(int* errors, int slot) {
  if (errors == nullptr) return;
#if defined(__CUDA_ARCH__) || __cplusplus < 202002L
  errors[slot] = 1;
#else
  std::atomic_ref<int>(errors[slot]).store(1, std::memory_order_relaxed);
#endif
}

// Bit pattern of a float (monotone in the value for positive floats: used in sort keys).
RG_HD unsigned int float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  unsigned int u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

}  // namespace rg
