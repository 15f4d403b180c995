// Triangle frames and the (unfused) deformation of local Gaussians, per element, forward and
// backward, on the argument records of rg/ops.h. Shared by the CUDA kernels (one thread per
// element) and the CPU backend. Gradients are accumulated with rg::atomic_add into buffers zeroed
// by the caller; a null incoming gradient pointer is treated as zero. An index out of range (a
// face's vertex, a Gaussian's face) is never dereferenced: the element's outputs are NaN, its
// gradients are skipped and the error slot is flagged (Exec::errors).
#pragma once

#include <cmath>

#include "rg/common.h"
#include "rg/math.h"
#include "rg/ops.h"

namespace rg {

RG_HD void add3(float* p, V3 v) {
  atomic_add(p, v.x);
  atomic_add(p + 1, v.y);
  atomic_add(p + 2, v.z);
}

RG_HD bool finite3(V3 v) { return std::isfinite(v.x) && std::isfinite(v.y) && std::isfinite(v.z); }

RG_HD bool in_range(int i, int n) { return i >= 0 && i < n; }

// True when the three vertex indices of face f are in [0, V) (else flags kErrFaces).
RG_HD bool face_ok(const FramesArgs& a, long long f) {
  const int* fc = a.faces + 3 * f;
  if (in_range(fc[0], a.V) && in_range(fc[1], a.V) && in_range(fc[2], a.V)) return true;
  flag_error(a.errors, kErrFaces);
  return false;
}

// Element idx = b * F + f -> centroids [B,F,3], rotations [B,F,3,3], sqrt_areas [B,F].
RG_HD void frames_fwd_one(const FramesArgs& a, long long idx) {
  const long long b = idx / a.F, f = idx % a.F;
  V3 T;
  M3 R;
  float s;
  if (face_ok(a, f)) {
    const float* vb = a.vertices + b * a.V * 3;
    const int* fc = a.faces + 3 * f;
    triangle_frame(load3(vb + 3 * fc[0]), load3(vb + 3 * fc[1]), load3(vb + 3 * fc[2]), T, R, s);
  } else {
    const float nan = NAN;
    T = {nan, nan, nan};
    for (int k = 0; k < 9; ++k) R.m[k] = nan;
    s = nan;
  }
  a.centroids[3 * idx] = T.x;
  a.centroids[3 * idx + 1] = T.y;
  a.centroids[3 * idx + 2] = T.z;
  for (int k = 0; k < 9; ++k) a.rotations[9 * idx + k] = R.m[k];
  a.sqrt_areas[idx] = s;
}

RG_HD void frames_bwd_one(const FramesArgs& a, long long idx) {
  const long long b = idx / a.F, f = idx % a.F;
  if (!face_ok(a, f)) return;
  const float* vb = a.vertices + b * a.V * 3;
  const int i0 = a.faces[3 * f], i1 = a.faces[3 * f + 1], i2 = a.faces[3 * f + 2];
  const V3 v0 = load3(vb + 3 * i0), v1 = load3(vb + 3 * i1), v2 = load3(vb + 3 * i2);
  // A triangle with a non-finite corner (check_finite=False) has its Gaussians culled: it passes
  // no gradient, since its NaN Jacobian times a zero incoming gradient would poison the corners
  // it shares with finite triangles.
  if (!finite3(v0) || !finite3(v1) || !finite3(v2)) return;
  V3 gT{0.f, 0.f, 0.f};
  M3 gR = zeros3();
  float gs = 0.f;
  if (a.v_centroids) gT = load3(a.v_centroids + 3 * idx);
  if (a.v_rotations) gR = load33(a.v_rotations + 9 * idx);
  if (a.v_sqrt_areas) gs = a.v_sqrt_areas[idx];
  int slot[3];
  V3 g[3];
  const int m = triangle_frame_vjp_merged(v0, v1, v2, i0, i1, i2, gT, gR, gs, slot, g);
  const int ids[3] = {i0, i1, i2};
  float* gb = a.v_vertices + b * a.V * 3;
  for (int k = 0; k < m; ++k) add3(gb + 3 * ids[slot[k]], g[k]);
}

// The face (pose-major index into the frames) of element idx = b * N + n, or -1 when face_ids[n]
// is out of range (flags kErrFaceIds).
RG_HD long long deform_face(const DeformArgs& a, long long idx) {
  const long long b = idx / a.N, n = idx % a.N;
  const int fid = a.face_ids[n];
  if (!in_range(fid, a.F)) {
    flag_error(a.errors, kErrFaceIds);
    return -1;
  }
  return b * a.F + fid;
}

// Element idx = b * N + n: local Gaussian n deformed by the frame of its face in pose b.
RG_HD void deform_fwd_one(const DeformArgs& a, long long idx) {
  const long long n = idx % a.N;
  const long long f = deform_face(a, idx);
  if (f < 0) {
    for (int k = 0; k < 3; ++k) a.out_means[3 * idx + k] = a.out_scales[3 * idx + k] = NAN;
    for (int k = 0; k < 4; ++k) a.out_quats[4 * idx + k] = NAN;
    return;
  }
  const M3 R = load33(a.rotations + 9 * f);
  const float s = a.sqrt_areas[f];
  const V3 m = load3(a.centroids + 3 * f) + s * mulv(R, load3(a.means + 3 * n));
  a.out_means[3 * idx] = m.x;
  a.out_means[3 * idx + 1] = m.y;
  a.out_means[3 * idx + 2] = m.z;
  const Q4 p = rotmat_to_quat(R);
  const float* qn = a.quats + 4 * n;
  const Q4 r = quat_mul(p, Q4{qn[0], qn[1], qn[2], qn[3]});
  a.out_quats[4 * idx] = r.w;
  a.out_quats[4 * idx + 1] = r.x;
  a.out_quats[4 * idx + 2] = r.y;
  a.out_quats[4 * idx + 3] = r.z;
  for (int k = 0; k < 3; ++k) a.out_scales[3 * idx + k] = s * expf(a.log_scales[3 * n + k]);
}

RG_HD void deform_bwd_one(const DeformArgs& a, long long idx) {
  const long long n = idx % a.N;
  const long long f = deform_face(a, idx);
  if (f < 0) return;
  const M3 R = load33(a.rotations + 9 * f);
  const float s = a.sqrt_areas[f];
  const V3 mu = load3(a.means + 3 * n);
  M3 gR = zeros3();
  float gs = 0.f;
  if (a.v_out_means) {
    const V3 g = load3(a.v_out_means + 3 * idx);
    add3(a.v_centroids + 3 * f, g);
    add3(a.v_means + 3 * n, s * mulTv(R, g));
    gs += dot(g, mulv(R, mu));
    const float gv[3] = {g.x, g.y, g.z}, mv[3] = {mu.x, mu.y, mu.z};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) gR(i, j) += s * gv[i] * mv[j];
  }
  if (a.v_out_quats) {
    const Q4 p = rotmat_to_quat(R);
    const float* qn = a.quats + 4 * n;
    const float* gq = a.v_out_quats + 4 * idx;
    Q4 vp, vq;
    quat_mul_vjp(p, Q4{qn[0], qn[1], qn[2], qn[3]}, Q4{gq[0], gq[1], gq[2], gq[3]}, vp, vq);
    atomic_add(a.v_quats + 4 * n, vq.w);
    atomic_add(a.v_quats + 4 * n + 1, vq.x);
    atomic_add(a.v_quats + 4 * n + 2, vq.y);
    atomic_add(a.v_quats + 4 * n + 3, vq.z);
    const M3 gRq = rotmat_to_quat_vjp(R, vp);
    for (int k = 0; k < 9; ++k) gR.m[k] += gRq.m[k];
  }
  if (a.v_out_scales) {
    for (int k = 0; k < 3; ++k) {
      const float e = expf(a.log_scales[3 * n + k]);
      const float g = a.v_out_scales[3 * idx + k];
      atomic_add(a.v_log_scales + 3 * n + k, g * s * e);
      gs += g * e;
    }
  }
  for (int k = 0; k < 9; ++k) atomic_add(a.v_rotations + 9 * f + k, gR.m[k]);
  atomic_add(a.v_sqrt_areas + f, gs);
}

}  // namespace rg
