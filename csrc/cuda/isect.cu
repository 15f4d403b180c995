// Tile intersection on the GPU, in depth order (the per-element math is rg/isect.h, shared with
// the CPU backend). The Python glue runs:
//   1. radix_sort of the (camera, Gaussian) depth bits (32-bit keys, int32 values) -> order;
//   2. isect_count in that order (exact ellipse/tile test) and an int64 cumsum (torch);
//   3. one device->host read of the total (the only sync of a render);
//   4. isect_fill in that order: int32 keys camera * n_tiles + tile and flatten ids (the same
//      kernel as the count, so both run the same test; a mismatch is padded and flagged);
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

// The count (fill == false) and the fill (fill == true) of element s are ONE kernel: the exact
// ellipse/tile test of both passes is the same machine code, so on one GPU the fill emits exactly
// the tiles the count counted. The fill does not rely on it: it never writes past its range,
// pads the slots it leaves unfilled (kIsectPadKey sorts after every tile, kIsectPadId is skipped
// by the rasterizer) and flags kErrIsectFill when its total differs from the count.
__global__ void isect_pass_kernel(IsectArgs a, long long n, bool fill) {
  const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= n) return;
  const long long g = isect_element(a, s);
  const IsectGauss q = isect_gauss(a, g);
  const long long start = fill ? (s == 0 ? 0 : a.cum[s - 1]) : 0, end = fill ? a.cum[s] : 0;
  const long long base = (g / a.N) * (long long)a.tile_w * a.tile_h;
  long long emitted = 0;
  for (int ty = q.box.y0; ty < q.box.y1; ++ty) {
    int tx0, tx1;
    if (!isect_row(q, a, ty, tx0, tx1)) continue;
    if (fill) {
      for (int tx = tx0; tx < tx1; ++tx) {
        const long long slot = start + emitted + (tx - tx0);
        if (slot >= end) break;
        a.keys[slot] = (int)(base + (long long)ty * a.tile_w + tx);
        a.ids[slot] = (int)g;
      }
    }
    emitted += tx1 - tx0;
  }
  if (!fill) {
    a.counts[s] = (int)emitted;
    return;
  }
  for (long long slot = start + emitted; slot < end; ++slot) {
    a.keys[slot] = kIsectPadKey;
    a.ids[slot] = kIsectPadId;
  }
  if (emitted != end - start) flag_error(a.errors, kErrIsectFill);
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
  launch_1d("isect_count", isect_pass_kernel, n, a, a, n, false);
}

void isect_fill(const IsectArgs& a) {
  const long long n = (long long)a.C * a.N;
  if (a.n_isects <= 0) return;
  launch_1d("isect_fill", isect_pass_kernel, n, a, a, n, true);
  if (a.sync_debug && debug_flag(a, kErrIsectFill)) {
    throw op_error("isect_fill",
                   "the fill pass emitted another number of tile intersections than isect_count "
                   "counted for some Gaussian (its unfilled slots were padded and are skipped); "
                   "please report this with rigged_gaussians.build_info()");
  }
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
  debug_sync("radix_sort", a);
}

}  // namespace rg::gpu
