// Host entry points of the CPU backend: the same operations and arguments as
// csrc/cuda/ops_cuda.h, with host pointers and no stream. Every pointer is allocated by the
// Python wrapper through torch (float32 unless stated; contiguous, row-major). No function
// allocates an output; gradient outputs must be zeroed by the caller. Every backward is
// deterministic: the result does not depend on the thread count or on scheduling (outputs that
// several elements share are summed in a fixed order, never with atomic adds).
// Shapes: B poses, C cameras, N Gaussians, V vertices, F faces.
#pragma once

#include "rg/ops.h"

namespace rg::cpu {

// ---- triangle frames
// vertices [B,V,3], faces [F,3] int32 -> centroids [B,F,3], rotations [B,F,3,3], sqrt_areas [B,F]
void triangle_frames_fwd_cpu(const float* vertices, const int* faces, int B, int V, int F,
                             float* centroids, float* rotations, float* sqrt_areas);
// v_vertices [B,V,3] zeroed by the caller; null incoming gradients count as zero.
void triangle_frames_bwd_cpu(const float* vertices, const int* faces, int B, int V, int F,
                             const float* v_centroids, const float* v_rotations,
                             const float* v_sqrt_areas, float* v_vertices);

// ---- deformation
// means [N,3], quats [N,4], log_scales [N,3], face_ids [N] int32, frames of B poses
// -> out_means [B,N,3], out_quats [B,N,4], out_scales [B,N,3]
void deform_fwd_cpu(const float* means, const float* quats, const float* log_scales,
                    const int* face_ids, const float* centroids, const float* rotations,
                    const float* sqrt_areas, int B, int N, int F, float* out_means,
                    float* out_quats, float* out_scales);
void deform_bwd_cpu(const float* means, const float* quats, const float* log_scales,
                    const int* face_ids, const float* centroids, const float* rotations,
                    const float* sqrt_areas, int B, int N, int F, const float* v_out_means,
                    const float* v_out_quats, const float* v_out_scales, float* v_means,
                    float* v_quats, float* v_log_scales, float* v_centroids, float* v_rotations,
                    float* v_sqrt_areas);

// ---- projection (plain, or rigged = deformation fused into the projection)
void projection_fwd_cpu(const ProjArgs& a, bool rigged);
void projection_bwd_cpu(const ProjArgs& a, const ProjGrads& g, bool rigged);

// ---- tile intersection
// radii [C,N,2] int32, means2d [C,N,2] -> tiles_per_gauss [C,N] int32
void isect_count_cpu(const int* radii, const float* means2d, int C, int N, int tile_size,
                     int tile_w, int tile_h, int* tiles_per_gauss);
// cum_tiles [C,N] int64 inclusive cumsum -> keys [n_isects] int64, flatten_ids [n_isects] int32
void isect_fill_cpu(const int* radii, const float* means2d, const float* depths,
                    const long long* cum_tiles, int C, int N, int tile_size, int tile_w,
                    int tile_h, long long* keys, int* flatten_ids);
// Sort the intersections by (camera, tile, depth) without a comparison sort of them: a
// counting pass over the (camera, tile) ids writes offsets [C,tile_h,tile_w] int32, then each
// camera's Gaussians are visited in (depth, id) order (cum_tiles [C,N] int64, the inclusive
// cumsum of the counts, locates their intersections) and scattered into sorted_keys /
// sorted_ids [n_isects], so every tile's range comes out depth-sorted (ties by id:
// deterministic).
void isect_sort_cpu(const long long* keys, const int* flatten_ids, const long long* cum_tiles,
                    long long n_isects, int C, int N, int tile_w, int tile_h,
                    long long* sorted_keys, int* sorted_ids, int* offsets);
// sorted keys [n_isects] -> offsets [C, tile_h, tile_w] int32 (as the CUDA backend)
void isect_offset_encode_cpu(const long long* sorted_keys, long long n_isects, int C,
                             int tile_w, int tile_h, int* offsets);

// ---- rasterization (tile-parallel; forward front to back with early stop, backward back to
// front from each pixel's last contributor)
void rasterize_fwd_cpu(const RasterArgs& a);
// isect_grads [n_isects, 8 + CH] scratch (contents ignored, overwritten): one row of partial
// gradients per intersection, summed per Gaussian in a fixed order afterwards, so the gradients
// are bit-identical for any thread count. Null: allocated internally (std::vector).
void rasterize_bwd_cpu(const RasterArgs& a, const RasterGrads& g, float* isect_grads);
// True when the rasterizer runs its AVX2 kernels (x86-64 CPU with AVX2 + FMA and
// RG_RASTER_SIMD != 0 when first used); false: the portable scalar kernels.
bool rasterize_uses_simd();

}  // namespace rg::cpu
