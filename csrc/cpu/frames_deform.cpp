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
#include <numeric>
#include <vector>

#include "ops_cpu.h"
#include "parallel.h"
#include "rg/frames.h"

namespace rg::cpu {

namespace {
constexpr long long kGrain = 2048;
}

void triangle_frames_fwd_cpu(const float* vertices, const int* faces, int B, int V, int F,
                             float* centroids, float* rotations, float* sqrt_areas) {
  parallel_for((long long)B * F, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      frames_fwd_one(vertices, faces, V, F, i, centroids, rotations, sqrt_areas);
  });
}

void triangle_frames_bwd_cpu(const float* vertices, const int* faces, int B, int V, int F,
                             const float* v_centroids, const float* v_rotations,
                             const float* v_sqrt_areas, float* v_vertices) {
  if (B <= 0 || F <= 0) return;
  // corner row c = 3 f + k: vertex faces[c] of face f; a repeated vertex of a face maps to the
  // row of its first corner, so the kernel still merges its terms as for the real indices
  const long long corners = 3ll * F, rows = (long long)B * corners;
  std::vector<int> faces2(corners);
  for (long long c = 0; c < corners; ++c) {
    const long long f0 = c - c % 3;
    long long first = c;
    for (long long k = f0; k < c; ++k)
      if (faces[k] == faces[c]) {
        first = k;
        break;
      }
    faces2[c] = (int)first;
  }
  std::vector<float> verts2(rows * 3), v_verts2(rows * 3, 0.f);
  parallel_for(rows, 4 * kGrain, [&](long long b, long long e) {
    for (long long r = b; r < e; ++r) {
      const float* v = vertices + ((r / corners) * V + faces[r % corners]) * 3;
      for (int k = 0; k < 3; ++k) verts2[3 * r + k] = v[k];
    }
  });
  const int V2 = (int)corners;
  parallel_for((long long)B * F, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      frames_bwd_one(verts2.data(), faces2.data(), V2, F, i, v_centroids, v_rotations,
                     v_sqrt_areas, v_verts2.data());
  });
  ordered_scatter_add(
      rows, (long long)B * V,
      [&](long long r) { return (r / corners) * V + faces[r % corners]; },
      [&](long long r, long long t) {
        for (int k = 0; k < 3; ++k) v_vertices[3 * t + k] += v_verts2[3 * r + k];
      });
}

void deform_fwd_cpu(const float* means, const float* quats, const float* log_scales,
                    const int* face_ids, const float* centroids, const float* rotations,
                    const float* sqrt_areas, int B, int N, int F, float* out_means,
                    float* out_quats, float* out_scales) {
  parallel_for((long long)B * N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      deform_fwd_one(means, quats, log_scales, face_ids, centroids, rotations, sqrt_areas, N, F,
                     i, out_means, out_quats, out_scales);
  });
}

void deform_bwd_cpu(const float* means, const float* quats, const float* log_scales,
                    const int* face_ids, const float* centroids, const float* rotations,
                    const float* sqrt_areas, int B, int N, int F, const float* v_out_means,
                    const float* v_out_quats, const float* v_out_scales, float* v_means,
                    float* v_quats, float* v_log_scales, float* v_centroids, float* v_rotations,
                    float* v_sqrt_areas) {
  if (B <= 0 || N <= 0) return;
  // per-(pose, Gaussian) frames: row r = b * N + n holds the frame of face face_ids[n] in pose b
  const long long rows = (long long)B * N;
  std::vector<int> ident(N);
  std::iota(ident.begin(), ident.end(), 0);
  std::vector<float> cent(rows * 3), rot(rows * 9), sa(rows);
  std::vector<float> v_cent(rows * 3, 0.f), v_rot(rows * 9, 0.f), v_sa(rows, 0.f);
  auto face_of = [&](long long r) { return (r / N) * F + face_ids[r % N]; };
  parallel_for(rows, 4 * kGrain, [&](long long b, long long e) {
    for (long long r = b; r < e; ++r) {
      const long long f = face_of(r);
      for (int k = 0; k < 3; ++k) cent[3 * r + k] = centroids[3 * f + k];
      for (int k = 0; k < 9; ++k) rot[9 * r + k] = rotations[9 * f + k];
      sa[r] = sqrt_areas[f];
    }
  });
  parallel_for(N, kGrain, [&](long long b, long long e) {
    for (long long n = b; n < e; ++n)
      for (int p = 0; p < B; ++p)
        deform_bwd_one(means, quats, log_scales, ident.data(), cent.data(), rot.data(),
                       sa.data(), N, N, (long long)p * N + n, v_out_means, v_out_quats,
                       v_out_scales, v_means, v_quats, v_log_scales, v_cent.data(),
                       v_rot.data(), v_sa.data());
  });
  ordered_scatter_add(rows, (long long)B * F, face_of, [&](long long r, long long f) {
    for (int k = 0; k < 3; ++k) v_centroids[3 * f + k] += v_cent[3 * r + k];
    for (int k = 0; k < 9; ++k) v_rotations[9 * f + k] += v_rot[9 * r + k];
    v_sqrt_areas[f] += v_sa[r];
  });
}

}  // namespace rg::cpu
