// Argument structs shared by the CPU and CUDA backends (one definition for both).
//
// Every pointer is allocated by the Python wrapper through torch (float32 unless stated;
// contiguous, row-major): host pointers for the CPU backend, device pointers for CUDA.
// Shapes: B poses, C cameras (C = B * cams_per_pose for rigged projection), N Gaussians,
// V vertices, F faces, K SH coefficients per channel.
#pragma once

namespace rg {

// ---- projection (plain and rigged/fused)
struct ProjArgs {
  int C = 0, N = 0;
  bool per_camera = false;  // means/quats/scales are [C,N,·] instead of [N,·]
  // plain: means [N|C·N,3] world, quats [·,4], scales [·,3] linear.
  // rigged: means/quats/log-scales are LOCAL [N,·]; face_ids [N]; frames [B,F,·].
  const float* means = nullptr;
  const float* quats = nullptr;
  const float* scales = nullptr;
  const int* face_ids = nullptr;
  const float* centroids = nullptr;
  const float* rotations = nullptr;
  const float* sqrt_areas = nullptr;
  int F = 0, cams_per_pose = 1;  // camera c uses pose c / cams_per_pose
  const float* viewmats = nullptr;  // [C,4,4] world->camera
  const float* Ks = nullptr;        // [C,3,3]
  int width = 0, height = 0;
  float near_plane = 0.01f, far_plane = 1e10f, eps2d = 0.3f, radius_clip = 0.f;
  int sh_degree = -1;  // <0: no SH evaluation
  int K = 0;           // SH coefficients per channel in `sh` (>= (deg+1)^2)
  bool sh_per_camera = false;
  const float* sh = nullptr;  // [N|C·N, K, 3]
  // outputs (forward); the backward reads radii and conics
  int* radii = nullptr;       // [C,N,2] int32
  float* means2d = nullptr;   // [C,N,2]
  float* depths = nullptr;    // [C,N]
  float* conics = nullptr;    // [C,N,3]
  float* colors = nullptr;    // [C,N,3] when sh_degree >= 0
};

struct ProjGrads {
  const float* v_means2d = nullptr;  // [C,N,2]
  const float* v_depths = nullptr;   // [C,N] or null
  const float* v_conics = nullptr;   // [C,N,3]
  const float* v_colors = nullptr;   // [C,N,3] or null (SH only)
  // outputs, zeroed by the caller (CUDA: atomics; CPU: ordered per-task sums)
  float* v_means = nullptr;   // like means
  float* v_quats = nullptr;   // like quats
  float* v_scales = nullptr;  // like scales (log-scales when rigged)
  float* v_sh = nullptr;      // like sh
  float* v_centroids = nullptr;   // [B,F,3] (rigged)
  float* v_rotations = nullptr;   // [B,F,3,3] (rigged)
  float* v_sqrt_areas = nullptr;  // [B,F] (rigged)
};

// ---- rasterization
struct RasterArgs {
  int C = 0, N = 0, CH = 3;  // CH channels per Gaussian (1..4; 4 = RGB + depth)
  int width = 0, height = 0, tile_size = 16, tile_w = 0, tile_h = 0;
  long long n_isects = 0;
  const float* means2d = nullptr;      // [C,N,2]
  const float* conics = nullptr;       // [C,N,3]
  const float* colors = nullptr;       // [C,N,CH]
  const float* opacities = nullptr;    // [C,N]
  const float* backgrounds = nullptr;  // [C,CH] or null
  const int* offsets = nullptr;        // [C,tile_h,tile_w]
  const int* flatten_ids = nullptr;    // [n_isects]
  // forward outputs (read by the backward)
  float* render_colors = nullptr;  // [C,H,W,CH]
  float* render_alphas = nullptr;  // [C,H,W]
  int* last_ids = nullptr;         // [C,H,W]
};

struct RasterGrads {
  const float* v_render_colors = nullptr;  // [C,H,W,CH]
  const float* v_render_alphas = nullptr;  // [C,H,W] or null
  // outputs, zeroed by the caller
  float* v_means2d = nullptr;      // [C,N,2]
  float* v_means2d_abs = nullptr;  // [C,N,2] or null
  float* v_conics = nullptr;       // [C,N,3]
  float* v_colors = nullptr;       // [C,N,CH]
  float* v_opacities = nullptr;    // [C,N]
};

}  // namespace rg
