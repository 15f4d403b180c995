// Entry points of the CPU backend: the common ops of rg/ops.h (RG_COMMON_OPS) and the CPU's
// sort, taking the argument records (host pointers; the device and stream fields are ignored).
// No function allocates an output; gradient outputs are zeroed by the caller. Every op is
// deterministic: the result does not depend on the thread count or on scheduling (outputs that
// several elements share are summed in a fixed order, never with atomic adds; csrc/README.md).
//
// The CPU's tile intersection runs in Gaussian order (the record's `order` is ignored):
// isect_count with tight_tiles off gives each Gaussian's box size, `cum` their int64 cumsum (the
// slots); isect_fill_box writes each Gaussian's (tight) intersections into its slots and their
// number into counts; isect_sort then sorts without a comparison sort of the intersections: each
// camera's visible Gaussians in depth order (a radix sort of the depth bits, ties by index), and
// a counting sort by key that visits them in that order, so every tile's range of sorted_ids
// [n_isects] comes out depth-sorted; offsets [C,tile_h,tile_w] is the first intersection of
// every tile. (isect_fill, on an exact cum of isect_count, is the common op.) The rasterizer backward's
// g.isect_grads [M, 8 + CH] is scratch (null: allocated inside): one row of partial gradients
// per intersection, summed per Gaussian in a fixed order afterwards.
#pragma once

#include "rg/ops.h"

namespace rg::cpu {

#define RG_CPU_OPS(X)                                                                  \
  RG_COMMON_OPS(X)                                                                     \
  X(void, isect_fill_box, (const IsectArgs& a),                                        \
    "Each Gaussian's intersections into its box slots (cum); counts = how many.")     \
  X(void, isect_sort, (const IsectArgs& a),                                            \
    "Sort the slotted intersections by (camera, tile, depth): sorted_ids, offsets.")

RG_CPU_OPS(RG_DECLARE_OP)

// True when the rasterizer runs its AVX2 kernels (x86-64 CPU with AVX2 + FMA and
// RG_RASTER_SIMD != 0 when first used); false: the portable scalar kernels.
bool rasterize_uses_simd();

}  // namespace rg::cpu
