// Host/device math of rigged_gaussians, shared by the CPU backend (csrc/cpu) and the CUDA
// backend (csrc/cuda): vectors, quaternions, triangle frames, covariance, perspective EWA
// projection, spherical harmonics and their derivatives (VJPs).
//
// These functions follow docs/CONTRACTS.md and gsplat's conventions (OpenCV cameras, wxyz
// quaternions, eps2d low-pass, per-axis radius ceil(3.33 sigma), 1.3 tan(fov) clamp).
#pragma once

#include <cmath>
#include <cstdint>

#include "rg/common.h"

namespace rg {


struct V3 {
  float x, y, z;
};

RG_HD V3 v3(float x, float y, float z) { return V3{x, y, z}; }
RG_HD V3 operator+(V3 a, V3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
RG_HD V3 operator-(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
RG_HD V3 operator*(float s, V3 a) { return {s * a.x, s * a.y, s * a.z}; }
RG_HD float dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
RG_HD V3 cross(V3 a, V3 b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
RG_HD V3 load3(const float* p) { return {p[0], p[1], p[2]}; }

// Row-major 3x3 matrix: m[3 * row + col].
struct M3 {
  float m[9];
  RG_HD float& operator()(int r, int c) { return m[3 * r + c]; }
  RG_HD float operator()(int r, int c) const { return m[3 * r + c]; }
};

RG_HD M3 zeros3() {
  M3 r;
#pragma unroll
  for (int i = 0; i < 9; ++i) r.m[i] = 0.f;
  return r;
}
RG_HD M3 load33(const float* p) {
  M3 r;
#pragma unroll
  for (int i = 0; i < 9; ++i) r.m[i] = p[i];
  return r;
}
RG_HD M3 mul(const M3& a, const M3& b) {
  M3 r;
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j)
      r(i, j) = a(i, 0) * b(0, j) + a(i, 1) * b(1, j) + a(i, 2) * b(2, j);
  return r;
}
RG_HD M3 transpose(const M3& a) {
  M3 r;
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j) r(i, j) = a(j, i);
  return r;
}
RG_HD V3 mulv(const M3& a, V3 v) {
  return {a(0, 0) * v.x + a(0, 1) * v.y + a(0, 2) * v.z,
          a(1, 0) * v.x + a(1, 1) * v.y + a(1, 2) * v.z,
          a(2, 0) * v.x + a(2, 1) * v.y + a(2, 2) * v.z};
}
RG_HD V3 mulTv(const M3& a, V3 v) {  // a^T v
  return {a(0, 0) * v.x + a(1, 0) * v.y + a(2, 0) * v.z,
          a(0, 1) * v.x + a(1, 1) * v.y + a(2, 1) * v.z,
          a(0, 2) * v.x + a(1, 2) * v.y + a(2, 2) * v.z};
}

// ---------------------------------------------------------------- quaternions (w, x, y, z)
struct Q4 {
  float w, x, y, z;
};

RG_HD float safe_norm3(V3 a) { return sqrtf(fmaxf(dot(a, a), 1e-24f)); }

// Normalised quaternion -> rotation matrix (row-major), gsplat/standard convention.
RG_HD M3 quat_to_rotmat(Q4 q) {
  const float w = q.w, x = q.x, y = q.y, z = q.z;
  M3 r;
  r(0, 0) = 1.f - 2.f * (y * y + z * z);
  r(0, 1) = 2.f * (x * y - w * z);
  r(0, 2) = 2.f * (x * z + w * y);
  r(1, 0) = 2.f * (x * y + w * z);
  r(1, 1) = 1.f - 2.f * (x * x + z * z);
  r(1, 2) = 2.f * (y * z - w * x);
  r(2, 0) = 2.f * (x * z - w * y);
  r(2, 1) = 2.f * (y * z + w * x);
  r(2, 2) = 1.f - 2.f * (x * x + y * y);
  return r;
}

// VJP of quat_to_rotmat for a normalised quaternion.
RG_HD Q4 quat_to_rotmat_vjp(Q4 q, const M3& g) {
  const float w = q.w, x = q.x, y = q.y, z = q.z;
  Q4 v;
  v.w = 2.f * (-z * g(0, 1) + y * g(0, 2) + z * g(1, 0) - x * g(1, 2) - y * g(2, 0) + x * g(2, 1));
  v.x = 2.f * (y * g(0, 1) + z * g(0, 2) + y * g(1, 0) - 2.f * x * g(1, 1) - w * g(1, 2) +
               z * g(2, 0) + w * g(2, 1) - 2.f * x * g(2, 2));
  v.y = 2.f * (-2.f * y * g(0, 0) + x * g(0, 1) + w * g(0, 2) + x * g(1, 0) + z * g(1, 2) -
               w * g(2, 0) + z * g(2, 1) - 2.f * y * g(2, 2));
  v.z = 2.f * (-2.f * z * g(0, 0) - w * g(0, 1) + x * g(0, 2) + w * g(1, 0) - 2.f * z * g(1, 1) +
               y * g(1, 2) + x * g(2, 0) + y * g(2, 1));
  return v;
}

RG_HD float quat_norm(Q4 q) {
  return sqrtf(fmaxf(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z, 1e-24f));
}
RG_HD Q4 quat_normalize(Q4 q) {
  const float inv = 1.f / quat_norm(q);
  return {q.w * inv, q.x * inv, q.y * inv, q.z * inv};
}
// VJP of q -> q / |q| given the raw q and the gradient w.r.t. the normalised one.
RG_HD Q4 quat_normalize_vjp(Q4 q, Q4 v) {
  const float n = quat_norm(q);
  const float inv = 1.f / n;
  const Q4 u{q.w * inv, q.x * inv, q.y * inv, q.z * inv};
  const float d = u.w * v.w + u.x * v.x + u.y * v.y + u.z * v.z;
  return {(v.w - u.w * d) * inv, (v.x - u.x * d) * inv, (v.y - u.y * d) * inv,
          (v.z - u.z * d) * inv};
}

// Hamilton product p (x) q.
RG_HD Q4 quat_mul(Q4 p, Q4 q) {
  return {p.w * q.w - p.x * q.x - p.y * q.y - p.z * q.z,
          p.w * q.x + p.x * q.w + p.y * q.z - p.z * q.y,
          p.w * q.y - p.x * q.z + p.y * q.w + p.z * q.x,
          p.w * q.z + p.x * q.y - p.y * q.x + p.z * q.w};
}
RG_HD void quat_mul_vjp(Q4 p, Q4 q, Q4 g, Q4& vp, Q4& vq) {
  vp.w = g.w * q.w + g.x * q.x + g.y * q.y + g.z * q.z;
  vp.x = -g.w * q.x + g.x * q.w - g.y * q.z + g.z * q.y;
  vp.y = -g.w * q.y + g.x * q.z + g.y * q.w - g.z * q.x;
  vp.z = -g.w * q.z - g.x * q.y + g.y * q.x + g.z * q.w;
  vq.w = g.w * p.w + g.x * p.x + g.y * p.y + g.z * p.z;
  vq.x = -g.w * p.x + g.x * p.w + g.y * p.z - g.z * p.y;
  vq.y = -g.w * p.y - g.x * p.z + g.y * p.w + g.z * p.x;
  vq.z = -g.w * p.z + g.x * p.y - g.y * p.x + g.z * p.w;
}

// Rotation matrix -> quaternion (Shepperd's method: trace branch first, then the largest
// diagonal element). Returns the branch so the VJP follows the same one.
// Every branch has one "big" component = r/2 with r = sqrt(1 + sum_i sd_i R_ii) and three
// components = (sum of two signed off-diagonal entries) / (2 r).
struct MatQuatBranch {
  int big;        // index (0 w, 1 x, 2 y, 3 z) of the component r/2
  float sd[3];    // signs of R00, R11, R22 inside r
  int oi[3][2];   // for the three other components (in order of index), two entries (flat idx)
  float os[3][2]; // and their signs
  int comp[3];    // the component indices of those three
};

RG_HD MatQuatBranch mat_quat_branch(const M3& R) {
  MatQuatBranch b;
  const float tr = R(0, 0) + R(1, 1) + R(2, 2);
  if (tr > 0.f) {
    b = MatQuatBranch{0, {1.f, 1.f, 1.f}, {{7, 5}, {2, 6}, {3, 1}},
                      {{1.f, -1.f}, {1.f, -1.f}, {1.f, -1.f}}, {1, 2, 3}};
  } else if (R(0, 0) > R(1, 1) && R(0, 0) > R(2, 2)) {
    b = MatQuatBranch{1, {1.f, -1.f, -1.f}, {{7, 5}, {1, 3}, {2, 6}},
                      {{1.f, -1.f}, {1.f, 1.f}, {1.f, 1.f}}, {0, 2, 3}};
  } else if (R(1, 1) > R(2, 2)) {
    b = MatQuatBranch{2, {-1.f, 1.f, -1.f}, {{2, 6}, {1, 3}, {5, 7}},
                      {{1.f, -1.f}, {1.f, 1.f}, {1.f, 1.f}}, {0, 1, 3}};
  } else {
    b = MatQuatBranch{3, {-1.f, -1.f, 1.f}, {{3, 1}, {2, 6}, {5, 7}},
                      {{1.f, -1.f}, {1.f, 1.f}, {1.f, 1.f}}, {0, 1, 2}};
  }
  return b;
}

RG_HD float mat_quat_r(const M3& R, const MatQuatBranch& b) {
  return sqrtf(fmaxf(1.f + b.sd[0] * R(0, 0) + b.sd[1] * R(1, 1) + b.sd[2] * R(2, 2), 1e-12f));
}

RG_HD Q4 rotmat_to_quat(const M3& R) {
  const MatQuatBranch b = mat_quat_branch(R);
  const float r = mat_quat_r(R, b);
  float c[4];
  c[b.big] = 0.5f * r;
#pragma unroll
  for (int k = 0; k < 3; ++k)
    c[b.comp[k]] = (b.os[k][0] * R.m[b.oi[k][0]] + b.os[k][1] * R.m[b.oi[k][1]]) / (2.f * r);
  return {c[0], c[1], c[2], c[3]};
}

RG_HD M3 rotmat_to_quat_vjp(const M3& R, Q4 vq) {
  const MatQuatBranch b = mat_quat_branch(R);
  const float r = mat_quat_r(R, b);
  const float v[4] = {vq.w, vq.x, vq.y, vq.z};
  M3 g = zeros3();
  float v_r = 0.5f * v[b.big];
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const float a = b.os[k][0] * R.m[b.oi[k][0]] + b.os[k][1] * R.m[b.oi[k][1]];
    const float vk = v[b.comp[k]];
    v_r -= vk * a / (2.f * r * r);
    g.m[b.oi[k][0]] += b.os[k][0] * vk / (2.f * r);
    g.m[b.oi[k][1]] += b.os[k][1] * vk / (2.f * r);
  }
  const float v_d = v_r / (2.f * r);
  g(0, 0) += b.sd[0] * v_d;
  g(1, 1) += b.sd[1] * v_d;
  g(2, 2) += b.sd[2] * v_d;
  return g;
}

// ---------------------------------------------------------------- triangle frames
// Frame of face (v0, v1, v2) per CONTRACTS.md: T centroid, R = [t | n | b] (columns),
// sqrt_area = sqrt(max(|c|/2, 1e-12)).
RG_HD void triangle_frame(V3 v0, V3 v1, V3 v2, V3& T, M3& R, float& sqrt_area) {
  T = (1.f / 3.f) * (v0 + v1 + v2);
  const V3 e = v1 - v0, e2 = v2 - v0;
  const V3 c = cross(e, e2);
  const V3 t = (1.f / safe_norm3(e)) * e;
  const float nc = safe_norm3(c);
  const V3 n = (1.f / nc) * c;
  const V3 bb = cross(t, n);
  R(0, 0) = t.x; R(1, 0) = t.y; R(2, 0) = t.z;
  R(0, 1) = n.x; R(1, 1) = n.y; R(2, 1) = n.z;
  R(0, 2) = bb.x; R(1, 2) = bb.y; R(2, 2) = bb.z;
  sqrt_area = sqrtf(fmaxf(0.5f * nc, 1e-12f));
}

// VJP of x -> x / sqrt(max(x.x, 1e-24)).
RG_HD V3 normalize_vjp(V3 x, V3 v) {
  const float d2 = dot(x, x);
  const float n = sqrtf(fmaxf(d2, 1e-24f));
  if (d2 <= 1e-24f) return (1.f / n) * v;
  const V3 u = (1.f / n) * x;
  return (1.f / n) * (v - dot(u, v) * u);
}

// VJP of triangle_frame split into parts, so that a face whose vertex indices repeat (a
// zero-area triangle such as (i, i, j)) can cancel its O(1e12) terms exactly before they reach
// memory (see triangle_frame_vjp_merged). With gTc = gT / 3, A the gradient through the edge
// normalisation and P = cross(e2, gc), Q = cross(gc, e) the gradients through c = e x e2:
//   g0 = gTc - (A + (P + Q)),  g1 = gTc + (A + P),  g2 = gTc + Q.
struct FrameVjpParts {
  V3 gTc, A, P, Q;
};

RG_HD FrameVjpParts triangle_frame_vjp_parts(V3 v0, V3 v1, V3 v2, V3 gT, const M3& gR,
                                             float g_sa) {
  const V3 e = v1 - v0, e2 = v2 - v0;
  const V3 c = cross(e, e2);
  const V3 t = (1.f / safe_norm3(e)) * e;
  const float c2 = dot(c, c);
  const float nc = sqrtf(fmaxf(c2, 1e-24f));
  const V3 n = (1.f / nc) * c;
  V3 gt{gR(0, 0), gR(1, 0), gR(2, 0)};
  V3 gn{gR(0, 1), gR(1, 1), gR(2, 1)};
  const V3 gb{gR(0, 2), gR(1, 2), gR(2, 2)};
  gt = gt + cross(n, gb);  // b = t x n
  gn = gn + cross(gb, t);
  FrameVjpParts p;
  p.A = normalize_vjp(e, gt);
  V3 gc = normalize_vjp(c, gn);
  const float S = 0.5f * nc;
  if (S > 1e-12f && c2 > 1e-24f) {
    const float sa = sqrtf(S);
    const float g_nc = g_sa * 0.5f / sa * 0.5f;
    gc = gc + (g_nc / nc) * c;
  }
  p.P = cross(e2, gc);  // c = e x e2
  p.Q = cross(gc, e);
  p.gTc = (1.f / 3.f) * gT;
  return p;
}

RG_HD void triangle_frame_vjp(V3 v0, V3 v1, V3 v2, V3 gT, const M3& gR, float g_sa, V3& g0,
                              V3& g1, V3& g2) {
  const FrameVjpParts p = triangle_frame_vjp_parts(v0, v1, v2, gT, gR, g_sa);
  g0 = p.gTc - (p.A + (p.P + p.Q));
  g1 = p.gTc + (p.A + p.P);
  g2 = p.gTc + p.Q;
}

// Gradients of the DISTINCT vertices of face (i0, i1, i2): slots whose index repeats are merged
// with their large terms summed first (they cancel exactly: e = 0 when i0 == i1, e2 = 0 when
// i0 == i2, e2 == e when i1 == i2). Writes n_out (1..3) pairs (slot index, gradient).
RG_HD int triangle_frame_vjp_merged(V3 v0, V3 v1, V3 v2, int i0, int i1, int i2, V3 gT,
                                    const M3& gR, float g_sa, int* slot, V3* g) {
  const FrameVjpParts p = triangle_frame_vjp_parts(v0, v1, v2, gT, gR, g_sa);
  const V3 twoT = 2.f * p.gTc;
  if (i0 == i1 && i1 == i2) {
    slot[0] = 0;
    g[0] = 3.f * p.gTc;
    return 1;
  }
  if (i0 == i1) {  // A and P cancel between slots 0 and 1
    slot[0] = 0;
    g[0] = twoT - p.Q;
    slot[1] = 2;
    g[1] = p.gTc + p.Q;
    return 2;
  }
  if (i0 == i2) {  // Q cancels between slots 0 and 2
    slot[0] = 0;
    g[0] = twoT - (p.A + p.P);
    slot[1] = 1;
    g[1] = p.gTc + (p.A + p.P);
    return 2;
  }
  if (i1 == i2) {  // P + Q = cross(e2 - e, gc) = 0 exactly
    const V3 s = p.A + (p.P + p.Q);
    slot[0] = 0;
    g[0] = p.gTc - s;
    slot[1] = 1;
    g[1] = twoT + s;
    return 2;
  }
  slot[0] = 0;
  g[0] = p.gTc - (p.A + (p.P + p.Q));
  slot[1] = 1;
  g[1] = p.gTc + (p.A + p.P);
  slot[2] = 2;
  g[2] = p.gTc + p.Q;
  return 3;
}

// ---------------------------------------------------------------- covariance and EWA
// Sigma = (R S)(R S)^T with S = diag(s).
RG_HD M3 covariance(const M3& R, V3 s) {
  M3 M;
  const float sv[3] = {s.x, s.y, s.z};
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j) M(i, j) = R(i, j) * sv[j];
  return mul(M, transpose(M));
}
// VJP: given symmetric gradient gS of Sigma, return gradients of R and s.
RG_HD void covariance_vjp(const M3& R, V3 s, const M3& gS, M3& gR, V3& gs) {
  const float sv[3] = {s.x, s.y, s.z};
  M3 M;
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j) M(i, j) = R(i, j) * sv[j];
  M3 Gs;  // symmetrised
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j) Gs(i, j) = gS(i, j) + gS(j, i);
  const M3 gM = mul(Gs, M);
  float g[3] = {0.f, 0.f, 0.f};
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j) {
      gR(i, j) = gM(i, j) * sv[j];
      g[j] += gM(i, j) * R(i, j);
    }
  gs = {g[0], g[1], g[2]};
}

struct Cam {
  M3 R;  // world->camera rotation
  V3 t;
  float fx, fy, cx, cy;
  int width, height;
};

// Perspective EWA: camera-space mean/cov -> 2D mean and 2x2 cov (a, b, c) (before eps2d).
RG_HD void persp_proj(V3 p, const M3& cov, const Cam& cam, float& mx, float& my, float& a,
                       float& b, float& c) {
  const float tan_fovx = 0.5f * cam.width / cam.fx, tan_fovy = 0.5f * cam.height / cam.fy;
  const float lim_xp = (cam.width - cam.cx) / cam.fx + 0.3f * tan_fovx;
  const float lim_xn = cam.cx / cam.fx + 0.3f * tan_fovx;
  const float lim_yp = (cam.height - cam.cy) / cam.fy + 0.3f * tan_fovy;
  const float lim_yn = cam.cy / cam.fy + 0.3f * tan_fovy;
  const float rz = 1.f / p.z, rz2 = rz * rz;
  const float tx = p.z * fminf(lim_xp, fmaxf(-lim_xn, p.x * rz));
  const float ty = p.z * fminf(lim_yp, fmaxf(-lim_yn, p.y * rz));
  const float J00 = cam.fx * rz, J02 = -cam.fx * tx * rz2, J11 = cam.fy * rz,
              J12 = -cam.fy * ty * rz2;
  // JC = J cov (2x3)
  const float A0 = J00 * cov(0, 0) + J02 * cov(2, 0), A1 = J00 * cov(0, 1) + J02 * cov(2, 1),
              A2 = J00 * cov(0, 2) + J02 * cov(2, 2);
  const float B0 = J11 * cov(1, 0) + J12 * cov(2, 0), B1 = J11 * cov(1, 1) + J12 * cov(2, 1),
              B2 = J11 * cov(1, 2) + J12 * cov(2, 2);
  a = A0 * J00 + A2 * J02;
  b = A1 * J11 + A2 * J12;
  c = B1 * J11 + B2 * J12;
  mx = cam.fx * p.x * rz + cam.cx;
  my = cam.fy * p.y * rz + cam.cy;
}

// VJP of persp_proj. g_a, g_b, g_c are gradients of the symmetric 2x2 entries where g_b is the
// gradient of the off-diagonal entry of a symmetric matrix (counted once).
RG_HD void persp_proj_vjp(V3 p, const M3& cov, const Cam& cam, float gmx, float gmy, float ga,
                           float gb, float gc, V3& gp, M3& gcov) {
  const float tan_fovx = 0.5f * cam.width / cam.fx, tan_fovy = 0.5f * cam.height / cam.fy;
  const float lim_xp = (cam.width - cam.cx) / cam.fx + 0.3f * tan_fovx;
  const float lim_xn = cam.cx / cam.fx + 0.3f * tan_fovx;
  const float lim_yp = (cam.height - cam.cy) / cam.fy + 0.3f * tan_fovy;
  const float lim_yn = cam.cy / cam.fy + 0.3f * tan_fovy;
  const float rz = 1.f / p.z, rz2 = rz * rz, rz3 = rz2 * rz;
  const float ux = p.x * rz, uy = p.y * rz;
  const bool clip_x = ux > lim_xp || ux < -lim_xn;
  const bool clip_y = uy > lim_yp || uy < -lim_yn;
  const float tx = p.z * fminf(lim_xp, fmaxf(-lim_xn, ux));
  const float ty = p.z * fminf(lim_yp, fmaxf(-lim_yn, uy));
  float J[2][3] = {{cam.fx * rz, 0.f, -cam.fx * tx * rz2}, {0.f, cam.fy * rz, -cam.fy * ty * rz2}};
  // cov2d = J cov J^T ; G = [[ga, gb/2],[gb/2, gc]]
  const float G[2][2] = {{ga, 0.5f * gb}, {0.5f * gb, gc}};
  // gcov = J^T G J
#pragma unroll
  for (int i = 0; i < 3; ++i)
#pragma unroll
    for (int j = 0; j < 3; ++j) {
      float s = 0.f;
#pragma unroll
      for (int k = 0; k < 2; ++k)
#pragma unroll
        for (int l = 0; l < 2; ++l) s += J[k][i] * G[k][l] * J[l][j];
      gcov(i, j) = s;
    }
  // gJ = 2 G J cov (cov, G symmetric)
  float JC[2][3];
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int j = 0; j < 3; ++j)
      JC[k][j] = J[k][0] * cov(0, j) + J[k][1] * cov(1, j) + J[k][2] * cov(2, j);
  float gJ[2][3];
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int j = 0; j < 3; ++j) gJ[k][j] = 2.f * (G[k][0] * JC[0][j] + G[k][1] * JC[1][j]);
  // mean2d
  gp.x = cam.fx * rz * gmx;
  gp.y = cam.fy * rz * gmy;
  gp.z = -(cam.fx * p.x * gmx + cam.fy * p.y * gmy) * rz2;
  // J00 = fx/z, J11 = fy/z
  gp.z += -cam.fx * rz2 * gJ[0][0] - cam.fy * rz2 * gJ[1][1];
  // J02 = -fx tx / z^2
  if (clip_x) {
    gp.z += cam.fx * tx * rz3 * gJ[0][2];
  } else {
    gp.x += -cam.fx * rz2 * gJ[0][2];
    gp.z += 2.f * cam.fx * tx * rz3 * gJ[0][2];
  }
  if (clip_y) {
    gp.z += cam.fy * ty * rz3 * gJ[1][2];
  } else {
    gp.y += -cam.fy * rz2 * gJ[1][2];
    gp.z += 2.f * cam.fy * ty * rz3 * gJ[1][2];
  }
}

// ---------------------------------------------------------------- spherical harmonics
// Real SH basis (gsplat's constants) for a unit direction, degrees 0..3 -> (deg+1)^2 values.
RG_HD void sh_basis(int deg, V3 d, float* Y) {
  const float x = d.x, y = d.y, z = d.z;
  Y[0] = 0.2820947917738781f;
  if (deg < 1) return;
  Y[1] = -0.48860251190292f * y;
  Y[2] = 0.48860251190292f * z;
  Y[3] = -0.48860251190292f * x;
  if (deg < 2) return;
  const float z2 = z * z, fC1 = x * x - y * y, fS1 = 2.f * x * y;
  Y[4] = 0.5462742152960395f * fS1;
  Y[5] = -1.092548430592079f * z * y;
  Y[6] = 0.9461746957575601f * z2 - 0.3153915652525201f;
  Y[7] = -1.092548430592079f * z * x;
  Y[8] = 0.5462742152960395f * fC1;
  if (deg < 3) return;
  const float t0 = -2.285228997322329f * z2 + 0.4570457994644658f;
  const float t1 = 1.445305721320277f * z;
  const float fC2 = x * fC1 - y * fS1, fS2 = x * fS1 + y * fC1;
  Y[9] = -0.5900435899266435f * fS2;
  Y[10] = t1 * fS1;
  Y[11] = t0 * y;
  Y[12] = z * (1.865881662950577f * z2 - 1.119528997770346f);
  Y[13] = t0 * x;
  Y[14] = t1 * fC1;
  Y[15] = -0.5900435899266435f * fC2;
}

// Gradient w.r.t. the unit direction of sum_k w_k Y_k(d).
RG_HD V3 sh_basis_dir_vjp(int deg, V3 d, const float* w) {
  const float x = d.x, y = d.y, z = d.z;
  V3 g{0.f, 0.f, 0.f};
  if (deg < 1) return g;
  const float k1 = 0.48860251190292f;
  g.y += -k1 * w[1];
  g.z += k1 * w[2];
  g.x += -k1 * w[3];
  if (deg < 2) return g;
  const float k4 = 1.092548430592079f, k6 = 0.9461746957575601f, k8 = 0.5462742152960395f;
  g.x += k4 * y * w[4];
  g.y += k4 * x * w[4];
  g.y += -k4 * z * w[5];
  g.z += -k4 * y * w[5];
  g.z += 2.f * k6 * z * w[6];
  g.x += -k4 * z * w[7];
  g.z += -k4 * x * w[7];
  g.x += 2.f * k8 * x * w[8];
  g.y += -2.f * k8 * y * w[8];
  if (deg < 3) return g;
  const float k9 = 0.5900435899266435f, k10 = 2.f * 1.445305721320277f;
  const float a0 = -2.285228997322329f, a1 = 0.4570457994644658f;
  const float k12a = 1.865881662950577f, k12b = 1.119528997770346f;
  const float k14 = 1.445305721320277f;
  // Y9 = -k9 (3 x^2 y - y^3)
  g.x += -k9 * 6.f * x * y * w[9];
  g.y += -k9 * (3.f * x * x - 3.f * y * y) * w[9];
  // Y10 = k10 x y z
  g.x += k10 * y * z * w[10];
  g.y += k10 * x * z * w[10];
  g.z += k10 * x * y * w[10];
  // Y11 = (a0 z^2 + a1) y
  g.y += (a0 * z * z + a1) * w[11];
  g.z += 2.f * a0 * z * y * w[11];
  // Y12 = k12a z^3 - k12b z
  g.z += (3.f * k12a * z * z - k12b) * w[12];
  // Y13 = (a0 z^2 + a1) x
  g.x += (a0 * z * z + a1) * w[13];
  g.z += 2.f * a0 * z * x * w[13];
  // Y14 = k14 z (x^2 - y^2)
  g.x += 2.f * k14 * z * x * w[14];
  g.y += -2.f * k14 * z * y * w[14];
  g.z += k14 * (x * x - y * y) * w[14];
  // Y15 = -k9 (x^3 - 3 x y^2)
  g.x += -k9 * (3.f * x * x - 3.f * y * y) * w[15];
  g.y += k9 * 6.f * x * y * w[15];
  return g;
}

// ---------------------------------------------------------------- per-pixel alpha rules
constexpr float kAlphaMax = 0.999f;
constexpr float kAlphaMin = 1.f / 255.f;
constexpr float kTransmittanceMin = 1e-4f;
constexpr float kRadiusExtend = 3.33f;
constexpr float kRadiusMax = 1073741824.f;  // 2^30: radii are stored as int32

}  // namespace rg
