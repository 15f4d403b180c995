// Host entry points of the CUDA backend. Every pointer is a device pointer allocated by the
// Python wrapper through torch (float32 unless stated; contiguous, row-major); `stream` is
// torch.cuda.current_stream().cuda_stream. No function allocates memory.
// Shapes: B poses, C cameras (C = B * cams_per_pose for rigged projection), N Gaussians,
// V vertices, F faces, K SH coefficients per channel.
#pragma once

#include <cstdint>

#include "rg/ops.h"

namespace rgc {

// The shared math and argument structs (csrc/include/rg) are used unqualified here.
using namespace rg;

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

// ---- projection (plain and rigged/fused); ProjArgs/ProjGrads are in rg/ops.h
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

// ---- rasterization; RasterArgs/RasterGrads are in rg/ops.h
void rasterize_fwd_cuda(const RasterArgs& a, std::uintptr_t stream);
void rasterize_bwd_cuda(const RasterArgs& a, const RasterGrads& g, std::uintptr_t stream);

}  // namespace rgc
