// Triangle frames and the (unfused) deformation of local Gaussians, per element, forward and
// backward. Shared by the CUDA kernels (one thread per element) and the CPU backend. Gradients
// are accumulated with rg::atomic_add into buffers zeroed by the caller; a null incoming
// gradient pointer is treated as zero.
#pragma once

#include <cmath>

#include "rg/common.h"
#include "rg/math.h"

namespace rg {

RG_HD void add3(float* p, V3 v) {
  atomic_add(p, v.x);
  atomic_add(p + 1, v.y);
  atomic_add(p + 2, v.z);
}

RG_HD bool finite3(V3 v) { return std::isfinite(v.x) && std::isfinite(v.y) && std::isfinite(v.z); }

// Element idx = b * F + f of vertices [B,V,3], faces [F,3] -> cent [B,F,3], rot [B,F,3,3], sa [B,F].
RG_HD void frames_fwd_one(const float* verts, const int* faces, int V, int F, long long idx,
                          float* cent, float* rot, float* sa) {
  const long long b = idx / F, f = idx % F;
  const float* vb = verts + b * V * 3;
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

RG_HD void frames_bwd_one(const float* verts, const int* faces, int V, int F, long long idx,
                          const float* g_cent, const float* g_rot, const float* g_sa,
                          float* g_verts) {
  const long long b = idx / F, f = idx % F;
  const float* vb = verts + b * V * 3;
  const int i0 = faces[3 * f], i1 = faces[3 * f + 1], i2 = faces[3 * f + 2];
  const V3 v0 = load3(vb + 3 * i0), v1 = load3(vb + 3 * i1), v2 = load3(vb + 3 * i2);
  // A triangle with a non-finite corner (check_finite=False) has its Gaussians culled: it passes
  // no gradient, since its NaN Jacobian times a zero incoming gradient would poison the corners
  // it shares with finite triangles.
  if (!finite3(v0) || !finite3(v1) || !finite3(v2)) return;
  V3 gT{0.f, 0.f, 0.f};
  M3 gR = zeros3();
  float gs = 0.f;
  if (g_cent) gT = load3(g_cent + 3 * idx);
  if (g_rot) gR = load33(g_rot + 9 * idx);
  if (g_sa) gs = g_sa[idx];
  int slot[3];
  V3 g[3];
  const int m = triangle_frame_vjp_merged(v0, v1, v2, i0, i1, i2, gT, gR, gs, slot, g);
  const int ids[3] = {i0, i1, i2};
  float* gb = g_verts + b * V * 3;
  for (int k = 0; k < m; ++k) add3(gb + 3 * ids[slot[k]], g[k]);
}

// Element idx = b * N + n: local Gaussian n deformed by the frame of its face in pose b.
RG_HD void deform_fwd_one(const float* means, const float* quats, const float* ls,
                          const int* face_ids, const float* cent, const float* rot,
                          const float* sa, int N, int F, long long idx, float* om, float* oq,
                          float* os) {
  const long long b = idx / N, n = idx % N;
  const long long f = b * F + face_ids[n];
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

RG_HD void deform_bwd_one(const float* means, const float* quats, const float* ls,
                          const int* face_ids, const float* cent, const float* rot,
                          const float* sa, int N, int F, long long idx, const float* gm,
                          const float* gq, const float* gsc, float* v_means, float* v_quats,
                          float* v_ls, float* v_cent, float* v_rot, float* v_sa) {
  const long long b = idx / N, n = idx % N;
  const long long f = b * F + face_ids[n];
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
    atomic_add(v_quats + 4 * n, vq.w);
    atomic_add(v_quats + 4 * n + 1, vq.x);
    atomic_add(v_quats + 4 * n + 2, vq.y);
    atomic_add(v_quats + 4 * n + 3, vq.z);
    const M3 gRq = rotmat_to_quat_vjp(R, vp);
    for (int k = 0; k < 9; ++k) gR.m[k] += gRq.m[k];
  }
  if (gsc) {
    for (int k = 0; k < 3; ++k) {
      const float e = expf(ls[3 * n + k]);
      const float g = gsc[3 * idx + k];
      atomic_add(v_ls + 3 * n + k, g * s * e);
      gs += g * e;
    }
  }
  for (int k = 0; k < 9; ++k) atomic_add(v_rot + 9 * f + k, gR.m[k]);
  atomic_add(v_sa + f, gs);
}

}  // namespace rg
