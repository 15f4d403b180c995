// Triangle frames and the (unfused) deformation of local Gaussians, forward and backward.
#include "common.cuh"
#include "ops_cuda.h"
#include "rg_cuda_math.cuh"

namespace rgc {
namespace {

__global__ void frames_fwd_kernel(const float* verts, const int* faces, int B, int V, int F,
                                  float* cent, float* rot, float* sa) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)B * F) return;
  const int b = (int)(idx / F), f = (int)(idx % F);
  const float* vb = verts + (long long)b * V * 3;
  const V3 v0 = load3(vb + 3 * faces[3 * f]), v1 = load3(vb + 3 * faces[3 * f + 1]),
           v2 = load3(vb + 3 * faces[3 * f + 2]);
  V3 T;
  M3 R;
  float s;
  triangle_frame(v0, v1, v2, T, R, s);
  cent[3 * idx] = T.x;
  cent[3 * idx + 1] = T.y;
  cent[3 * idx + 2] = T.z;
  for (int k = 0; k < 9; ++k) rot[9 * idx + k] = R.m[k];
  sa[idx] = s;
}

__device__ __forceinline__ void add3(float* p, V3 v) {
  atomicAdd(p, v.x);
  atomicAdd(p + 1, v.y);
  atomicAdd(p + 2, v.z);
}

__global__ void frames_bwd_kernel(const float* verts, const int* faces, int B, int V, int F,
                                  const float* g_cent, const float* g_rot, const float* g_sa,
                                  float* g_verts) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)B * F) return;
  const int b = (int)(idx / F), f = (int)(idx % F);
  const float* vb = verts + (long long)b * V * 3;
  const int i0 = faces[3 * f], i1 = faces[3 * f + 1], i2 = faces[3 * f + 2];
  const V3 v0 = load3(vb + 3 * i0), v1 = load3(vb + 3 * i1), v2 = load3(vb + 3 * i2);
  V3 gT{0.f, 0.f, 0.f};
  M3 gR = zeros3();
  float gs = 0.f;
  if (g_cent) gT = load3(g_cent + 3 * idx);
  if (g_rot) gR = load33(g_rot + 9 * idx);
  if (g_sa) gs = g_sa[idx];
  V3 g0, g1, g2;
  triangle_frame_vjp(v0, v1, v2, gT, gR, gs, g0, g1, g2);
  float* gb = g_verts + (long long)b * V * 3;
  add3(gb + 3 * i0, g0);
  add3(gb + 3 * i1, g1);
  add3(gb + 3 * i2, g2);
}

__global__ void deform_fwd_kernel(const float* means, const float* quats, const float* ls,
                                  const int* face_ids, const float* cent, const float* rot,
                                  const float* sa, int B, int N, int F, float* om, float* oq,
                                  float* os) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)B * N) return;
  const int b = (int)(idx / N), n = (int)(idx % N);
  const long long f = (long long)b * F + face_ids[n];
  const M3 R = load33(rot + 9 * f);
  const float s = sa[f];
  const V3 m = load3(cent + 3 * f) + s * mulv(R, load3(means + 3 * n));
  om[3 * idx] = m.x;
  om[3 * idx + 1] = m.y;
  om[3 * idx + 2] = m.z;
  const Q4 p = rotmat_to_quat(R);
  const Q4 q{quats[4 * n], quats[4 * n + 1], quats[4 * n + 2], quats[4 * n + 3]};
  const Q4 r = quat_mul(p, q);
  oq[4 * idx] = r.w;
  oq[4 * idx + 1] = r.x;
  oq[4 * idx + 2] = r.y;
  oq[4 * idx + 3] = r.z;
  for (int k = 0; k < 3; ++k) os[3 * idx + k] = s * expf(ls[3 * n + k]);
}

__global__ void deform_bwd_kernel(const float* means, const float* quats, const float* ls,
                                  const int* face_ids, const float* cent, const float* rot,
                                  const float* sa, int B, int N, int F, const float* gm,
                                  const float* gq, const float* gsc, float* v_means,
                                  float* v_quats, float* v_ls, float* v_cent, float* v_rot,
                                  float* v_sa) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)B * N) return;
  const int b = (int)(idx / N), n = (int)(idx % N);
  const long long f = (long long)b * F + face_ids[n];
  const M3 R = load33(rot + 9 * f);
  const float s = sa[f];
  const V3 mu = load3(means + 3 * n);
  M3 gR = zeros3();
  float gs = 0.f;
  if (gm) {
    const V3 g = load3(gm + 3 * idx);
    add3(v_cent + 3 * f, g);
    add3(v_means + 3 * n, s * mulTv(R, g));
    gs += dot(g, mulv(R, mu));
    const float gv[3] = {g.x, g.y, g.z}, mv[3] = {mu.x, mu.y, mu.z};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) gR(i, j) += s * gv[i] * mv[j];
  }
  if (gq) {
    const Q4 p = rotmat_to_quat(R);
    const Q4 q{quats[4 * n], quats[4 * n + 1], quats[4 * n + 2], quats[4 * n + 3]};
    const Q4 g{gq[4 * idx], gq[4 * idx + 1], gq[4 * idx + 2], gq[4 * idx + 3]};
    Q4 vp, vq;
    quat_mul_vjp(p, q, g, vp, vq);
    atomicAdd(v_quats + 4 * n, vq.w);
    atomicAdd(v_quats + 4 * n + 1, vq.x);
    atomicAdd(v_quats + 4 * n + 2, vq.y);
    atomicAdd(v_quats + 4 * n + 3, vq.z);
    const M3 gRq = rotmat_to_quat_vjp(R, vp);
    for (int k = 0; k < 9; ++k) gR.m[k] += gRq.m[k];
  }
  if (gsc) {
    for (int k = 0; k < 3; ++k) {
      const float e = expf(ls[3 * n + k]);
      const float g = gsc[3 * idx + k];
      atomicAdd(v_ls + 3 * n + k, g * s * e);
      gs += g * e;
    }
  }
  for (int k = 0; k < 9; ++k) atomicAdd(v_rot + 9 * f + k, gR.m[k]);
  atomicAdd(v_sa + f, gs);
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
