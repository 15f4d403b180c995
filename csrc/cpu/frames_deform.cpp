// Triangle frames and the (unfused) deformation on the CPU: loops over the shared per-element
// math of rg/frames.h.
//
// The backwards are deterministic (bit-identical for any thread count): an output shared by
// several elements (a vertex by its faces, a face by its Gaussians) is never accumulated from
// several tasks. The kernels run on per-element copies of the shared inputs, with an identity
// index map, and write per-element gradient rows that ordered_scatter_add sums per target in
// element order; per-Gaussian outputs of the deformation (shared by the poses) are owned by one
// task that loops over the poses in order. Scratch in std::vectors: 18 floats per (pose, face)
// for the frames, 26 per (pose, Gaussian) for the deformation.
#include <cmath>
#include <numeric>
#include <vector>

#include "ops_cpu.h"
#include "parallel.h"
#include "rg/frames.h"

namespace rg::cpu {

namespace {
constexpr long long kGrain = 2048;
}

void triangle_frames_fwd(const FramesArgs& a) {
  parallel_for((long long)a.B * a.F, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i) frames_fwd_one(a, i);
  });
}

void triangle_frames_bwd(const FramesArgs& a) {
  if (a.B <= 0 || a.F <= 0) return;
  // corner row c = 3 f + k: vertex faces[c] of face f; a repeated vertex of a face maps to the
  // row of its first corner, so the kernel still merges its terms as for the real indices
  const long long corners = 3ll * a.F, rows = (long long)a.B * corners;
  std::vector<int> faces2(corners);
  for (long long c = 0; c < corners; ++c) {
    const long long f0 = c - c % 3;
    long long first = c;
    for (long long k = f0; k < c; ++k)
      if (a.faces[k] == a.faces[c]) {
        first = k;
        break;
      }
    faces2[c] = (int)first;
  }
  auto target = [&](long long r) -> long long {
    const int v = a.faces[r % corners];
    return in_range(v, a.V) ? (r / corners) * a.V + v : -1;  // -1: skipped
  };
  std::vector<float> verts2(rows * 3), v_verts2(rows * 3, 0.f);
  parallel_for(rows, 4 * kGrain, [&](long long b, long long e) {
    for (long long r = b; r < e; ++r) {
      const long long t = target(r);
      for (int k = 0; k < 3; ++k) verts2[3 * r + k] = t < 0 ? NAN : a.vertices[3 * t + k];
    }
  });
  FramesArgs a2 = a;
  a2.V = (int)corners;
  a2.vertices = verts2.data();
  a2.faces = faces2.data();
  a2.v_vertices = v_verts2.data();
  parallel_for((long long)a.B * a.F, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i) frames_bwd_one(a2, i);
  });
  ordered_scatter_add(rows, (long long)a.B * a.V, target, [&](long long r, long long t) {
    for (int k = 0; k < 3; ++k) a.v_vertices[3 * t + k] += v_verts2[3 * r + k];
  });
}

void deform_fwd(const DeformArgs& a) {
  parallel_for((long long)a.B * a.N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i) deform_fwd_one(a, i);
  });
}

void deform_bwd(const DeformArgs& a) {
  if (a.B <= 0 || a.N <= 0) return;
  // per-(pose, Gaussian) frames: row r = b * N + n holds the frame of face face_ids[n] in pose b
  const long long N = a.N, rows = (long long)a.B * N;
  std::vector<int> ident(N);
  std::iota(ident.begin(), ident.end(), 0);
  std::vector<float> cent(rows * 3), rot(rows * 9), sa(rows);
  std::vector<float> v_cent(rows * 3, 0.f), v_rot(rows * 9, 0.f), v_sa(rows, 0.f);
  auto face_of = [&](long long r) -> long long {
    const int fid = a.face_ids[r % N];
    return in_range(fid, a.F) ? (r / N) * a.F + fid : -1;  // -1: skipped
  };
  parallel_for(rows, 4 * kGrain, [&](long long b, long long e) {
    for (long long r = b; r < e; ++r) {
      const long long f = face_of(r);
      for (int k = 0; k < 3; ++k) cent[3 * r + k] = f < 0 ? NAN : a.centroids[3 * f + k];
      for (int k = 0; k < 9; ++k) rot[9 * r + k] = f < 0 ? NAN : a.rotations[9 * f + k];
      sa[r] = f < 0 ? NAN : a.sqrt_areas[f];
    }
  });
  DeformArgs a2 = a;
  a2.F = a.N;
  a2.face_ids = ident.data();
  a2.centroids = cent.data();
  a2.rotations = rot.data();
  a2.sqrt_areas = sa.data();
  a2.v_centroids = v_cent.data();
  a2.v_rotations = v_rot.data();
  a2.v_sqrt_areas = v_sa.data();
  parallel_for(N, kGrain, [&](long long b, long long e) {
    for (long long n = b; n < e; ++n)
      for (int p = 0; p < a.B; ++p)
        if (face_of(p * N + n) >= 0) deform_bwd_one(a2, p * N + n);
  });
  ordered_scatter_add(rows, (long long)a.B * a.F, face_of, [&](long long r, long long f) {
    for (int k = 0; k < 3; ++k) a.v_centroids[3 * f + k] += v_cent[3 * r + k];
    for (int k = 0; k < 9; ++k) a.v_rotations[9 * f + k] += v_rot[9 * r + k];
    a.v_sqrt_areas[f] += v_sa[r];
  });
}

}  // namespace rg::cpu
