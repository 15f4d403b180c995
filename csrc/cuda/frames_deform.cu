// Triangle frames and the (unfused) deformation of local Gaussians, forward and backward: one
// thread per element of the shared per-element math in rg/frames.h.
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/frames.h"

namespace rg::gpu {
namespace {

__global__ void frames_fwd_kernel(FramesArgs a, long long n) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < n) frames_fwd_one(a, idx);
}

__global__ void frames_bwd_kernel(FramesArgs a, long long n) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < n) frames_bwd_one(a, idx);
}

__global__ void deform_fwd_kernel(DeformArgs a, long long n) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < n) deform_fwd_one(a, idx);
}

__global__ void deform_bwd_kernel(DeformArgs a, long long n) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < n) deform_bwd_one(a, idx);
}

}  // namespace

void triangle_frames_fwd(const FramesArgs& a) {
  const long long n = (long long)a.B * a.F;
  launch_1d("triangle_frames_fwd", frames_fwd_kernel, n, a, a, n);
}

void triangle_frames_bwd(const FramesArgs& a) {
  const long long n = (long long)a.B * a.F;
  launch_1d("triangle_frames_bwd", frames_bwd_kernel, n, a, a, n);
}

void deform_fwd(const DeformArgs& a) {
  const long long n = (long long)a.B * a.N;
  launch_1d("deform_fwd", deform_fwd_kernel, n, a, a, n);
}

void deform_bwd(const DeformArgs& a) {
  const long long n = (long long)a.B * a.N;
  launch_1d("deform_bwd", deform_bwd_kernel, n, a, a, n);
}

}  // namespace rg::gpu
