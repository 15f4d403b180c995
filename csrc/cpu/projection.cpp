// Projection on the CPU (plain and rigged/fused): loops over the shared per-(camera, Gaussian)
// math of rg/projection.h.
//
// The backward is deterministic (bit-identical for any thread count): the tasks own Gaussians,
// each looping over the cameras in order, so the per-Gaussian outputs (v_means, v_quats,
// v_scales, v_sh), shared by the cameras, are summed in camera order by one task. The per-face
// outputs of the rigged projection are shared by all the Gaussians of a face: the kernel runs on
// per-(pose, Gaussian) copies of the frames (face_ids -> identity) and writes per-(pose,
// Gaussian) frame gradients, which ordered_scatter_add then sums per face in Gaussian order.
// Scratch: 26 floats per (pose, Gaussian) in std::vectors.
#include <cmath>
#include <numeric>
#include <vector>

#include "ops_cpu.h"
#include "parallel.h"
#include "rg/projection.h"

namespace rg::cpu {

namespace {
constexpr long long kGrain = 1024;

template <bool RIGGED>
void fwd(const ProjArgs& a) {
  parallel_for((long long)a.C * a.N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i) projection_fwd_one<RIGGED>(a, i);
  });
}

template <bool RIGGED>
void bwd_by_gaussian(const ProjArgs& a, const ProjGrads& g) {
  parallel_for(a.N, kGrain, [&](long long b, long long e) {
    for (long long n = b; n < e; ++n)
      for (int c = 0; c < a.C; ++c) projection_bwd_one<RIGGED>(a, g, (long long)c * a.N + n);
  });
}
}  // namespace

void projection_fwd(const ProjArgs& a) { fwd<false>(a); }
void projection_rigged_fwd(const ProjArgs& a) { fwd<true>(a); }

void projection_bwd(const ProjArgs& a, const ProjGrads& g) {
  if (a.C > 0 && a.N > 0) bwd_by_gaussian<false>(a, g);
}

void projection_rigged_bwd(const ProjArgs& a, const ProjGrads& g) {
  if (a.C <= 0 || a.N <= 0) return;
  const int cpp = a.cams_per_pose > 0 ? a.cams_per_pose : 1;
  const long long B = (a.C + cpp - 1) / cpp, N = a.N, rows = B * N;
  // per-(pose, Gaussian) frames: row r = pose * N + n holds the frame of face face_ids[n]
  // (a face id out of range: NaN frame, culled by the forward, so never read)
  std::vector<int> ident(N);
  std::iota(ident.begin(), ident.end(), 0);
  std::vector<float> cent(rows * 3), rot(rows * 9), sa(rows);
  std::vector<float> v_cent(rows * 3, 0.f), v_rot(rows * 9, 0.f), v_sa(rows, 0.f);
  auto face_of = [&](long long r) -> long long {
    const int fid = a.face_ids[r % N];
    return in_range(fid, a.F) ? (r / N) * a.F + fid : -1;
  };
  parallel_for(rows, 4 * kGrain, [&](long long b, long long e) {
    for (long long r = b; r < e; ++r) {
      const long long f = face_of(r);
      for (int k = 0; k < 3; ++k) cent[3 * r + k] = f < 0 ? NAN : a.centroids[3 * f + k];
      for (int k = 0; k < 9; ++k) rot[9 * r + k] = f < 0 ? NAN : a.rotations[9 * f + k];
      sa[r] = f < 0 ? NAN : a.sqrt_areas[f];
    }
  });
  ProjArgs a2 = a;
  a2.F = a.N;
  a2.face_ids = ident.data();
  a2.centroids = cent.data();
  a2.rotations = rot.data();
  a2.sqrt_areas = sa.data();
  ProjGrads g2 = g;
  g2.v_centroids = v_cent.data();
  g2.v_rotations = v_rot.data();
  g2.v_sqrt_areas = v_sa.data();
  bwd_by_gaussian<true>(a2, g2);
  ordered_scatter_add(rows, B * a.F, face_of, [&](long long r, long long f) {
    if (g.v_centroids)
      for (int k = 0; k < 3; ++k) g.v_centroids[3 * f + k] += v_cent[3 * r + k];
    if (g.v_rotations)
      for (int k = 0; k < 9; ++k) g.v_rotations[9 * f + k] += v_rot[9 * r + k];
    if (g.v_sqrt_areas) g.v_sqrt_areas[f] += v_sa[r];
  });
}

}  // namespace rg::cpu
