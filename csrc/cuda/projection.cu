// Projection of 3D Gaussians to the image plane (gsplat conventions), plain and rigged (fused
// deformation: the world mean/covariance are formed in registers from the local Gaussian and its
// triangle frame, never written to memory). One thread per (camera, Gaussian) of the shared
// math in rg/projection.h.
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/projection.h"

namespace rg::gpu {
namespace {

template <bool RIGGED>
__global__ void projection_fwd_kernel(ProjArgs a) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < (long long)a.C * a.N) projection_fwd_one<RIGGED>(a, idx);
}

template <bool RIGGED>
__global__ void projection_bwd_kernel(ProjArgs a, ProjGrads g) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < (long long)a.C * a.N) projection_bwd_one<RIGGED>(a, g, idx);
}

}  // namespace

void projection_fwd(const ProjArgs& a) {
  launch_1d("projection_fwd", projection_fwd_kernel<false>, (long long)a.C * a.N, a, a);
}

void projection_rigged_fwd(const ProjArgs& a) {
  launch_1d("projection_rigged_fwd", projection_fwd_kernel<true>, (long long)a.C * a.N, a, a);
}

void projection_bwd(const ProjArgs& a, const ProjGrads& g) {
  launch_1d("projection_bwd", projection_bwd_kernel<false>, (long long)a.C * a.N, a, a, g);
}

void projection_rigged_bwd(const ProjArgs& a, const ProjGrads& g) {
  launch_1d("projection_rigged_bwd", projection_bwd_kernel<true>, (long long)a.C * a.N, a, a, g);
}

}  // namespace rg::gpu
