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

#include "frame_rows.h"
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
  // a face id out of range: a NaN row, culled by the forward (radii 0), so never read
  FrameRows fr((a.C + cpp - 1) / cpp, a.N, a.F, a.face_ids, a.centroids, a.rotations, a.sqrt_areas);
  bwd_by_gaussian<true>(fr.rows_of(a), fr.row_grads(g));
  fr.scatter(g.v_centroids, g.v_rotations, g.v_sqrt_areas);
}

}  // namespace rg::cpu
