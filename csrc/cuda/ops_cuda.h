// Host entry points of the CUDA backend. Every pointer is a device pointer allocated by the
// Python wrapper through torch (float32 unless stated; contiguous, row-major); `stream` is
// torch.cuda.current_stream().cuda_stream. No function allocates memory.
// Shapes: B poses, C cameras (C = B * cams_per_pose for rigged projection), N Gaussians,
// V vertices, F faces, K SH coefficients per channel.
#pragma once

#include <cstdint>

namespace rgc {

// ---- triangle frames
// vertices [B,V,3], faces [F,3] int32 -> centroids [B,F,3], rotations [B,F,3,3], sqrt_areas [B,F]
void triangle_frames_fwd_cuda(const float* vertices, const int* faces, int B, int V, int F,
                              float* centroids, float* rotations, float* sqrt_areas,
                              std::uintptr_t stream);
// v_vertices [B,V,3] must be zeroed by the caller (accumulated with atomics).
void triangle_frames_bwd_cuda(const float* vertices, const int* faces, int B, int V, int F,
                              const float* v_centroids, const float* v_rotations,
                              const float* v_sqrt_areas, float* v_vertices,
                              std::uintptr_t stream);

// ---- deformation
// means [N,3], quats [N,4], log_scales [N,3], face_ids [N] int32, frames of B poses
// -> out_means [B,N,3], out_quats [B,N,4], out_scales [B,N,3]
void deform_fwd_cuda(const float* means, const float* quats, const float* log_scales,
                     const int* face_ids, const float* centroids, const float* rotations,
                     const float* sqrt_areas, int B, int N, int F, float* out_means,
                     float* out_quats, float* out_scales, std::uintptr_t stream);
// Gradients are accumulated with atomics: every output must be zeroed by the caller.
// v_means/v_quats/v_log_scales [N,·], v_centroids [B,F,3], v_rotations [B,F,3,3], v_sqrt_areas [B,F]
void deform_bwd_cuda(const float* means, const float* quats, const float* log_scales,
                     const int* face_ids, const float* centroids, const float* rotations,
                     const float* sqrt_areas, int B, int N, int F, const float* v_out_means,
                     const float* v_out_quats, const float* v_out_scales, float* v_means,
                     float* v_quats, float* v_log_scales, float* v_centroids, float* v_rotations,
                     float* v_sqrt_areas, std::uintptr_t stream);

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
  // outputs, zeroed by the caller, accumulated with atomics
  float* v_means = nullptr;   // like means
  float* v_quats = nullptr;   // like quats
  float* v_scales = nullptr;  // like scales (log-scales when rigged)
  float* v_sh = nullptr;      // like sh
  float* v_centroids = nullptr;   // [B,F,3] (rigged)
  float* v_rotations = nullptr;   // [B,F,3,3] (rigged)
  float* v_sqrt_areas = nullptr;  // [B,F] (rigged)
};

void projection_fwd_cuda(const ProjArgs& a, bool rigged, std::uintptr_t stream);
void projection_bwd_cuda(const ProjArgs& a, const ProjGrads& g, bool rigged,
                         std::uintptr_t stream);

// ---- tile intersection
// radii [C,N,2] int32, means2d [C,N,2] -> tiles_per_gauss [C,N] int32
void isect_count_cuda(const int* radii, const float* means2d, int C, int N, int tile_size,
                      int tile_w, int tile_h, int* tiles_per_gauss, std::uintptr_t stream);
// cum_tiles [C,N] int64 inclusive cumsum of tiles_per_gauss -> keys [n_isects] int64
// (camera | tile | depth bits), flatten_ids [n_isects] int32 (c * N + n)
void isect_fill_cuda(const int* radii, const float* means2d, const float* depths,
                     const long long* cum_tiles, int C, int N, int tile_size, int tile_w,
                     int tile_h, long long* keys, int* flatten_ids, std::uintptr_t stream);
// sorted keys [n_isects] -> offsets [C, tile_h, tile_w] int32
void isect_offset_encode_cuda(const long long* sorted_keys, long long n_isects, int C,
                              int tile_w, int tile_h, int* offsets, std::uintptr_t stream);
int tile_id_bits(int tile_w, int tile_h);

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

void rasterize_fwd_cuda(const RasterArgs& a, std::uintptr_t stream);
void rasterize_bwd_cuda(const RasterArgs& a, const RasterGrads& g, std::uintptr_t stream);

}  // namespace rgc
