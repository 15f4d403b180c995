// Launch helpers shared by the CUDA kernels of rigged_gaussians. Under RG_EMULATE (the g++
// checks in host_check/) the same launch code runs the kernels on an emulation of CUDA, so the
// grid, block and shared-memory formulas under test are the real ones.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "device.h"
#include "rg/ops.h"

namespace rg::gpu {

constexpr int kThreads = 256;

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

inline unsigned int n_blocks(long long n, int threads = kThreads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}

// Raise a C++ exception (pybind11 turns it into RuntimeError) naming the op when the last launch
// failed. Only launch errors are caught here: kernels are asynchronous and later faults surface
// at the next synchronising torch call.
inline void check_launch(const char* op) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("rigged_gaussians CUDA op '") + op +
                             "' failed to launch: " + cudaGetErrorString(err));
  }
}

// The error of a CUDA op, naming it: "rigged_gaussians: CUDA error in <op>: <what>".
inline std::runtime_error op_error(const char* op, const std::string& what) {
  return std::runtime_error(std::string("rigged_gaussians: CUDA error in ") + op + ": " + what);
}

// Debug mode (Exec::sync_debug, set by the glue under RG_CUDA_DEBUG=1): wait for the record's
// stream after each kernel, so a fault inside it (an illegal address, a kernel image missing for
// this GPU...) is raised by the op that caused it, named, instead of by a later torch call.
inline void debug_sync(const char* op, const Exec& exec) {
  if (!exec.sync_debug) return;
  const cudaError_t err = cudaStreamSynchronize(as_stream(exec.stream));
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error
    throw op_error(op, cudaGetErrorString(err));
  }
}

// Error slot `slot` of exec.errors read back to the host (a synchronising copy: debug mode only);
// false without an error array.
inline bool debug_flag(const Exec& exec, int slot) {
  if (exec.errors == nullptr) return false;
  int v = 0;
  check_cuda(cudaMemcpy(&v, exec.errors + slot, sizeof(int), cudaMemcpyDeviceToHost),
             "reading the error flags");
  return v != 0;
}

// kernel<<<grid, block, shared_bytes, the record's stream>>>(args...), then check_launch(op)
// (and debug_sync(op) in debug mode).
template <class... KArgs, class... Args>
void launch(const char* op, void (*kernel)(KArgs...), dim3 grid, dim3 block,
            size_t shared_bytes, const Exec& exec, Args... args) {
#if defined(RG_EMULATE)
  emu::launch(grid, block, shared_bytes, [=] { kernel(args...); });
#else
  kernel<<<grid, block, shared_bytes, as_stream(exec.stream)>>>(args...);
#endif
  check_launch(op);
  debug_sync(op, exec);
}

// One thread per element of [0, n) in blocks of kThreads, for per-element kernels (no block
// synchronisation, no warp operations: the emulation runs their threads one by one).
template <class... KArgs, class... Args>
void launch_1d(const char* op, void (*kernel)(KArgs...), long long n, const Exec& exec,
               Args... args) {
  if (n <= 0) return;
#if defined(RG_EMULATE)
  emu::launch_serial(dim3(n_blocks(n)), dim3(kThreads), [=] { kernel(args...); });
  check_launch(op);
  debug_sync(op, exec);
#else
  launch(op, kernel, dim3(n_blocks(n)), dim3(kThreads), 0, exec, args...);
#endif
}

// Shared-memory declarations through macros so the kernels can also be compiled by a host-side
// emulator for testing without a GPU.
#if !defined(RG_EMULATE)
#define RG_DYN_SHARED(type, name) extern __shared__ type name[]
#define RG_SHARED(type, name) __shared__ type name
#endif

#if defined(__CUDACC__) && !defined(RG_EMULATE)
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
#endif

}  // namespace rg::gpu
