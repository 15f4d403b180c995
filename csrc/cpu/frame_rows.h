// Per-(pose, Gaussian) copies of the triangle frames, for the deterministic backwards of the
// deformation and of the rigged projection (cpu/frames_deform.cpp, cpu/projection.cpp).
//
// A face's frame gradient is shared by all the Gaussians bound to it: the kernels run on a copy
// of the frames with one row per (pose, Gaussian), r = pose * N + n (face_ids -> identity), and
// write per-row gradients, which `scatter` then sums per face in row order (ordered_scatter_add:
// bit-identical for any thread count). A face id out of range gives a NaN row that is skipped.
#pragma once

#include <cmath>
#include <numeric>
#include <vector>

#include "parallel.h"
#include "rg/frames.h"

namespace rg::cpu {

struct FrameRows {
  long long N = 0, rows = 0, n_faces = 0;
  const int* face_ids = nullptr;
  int F = 0;
  std::vector<int> ident;  // row face ids: 0..N-1 within a pose
  std::vector<float> cent, rot, sa, v_cent, v_rot, v_sa;

  // The face (pose-major) of row r, or -1 when its id is out of range.
  long long face_of(long long r) const {
    const int fid = face_ids[r % N];
    return in_range(fid, F) ? (r / N) * F + fid : -1;
  }

  // Rows of `poses` x N from frames [poses, F, ...] and face_ids [N].
  FrameRows(long long poses, long long n, int faces, const int* fids, const float* centroids,
            const float* rotations, const float* sqrt_areas)
      : N(n), rows(poses * n), n_faces(poses * faces), face_ids(fids), F(faces), ident(n) {
    std::iota(ident.begin(), ident.end(), 0);
    cent.resize(rows * 3);
    rot.resize(rows * 9);
    sa.resize(rows);
    v_cent.assign(rows * 3, 0.f);
    v_rot.assign(rows * 9, 0.f);
    v_sa.assign(rows, 0.f);
    parallel_for(rows, 8192, [&](long long b, long long e) {
      for (long long r = b; r < e; ++r) {
        const long long f = face_of(r);
        for (int k = 0; k < 3; ++k) cent[3 * r + k] = f < 0 ? NAN : centroids[3 * f + k];
        for (int k = 0; k < 9; ++k) rot[9 * r + k] = f < 0 ? NAN : rotations[9 * f + k];
        sa[r] = f < 0 ? NAN : sqrt_areas[f];
      }
    });
  }

  // A copy of record `a` (DeformArgs, ProjArgs) reading the rows: one face per (pose, Gaussian).
  template <class A>
  A rows_of(A a) const {
    a.F = (int)N;
    a.face_ids = ident.data();
    a.centroids = cent.data();
    a.rotations = rot.data();
    a.sqrt_areas = sa.data();
    return a;
  }

  // A copy of `g` (DeformArgs, ProjGrads) writing the frame gradients per row.
  template <class G>
  G row_grads(G g) {
    g.v_centroids = v_cent.data();
    g.v_rotations = v_rot.data();
    g.v_sqrt_areas = v_sa.data();
    return g;
  }

  // Sums the per-row gradients into the per-face outputs (null outputs are skipped).
  void scatter(float* v_centroids, float* v_rotations, float* v_sqrt_areas) const {
    ordered_scatter_add(rows, n_faces, [&](long long r) { return face_of(r); },
                        [&](long long r, long long f) {
                          if (v_centroids)
                            for (int k = 0; k < 3; ++k) v_centroids[3 * f + k] += v_cent[3 * r + k];
                          if (v_rotations)
                            for (int k = 0; k < 9; ++k) v_rotations[9 * f + k] += v_rot[9 * r + k];
                          if (v_sqrt_areas) v_sqrt_areas[f] += v_sa[r];
                        });
  }
};

}  // namespace rg::cpu
