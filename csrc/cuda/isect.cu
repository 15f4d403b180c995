// Tile intersection on the GPU, in depth order (the per-element math is rg/isect.h, shared with
// the CPU backend). The Python glue runs:
//   1. radix_sort of the (camera, Gaussian) depth bits (32-bit keys, int32 values) -> order;
//   2. isect_count in that order (exact ellipse/tile test) and an int64 cumsum (torch);
//   3. one device->host read of the total (the only sync of a render);
//   4. isect_fill in that order: int32 keys camera * n_tiles + tile and flatten ids;
//   5. radix_sort of the keys over only the bits in use (stable: each tile stays in depth order);
//   6. isect_offsets: the first intersection of every tile, one binary search per tile.
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/isect.h"

#if !defined(RG_EMULATE)
#include <cub/device/device_radix_sort.cuh>
#endif

namespace rg::gpu {
namespace {

__global__ void isect_count_kernel(IsectArgs a, long long n) {
  const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (s < n) a.counts[s] = isect_count_one(a, s);
}

__global__ void isect_fill_kernel(IsectArgs a, long long n) {
  const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (s < n) isect_fill_one(a, s);
}

// offsets[t] = the first index of sorted_keys >= t (tiles without intersections point at the
// next tile's start, as gsplat's encoding).
__global__ void isect_offsets_kernel(IsectArgs a, long long n_total) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n_total) return;
  long long lo = 0, hi = a.n_isects;
  while (lo < hi) {
    const long long mid = lo + (hi - lo) / 2;
    if ((long long)a.sorted_keys[mid] < t) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  a.offsets[t] = (int)lo;
}

}  // namespace

void isect_count(const IsectArgs& a) {
  const long long n = (long long)a.C * a.N;
  launch_1d("isect_count", isect_count_kernel, n, a, a, n);
}

void isect_fill(const IsectArgs& a) {
  const long long n = (long long)a.C * a.N;
  if (a.n_isects > 0) launch_1d("isect_fill", isect_fill_kernel, n, a, a, n);
}

void isect_offsets(const IsectArgs& a) {
  const long long n_total = (long long)a.C * a.tile_w * a.tile_h;
  launch_1d("isect_offsets", isect_offsets_kernel, n_total, a, a, n_total);
}

long long radix_sort_temp_bytes(const SortArgs& a) {
  size_t bytes = 0;
  check_cuda(cub::DeviceRadixSort::SortPairs(
                 nullptr, bytes, static_cast<const unsigned*>(nullptr),
                 static_cast<unsigned*>(nullptr), static_cast<const int*>(nullptr),
                 static_cast<int*>(nullptr), (int)a.n, a.begin_bit, a.end_bit,
                 as_stream(a.stream)),
             "radix_sort_temp_bytes");
  return (long long)bytes;
}

void radix_sort(const SortArgs& a) {
  if (a.n <= 0) return;
  if (a.n > 2147483647ll) throw std::overflow_error("radix_sort: more than 2^31-1 items");
  size_t bytes = (size_t)a.temp_bytes;
  check_cuda(cub::DeviceRadixSort::SortPairs(
                 a.temp, bytes, reinterpret_cast<const unsigned*>(a.keys_in),
                 reinterpret_cast<unsigned*>(a.keys_out), a.values_in, a.values_out, (int)a.n,
                 a.begin_bit, a.end_bit, as_stream(a.stream)),
             "radix_sort");
  check_launch("radix_sort");
}

}  // namespace rg::gpu
