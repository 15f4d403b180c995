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

#include "frame_rows.h"
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
  FrameRows fr(a.B, a.N, a.F, a.face_ids, a.centroids, a.rotations, a.sqrt_areas);
  const DeformArgs a2 = fr.row_grads(fr.rows_of(a));
  const long long N = a.N;
  parallel_for(N, kGrain, [&](long long b, long long e) {
    for (long long n = b; n < e; ++n)
      for (int p = 0; p < a.B; ++p)
        if (fr.face_of(p * N + n) >= 0) deform_bwd_one(a2, p * N + n);
  });
  fr.scatter(a.v_centroids, a.v_rotations, a.v_sqrt_areas);
}

}  // namespace rg::cpu
