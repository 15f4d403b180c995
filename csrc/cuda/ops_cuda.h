// Entry points of the CUDA backend: the common ops of rg/ops.h (RG_COMMON_OPS) and the GPU's
// sort and offset encoding, taking the argument records (device pointers on record.device,
// kernels on record.stream). No function allocates memory; gradient outputs are zeroed by the
// caller (the backwards accumulate with atomics, so CUDA gradients are not bit-deterministic).
// The binding (bind_cuda.cpp) runs every op under a DeviceGuard of record.device.
//
// isect_count and isect_fill run in depth order (the record's `order`), radix_sort is
// cub::DeviceRadixSort::SortPairs over key bits [begin_bit, end_bit) (keys as unsigned; stable),
// and isect_offsets writes offsets [C,tile_h,tile_w] from the sorted keys.
#pragma once

#include "rg/ops.h"

namespace rg::gpu {

#define RG_CUDA_OPS(X)                                                                  \
  RG_COMMON_OPS(X)                                                                      \
  X(void, isect_offsets, (const IsectArgs& a), "First intersection of every tile.")     \
  X(void, radix_sort, (const SortArgs& a), "Stable radix sort of int32 (key, value) pairs.") \
  X(long long, radix_sort_temp_bytes, (const SortArgs& a), "Scratch bytes radix_sort needs.")

RG_CUDA_OPS(RG_DECLARE_OP)

}  // namespace rg::gpu
