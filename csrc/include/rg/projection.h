// Per-(camera, Gaussian) projection, forward and backward, plain and rigged (fused
// deformation: the world mean and covariance are formed in registers from the local Gaussian
// and its triangle frame, never written to memory). Shared by the CUDA kernels (one thread per
// (camera, Gaussian)) and the CPU backend (a loop over chunks of them); gradients are
// accumulated with rg::atomic_add.
#pragma once

#include <cmath>

#include "rg/common.h"
#include "rg/math.h"
#include "rg/frames.h"
#include "rg/ops.h"

namespace rg {
struct Gauss {
  V3 mean;    // world mean
  M3 R;       // world rotation R_frame * R(q_hat) (or R(q_hat))
  Q4 qhat;    // normalised (local) quaternion
  V3 s;       // world scales
  M3 Rf;      // triangle rotation (rigged only)
  V3 mu_l;    // local mean (rigged only)
  V3 es;      // exp(log_scale) (rigged only)
  float sa;   // sqrt area (rigged only)
};

RG_HD Cam load_cam(const ProjArgs& a, int cam) {
  Cam c;
  const float* vm = a.viewmats + 16 * cam;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) c.R(i, j) = vm[4 * i + j];
  c.t = {vm[3], vm[7], vm[11]};
  const float* K = a.Ks + 9 * cam;
  c.fx = K[0];
  c.fy = K[4];
  c.cx = K[2];
  c.cy = K[5];
  c.width = a.width;
  c.height = a.height;
  return c;
}

template <bool RIGGED>
RG_HD Gauss load_gauss(const ProjArgs& a, int cam, int n) {
  Gauss g;
  const long long src = a.per_camera ? (long long)cam * a.N + n : n;
  const Q4 q{a.quats[4 * src], a.quats[4 * src + 1], a.quats[4 * src + 2], a.quats[4 * src + 3]};
  g.qhat = quat_normalize(q);
  const M3 Rq = quat_to_rotmat(g.qhat);
  if constexpr (RIGGED) {
    const int pose = cam / a.cams_per_pose;
    const long long f = (long long)pose * a.F + a.face_ids[n];
    g.Rf = load33(a.rotations + 9 * f);
    g.sa = a.sqrt_areas[f];
    const V3 T = load3(a.centroids + 3 * f);
    g.mu_l = load3(a.means + 3 * src);
    const V3 rm = mulv(g.Rf, g.mu_l);
    g.mean = T + g.sa * rm;
    g.R = mul(g.Rf, Rq);
    g.es = {expf(a.scales[3 * src]), expf(a.scales[3 * src + 1]), expf(a.scales[3 * src + 2])};
    g.s = g.sa * g.es;
  } else {
    g.mean = load3(a.means + 3 * src);
    g.R = Rq;
    g.s = load3(a.scales + 3 * src);
  }
  return g;
}

RG_HD V3 campos_of(const Cam& c) { return -1.f * mulTv(c.R, c.t); }

// The radius multiplier of a Gaussian of opacity o (gsplat's CUDA projection): the alpha = 1/255
// level sqrt(2 ln(255 o)) sigma, at most 3.33 sigma. Callers cull o < 1/255 and non-finite o
// first.
RG_HD float opacity_extent(float o) {
  return fminf(kRadiusExtend, sqrtf(2.f * logf(o / kAlphaMin)));
}

template <bool RIGGED>
RG_HD void projection_fwd_one(const ProjArgs& a, long long idx) {
  const int cam = (int)(idx / a.N), n = (int)(idx % a.N);
  a.radii[2 * idx] = 0;
  a.radii[2 * idx + 1] = 0;
  const Cam c = load_cam(a, cam);
  if constexpr (RIGGED) {
    if (!in_range(a.face_ids[n], a.F)) {  // never dereferenced: culled, flagged
      flag_error(a.errors, kErrFaceIds);
      a.depths[idx] = NAN;
      return;
    }
  }
  const Gauss g = load_gauss<RIGGED>(a, cam, n);
  const V3 pc = mulv(c.R, g.mean) + c.t;
  a.depths[idx] = pc.z;
  if (!(pc.z >= a.near_plane && pc.z <= a.far_plane)) return;  // also rejects NaN
  float extend = kRadiusExtend;
  if (a.opacities != nullptr) {
    const float o = a.opacities[a.opacities_per_camera ? idx : (long long)n];
    // a non-finite opacity (only with check_finite=False) is culled by every backend: the
    // rasterizer's alpha clamp would otherwise turn NaN or inf into kAlphaMax
    if (!std::isfinite(o)) return;
    if (a.tight_tiles) {
      if (o < kAlphaMin) return;  // alpha < 1/255 everywhere: never blended
      extend = opacity_extent(o);
    }
  }
  const M3 cov = covariance(g.R, g.s);
  const M3 covc = mul(mul(c.R, cov), transpose(c.R));
  float mx, my, ca, cb, cc;
  persp_proj(pc, covc, c, mx, my, ca, cb, cc);
  ca += a.eps2d;
  cc += a.eps2d;
  const float det = ca * cc - cb * cb;
  if (!(det > 0.f)) return;
  const float inv = 1.f / det;
  const float sx = sqrtf(ca), sy = sqrtf(cc);
  // radius_clip compares the opacity-independent 3.33 sigma radii (the images are then the same
  // with and without tight tiles); the kept radii are the opacity-aware ones, at least 1 pixel
  const float rx3 = ceilf(kRadiusExtend * sx), ry3 = ceilf(kRadiusExtend * sy);
  if (rx3 <= a.radius_clip && ry3 <= a.radius_clip) return;
  const float rx = extend == kRadiusExtend ? rx3 : fmaxf(ceilf(extend * sx), 1.f);
  const float ry = extend == kRadiusExtend ? ry3 : fmaxf(ceilf(extend * sy), 1.f);
  if (mx + rx <= 0.f || mx - rx >= a.width || my + ry <= 0.f || my - ry >= a.height) return;
  if (!std::isfinite(mx) || !std::isfinite(my) || !std::isfinite(inv)) return;
  // a radius beyond 2^30 px (absurdly large Gaussians) is clamped so the int32 cast is defined;
  // the tile range is clamped to the image anyway
  a.radii[2 * idx] = (int)fminf(rx, kRadiusMax);
  a.radii[2 * idx + 1] = (int)fminf(ry, kRadiusMax);
  a.means2d[2 * idx] = mx;
  a.means2d[2 * idx + 1] = my;
  a.conics[3 * idx] = cc * inv;
  a.conics[3 * idx + 1] = -cb * inv;
  a.conics[3 * idx + 2] = ca * inv;
  if (a.sh_degree >= 0) {
    const V3 dir = g.mean - campos_of(c);
    const V3 d = (1.f / safe_norm3(dir)) * dir;
    float Y[16];
    sh_basis(a.sh_degree, d, Y);
    const int nb = (a.sh_degree + 1) * (a.sh_degree + 1);
    const long long srcsh = a.sh_per_camera ? (long long)cam * a.N + n : n;
    const float* sh = a.sh + srcsh * a.K * 3;
    for (int ch = 0; ch < 3; ++ch) {
      float v = 0.f;
      for (int k = 0; k < nb; ++k) v += Y[k] * sh[3 * k + ch];
      a.colors[3 * idx + ch] = fmaxf(v + 0.5f, 0.f);
    }
  }
}

template <bool RIGGED>
RG_HD void projection_bwd_one(const ProjArgs& a, const ProjGrads& gr, long long idx) {
  if (a.radii[2 * idx] <= 0 && a.radii[2 * idx + 1] <= 0) return;
  const int cam = (int)(idx / a.N), n = (int)(idx % a.N);
  const Cam c = load_cam(a, cam);
  const Gauss g = load_gauss<RIGGED>(a, cam, n);
  const long long src = a.per_camera ? (long long)cam * a.N + n : n;
  const V3 pc = mulv(c.R, g.mean) + c.t;
  const M3 cov = covariance(g.R, g.s);
  const M3 covc = mul(mul(c.R, cov), transpose(c.R));

  // conic = inverse(cov2d + eps I); v_cov2d = -inv * V * inv with V = [[gx, gy/2],[gy/2, gz]]
  const float ci0 = a.conics[3 * idx], ci1 = a.conics[3 * idx + 1], ci2 = a.conics[3 * idx + 2];
  const float gx = gr.v_conics[3 * idx], gy = 0.5f * gr.v_conics[3 * idx + 1],
              gz = gr.v_conics[3 * idx + 2];
  // P = inv * V
  const float P00 = ci0 * gx + ci1 * gy, P01 = ci0 * gy + ci1 * gz;
  const float P10 = ci1 * gx + ci2 * gy, P11 = ci1 * gy + ci2 * gz;
  const float G00 = -(P00 * ci0 + P01 * ci1);
  const float G01 = -(P00 * ci1 + P01 * ci2);
  const float G11 = -(P10 * ci1 + P11 * ci2);
  V3 gpc;
  M3 gcovc;
  persp_proj_vjp(pc, covc, c, gr.v_means2d[2 * idx], gr.v_means2d[2 * idx + 1], G00, 2.f * G01,
                 G11, gpc, gcovc);
  if (gr.v_depths != nullptr) gpc.z += gr.v_depths[idx];
  // cam space -> world
  V3 gmean = mulTv(c.R, gpc);
  const M3 gcov = mul(mul(transpose(c.R), gcovc), c.R);
  M3 gRw;
  V3 gs;
  covariance_vjp(g.R, g.s, gcov, gRw, gs);

  // SH colours
  if (a.sh_degree >= 0 && gr.v_colors != nullptr) {
    const V3 dir = g.mean - campos_of(c);
    const V3 d = (1.f / safe_norm3(dir)) * dir;
    float Y[16];
    sh_basis(a.sh_degree, d, Y);
    const int nb = (a.sh_degree + 1) * (a.sh_degree + 1);
    const long long srcsh = a.sh_per_camera ? (long long)cam * a.N + n : n;
    const float* sh = a.sh + srcsh * a.K * 3;
    float* vsh = gr.v_sh + srcsh * a.K * 3;
    float vc[3];
    for (int ch = 0; ch < 3; ++ch) {
      float v = 0.f;
      for (int k = 0; k < nb; ++k) v += Y[k] * sh[3 * k + ch];
      vc[ch] = (v + 0.5f > 0.f) ? gr.v_colors[3 * idx + ch] : 0.f;
    }
    float w[16];
    for (int k = 0; k < nb; ++k) {
      w[k] = vc[0] * sh[3 * k] + vc[1] * sh[3 * k + 1] + vc[2] * sh[3 * k + 2];
      for (int ch = 0; ch < 3; ++ch)
        if (vc[ch] != 0.f) atomic_add(vsh + 3 * k + ch, Y[k] * vc[ch]);
    }
    const V3 gd = sh_basis_dir_vjp(a.sh_degree, d, w);
    gmean = gmean + normalize_vjp(dir, gd);
  }

  if constexpr (RIGGED) {
    const int pose = cam / a.cams_per_pose;
    const long long f = (long long)pose * a.F + a.face_ids[n];
    const M3 Rq = quat_to_rotmat(g.qhat);
    // R = Rf Rq
    const M3 gRf_rot = mul(gRw, transpose(Rq));
    const M3 gRq = mul(transpose(g.Rf), gRw);
    // mean = T + sa Rf mu
    const V3 rm = mulv(g.Rf, g.mu_l);
    const V3 gmu = g.sa * mulTv(g.Rf, gmean);
    float gsa = dot(gmean, rm);
    // s = sa * exp(ls)
    const V3 gls{gs.x * g.s.x, gs.y * g.s.y, gs.z * g.s.z};
    gsa += gs.x * g.es.x + gs.y * g.es.y + gs.z * g.es.z;
    const Q4 gqh = quat_to_rotmat_vjp(g.qhat, gRq);
    const Q4 q{a.quats[4 * src], a.quats[4 * src + 1], a.quats[4 * src + 2], a.quats[4 * src + 3]};
    const Q4 gq = quat_normalize_vjp(q, gqh);
    atomic_add(gr.v_means + 3 * src, gmu.x);
    atomic_add(gr.v_means + 3 * src + 1, gmu.y);
    atomic_add(gr.v_means + 3 * src + 2, gmu.z);
    atomic_add(gr.v_quats + 4 * src, gq.w);
    atomic_add(gr.v_quats + 4 * src + 1, gq.x);
    atomic_add(gr.v_quats + 4 * src + 2, gq.y);
    atomic_add(gr.v_quats + 4 * src + 3, gq.z);
    atomic_add(gr.v_scales + 3 * src, gls.x);
    atomic_add(gr.v_scales + 3 * src + 1, gls.y);
    atomic_add(gr.v_scales + 3 * src + 2, gls.z);
    atomic_add(gr.v_centroids + 3 * f, gmean.x);
    atomic_add(gr.v_centroids + 3 * f + 1, gmean.y);
    atomic_add(gr.v_centroids + 3 * f + 2, gmean.z);
    const float mu[3] = {g.mu_l.x, g.mu_l.y, g.mu_l.z};
    const float gm[3] = {gmean.x, gmean.y, gmean.z};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        atomic_add(gr.v_rotations + 9 * f + 3 * i + j, gRf_rot(i, j) + g.sa * gm[i] * mu[j]);
    atomic_add(gr.v_sqrt_areas + f, gsa);
  } else {
    const Q4 gqh = quat_to_rotmat_vjp(g.qhat, gRw);
    const Q4 q{a.quats[4 * src], a.quats[4 * src + 1], a.quats[4 * src + 2], a.quats[4 * src + 3]};
    const Q4 gq = quat_normalize_vjp(q, gqh);
    atomic_add(gr.v_means + 3 * src, gmean.x);
    atomic_add(gr.v_means + 3 * src + 1, gmean.y);
    atomic_add(gr.v_means + 3 * src + 2, gmean.z);
    atomic_add(gr.v_quats + 4 * src, gq.w);
    atomic_add(gr.v_quats + 4 * src + 1, gq.x);
    atomic_add(gr.v_quats + 4 * src + 2, gq.y);
    atomic_add(gr.v_quats + 4 * src + 3, gq.z);
    atomic_add(gr.v_scales + 3 * src, gs.x);
    atomic_add(gr.v_scales + 3 * src + 1, gs.y);
    atomic_add(gr.v_scales + 3 * src + 2, gs.z);
  }
}

}  // namespace rg
