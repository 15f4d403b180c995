// Triangle frames and the (unfused) deformation of local Gaussians, forward and backward
// (the per-element math is in rg/frames.h, shared with the CPU backend).
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/frames.h"

namespace rgc {
namespace {

__global__ void frames_fwd_kernel(const float* verts, const int* faces, int B, int V, int F,
                                  float* cent, float* rot, float* sa) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)B * F) return;
  frames_fwd_one(verts, faces, V, F, idx, cent, rot, sa);
}

__global__ void frames_bwd_kernel(const float* verts, const int* faces, int B, int V, int F,
                                  const float* g_cent, const float* g_rot, const float* g_sa,
                                  float* g_verts) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)B * F) return;
  frames_bwd_one(verts, faces, V, F, idx, g_cent, g_rot, g_sa, g_verts);
}

__global__ void deform_fwd_kernel(const float* means, const float* quats, const float* ls,
                                  const int* face_ids, const float* cent, const float* rot,
                                  const float* sa, int B, int N, int F, float* om, float* oq,
                                  float* os) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)B * N) return;
  deform_fwd_one(means, quats, ls, face_ids, cent, rot, sa, N, F, idx, om, oq, os);
}

__global__ void deform_bwd_kernel(const float* means, const float* quats, const float* ls,
                                  const int* face_ids, const float* cent, const float* rot,
                                  const float* sa, int B, int N, int F, const float* gm,
                                  const float* gq, const float* gsc, float* v_means,
                                  float* v_quats, float* v_ls, float* v_cent, float* v_rot,
                                  float* v_sa) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)B * N) return;
  deform_bwd_one(means, quats, ls, face_ids, cent, rot, sa, N, F, idx, gm, gq, gsc, v_means,
                 v_quats, v_ls, v_cent, v_rot, v_sa);
}

}  // namespace

#if !defined(RG_EMULATE)
void triangle_frames_fwd_cuda(const float* vertices, const int* faces, int B, int V, int F,
                              float* centroids, float* rotations, float* sqrt_areas,
                              std::uintptr_t stream) {
  const long long total = (long long)B * F;
  if (total == 0) return;
  frames_fwd_kernel<<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(
      vertices, faces, B, V, F, centroids, rotations, sqrt_areas);
  check_launch("triangle_frames_fwd");
}

void triangle_frames_bwd_cuda(const float* vertices, const int* faces, int B, int V, int F,
                              const float* v_centroids, const float* v_rotations,
                              const float* v_sqrt_areas, float* v_vertices,
                              std::uintptr_t stream) {
  const long long total = (long long)B * F;
  if (total == 0) return;
  frames_bwd_kernel<<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(
      vertices, faces, B, V, F, v_centroids, v_rotations, v_sqrt_areas, v_vertices);
  check_launch("triangle_frames_bwd");
}

void deform_fwd_cuda(const float* means, const float* quats, const float* log_scales,
                     const int* face_ids, const float* centroids, const float* rotations,
                     const float* sqrt_areas, int B, int N, int F, float* out_means,
                     float* out_quats, float* out_scales, std::uintptr_t stream) {
  const long long total = (long long)B * N;
  if (total == 0) return;
  deform_fwd_kernel<<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(
      means, quats, log_scales, face_ids, centroids, rotations, sqrt_areas, B, N, F, out_means,
      out_quats, out_scales);
  check_launch("deform_fwd");
}

void deform_bwd_cuda(const float* means, const float* quats, const float* log_scales,
                     const int* face_ids, const float* centroids, const float* rotations,
                     const float* sqrt_areas, int B, int N, int F, const float* v_out_means,
                     const float* v_out_quats, const float* v_out_scales, float* v_means,
                     float* v_quats, float* v_log_scales, float* v_centroids, float* v_rotations,
                     float* v_sqrt_areas, std::uintptr_t stream) {
  const long long total = (long long)B * N;
  if (total == 0) return;
  deform_bwd_kernel<<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(
      means, quats, log_scales, face_ids, centroids, rotations, sqrt_areas, B, N, F,
      v_out_means, v_out_quats, v_out_scales, v_means, v_quats, v_log_scales, v_centroids,
      v_rotations, v_sqrt_areas);
  check_launch("deform_bwd");
}

#endif  // !RG_EMULATE

}  // namespace rgc
