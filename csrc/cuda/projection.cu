// Projection of 3D Gaussians to the image plane (gsplat conventions), plain and rigged (fused
// deformation: the world mean/covariance are formed in registers from the local Gaussian and its
// triangle frame, never written to memory). One thread per (camera, Gaussian).
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/projection.h"

namespace rgc {
namespace {

template <bool RIGGED>
__global__ void projection_fwd_kernel(ProjArgs a) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)a.C * a.N) return;
  projection_fwd_one<RIGGED>(a, idx);
}

template <bool RIGGED>
__global__ void projection_bwd_kernel(ProjArgs a, ProjGrads gr) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)a.C * a.N) return;
  projection_bwd_one<RIGGED>(a, gr, idx);
}

}  // namespace

void projection_fwd_cuda(const ProjArgs& a, bool rigged, std::uintptr_t stream) {
  const long long total = (long long)a.C * a.N;
  if (total == 0) return;
  if (rigged) {
    projection_fwd_kernel<true><<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(a);
    check_launch("projection_rigged_fwd");
  } else {
    projection_fwd_kernel<false><<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(a);
    check_launch("projection_fwd");
  }
}

void projection_bwd_cuda(const ProjArgs& a, const ProjGrads& g, bool rigged,
                         std::uintptr_t stream) {
  const long long total = (long long)a.C * a.N;
  if (total == 0) return;
  if (rigged) {
    projection_bwd_kernel<true><<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(a, g);
    check_launch("projection_rigged_bwd");
  } else {
    projection_bwd_kernel<false><<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(a, g);
    check_launch("projection_bwd");
  }
}

}  // namespace rgc
