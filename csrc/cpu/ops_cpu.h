// Entry points of the CPU backend: one function per op, taking the argument records of
// rg/ops.h (host pointers; the device and stream fields are ignored). No function allocates an
// output; gradient outputs are zeroed by the caller. Every op is deterministic: the result does
// not depend on the thread count or on scheduling (outputs that several elements share are
// summed in a fixed order, never with atomic adds; csrc/README.md, "Determinism").
#pragma once

#include "rg/ops.h"

namespace rg::cpu {

// X(op, docstring): the ops, bound as _C.<op>_cpu(record[, grads]) by csrc/cpu/bind_cpu.cpp.
#define RG_CPU_OPS(X)                                                                          \
  X(triangle_frames_fwd, "Triangle frames of vertices [B,V,3] and faces [F,3] (FramesArgs).")   \
  X(triangle_frames_bwd, "VJP of triangle_frames into zeroed v_vertices (FramesArgs).")        \
  X(deform_fwd, "Deform local Gaussians by triangle frames (DeformArgs).")                     \
  X(deform_bwd, "VJP of deform into zeroed gradient buffers (DeformArgs).")                    \
  X(projection_fwd, "Project world Gaussians: radii, means2d, depths, conics, SH colours.")    \
  X(projection_rigged_fwd, "Fused deformation + projection of local Gaussians.")               \
  X(projection_bwd, "VJP of projection into zeroed buffers (ProjArgs, ProjGrads).")            \
  X(projection_rigged_bwd, "VJP of the fused projection (ProjArgs, ProjGrads).")               \
  X(isect_count, "Tiles touched by each (camera, Gaussian) -> counts (IsectArgs).")            \
  X(isect_fill, "Tile keys and flatten ids of every intersection at the cum offsets.")         \
  X(isect_sort, "Sort intersections by (camera, tile, depth): sorted_ids and offsets.")        \
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
// counts [C*N] of the intersections of each element (Gaussian order: `order` is ignored)
void isect_count(const IsectArgs& a);
// keys [M] (camera * n_tiles + tile) and ids [M] of element i at [cum[i-1], cum[i])
void isect_fill(const IsectArgs& a);
// Sort without a comparison sort of the intersections: each camera's visible Gaussians are put
// in depth order (a radix sort of the depth bits, ties by index), then a counting sort by key
// visits them in that order, so every tile's range of sorted_ids comes out depth-sorted;
// offsets [C,tile_h,tile_w] is the first intersection of every tile.
void isect_sort(const IsectArgs& a);
void rasterize_to_pixels_fwd(const RasterArgs& a);
// g.isect_grads [M, 8 + CH] scratch (contents ignored): one row of partial gradients per
// intersection, summed per Gaussian in a fixed order afterwards (bit-identical for any thread
// count). Null: allocated internally.
void rasterize_to_pixels_bwd(const RasterArgs& a, const RasterGrads& g);
// True when the rasterizer runs its AVX2 kernels (x86-64 CPU with AVX2 + FMA and
// RG_RASTER_SIMD != 0 when first used); false: the portable scalar kernels.
bool rasterize_uses_simd();

}  // namespace rg::cpu
