// Triangle frames and the (unfused) deformation of local Gaussians, forward and backward: one
// thread per element of the shared per-element math in rg/frames.h.
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/frames.h"

namespace rg::gpu {
namespace {

// Fn(record, element) for every element of [0, n).
template <class A, void (*Fn)(const A&, long long)>
__global__ void each_element(A a, long long n) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < n) Fn(a, idx);
}

template <class A, void (*Fn)(const A&, long long)>
void run(const char* op, const A& a, long long n) {
  launch_1d(op, each_element<A, Fn>, n, a, a, n);
}

}  // namespace

void triangle_frames_fwd(const FramesArgs& a) {
  run<FramesArgs, frames_fwd_one>("triangle_frames_fwd", a, (long long)a.B * a.F);
}

void triangle_frames_bwd(const FramesArgs& a) {
  run<FramesArgs, frames_bwd_one>("triangle_frames_bwd", a, (long long)a.B * a.F);
}

void deform_fwd(const DeformArgs& a) {
  run<DeformArgs, deform_fwd_one>("deform_fwd", a, (long long)a.B * a.N);
}

void deform_bwd(const DeformArgs& a) {
  run<DeformArgs, deform_bwd_one>("deform_bwd", a, (long long)a.B * a.N);
}

}  // namespace rg::gpu
