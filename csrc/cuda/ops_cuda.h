// Entry points of the CUDA backend: one function per op, taking the argument records of
// rg/ops.h (device pointers on record.device, kernels on record.stream). No function allocates
// memory; gradient outputs are zeroed by the caller (the backwards accumulate with atomics, so
// CUDA gradients are not bit-deterministic). The binding (bind_cuda.cpp) runs every op under a
// DeviceGuard of record.device.
#pragma once

#include "rg/ops.h"

namespace rg::gpu {

// X(op, docstring): the ops, bound as _C.<op>_cuda(record[, grads]) by bind_cuda.cpp.
#define RG_CUDA_OPS(X)                                                                         \
  X(triangle_frames_fwd, "Triangle frames of vertices [B,V,3] and faces [F,3] (FramesArgs).")   \
  X(triangle_frames_bwd, "VJP of triangle_frames into zeroed v_vertices (FramesArgs).")        \
  X(deform_fwd, "Deform local Gaussians by triangle frames (DeformArgs).")                     \
  X(deform_bwd, "VJP of deform into zeroed gradient buffers (DeformArgs).")                    \
  X(projection_fwd, "Project world Gaussians: radii, means2d, depths, conics, SH colours.")    \
  X(projection_rigged_fwd, "Fused deformation + projection of local Gaussians.")               \
  X(projection_bwd, "VJP of projection into zeroed buffers (ProjArgs, ProjGrads).")            \
  X(projection_rigged_bwd, "VJP of the fused projection (ProjArgs, ProjGrads).")               \
  X(isect_count, "Tiles of each element of the depth order -> counts (IsectArgs).")            \
  X(isect_fill, "Tile keys and flatten ids of every intersection, in depth order.")            \
  X(isect_offsets, "First intersection of every tile from the sorted keys (IsectArgs).")       \
  X(radix_sort, "Stable radix sort of int32 (key, value) pairs over bits [begin, end).")       \
  X(radix_sort_temp_bytes, "Scratch bytes radix_sort needs for n items (SortArgs).")           \
  X(rasterize_to_pixels_fwd, "Alpha-blend each tile's sorted Gaussians front to back.")        \
  X(rasterize_to_pixels_bwd, "VJP of the rasterizer into zeroed buffers (RasterArgs, RasterGrads).")

void triangle_frames_fwd(const FramesArgs& a);
void triangle_frames_bwd(const FramesArgs& a);
void deform_fwd(const DeformArgs& a);
void deform_bwd(const DeformArgs& a);
void projection_fwd(const ProjArgs& a);
void projection_rigged_fwd(const ProjArgs& a);
void projection_bwd(const ProjArgs& a, const ProjGrads& g);
void projection_rigged_bwd(const ProjArgs& a, const ProjGrads& g);
// counts[s] = tiles of element order[s] (or s without an order)
void isect_count(const IsectArgs& a);
// keys (camera * n_tiles + tile) and ids of element s at [cum[s-1], cum[s])
void isect_fill(const IsectArgs& a);
// offsets [C,tile_h,tile_w] from sorted_keys [n_isects]
void isect_offsets(const IsectArgs& a);
// cub::DeviceRadixSort::SortPairs over key bits [begin_bit, end_bit) (keys as unsigned)
void radix_sort(const SortArgs& a);
long long radix_sort_temp_bytes(const SortArgs& a);
void rasterize_to_pixels_fwd(const RasterArgs& a);
void rasterize_to_pixels_bwd(const RasterArgs& a, const RasterGrads& g);

}  // namespace rg::gpu
