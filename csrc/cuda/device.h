// The CUDA device of an op's pointers made current for the op's scope (host code; also compiled
// by the g++ emulation in host_check/, which fakes the runtime calls).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace rg::gpu {

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("rigged_gaussians CUDA: ") + what + ": " +
                             cudaGetErrorString(err));
  }
}

// Makes `device` current (no-op for device < 0 or when it already is) and restores the previous
// device on exit. Every CUDA op runs under one (csrc/cuda/bind_cuda.cpp): its kernels launch on
// the device that holds its tensors whatever torch's current device is.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (device < 0) return;
    int current = -1;
    check_cuda(cudaGetDevice(&current), "cudaGetDevice");
    if (current == device) return;
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    previous_ = current;
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// fn(record, rest...) with record.device current for the call: how bind_cuda.cpp binds every
// CUDA op (and how host_check/check_device.cpp calls them).
template <class R, class A, class... Rest>
auto guarded(R (*fn)(const A&, Rest...)) {
  return [fn](const A& a, Rest... rest) -> R {
    const DeviceGuard guard(a.device);
    return fn(a, rest...);
  };
}

}  // namespace rg::gpu
