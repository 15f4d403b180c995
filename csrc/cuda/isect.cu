// Tile intersection: count pass, fill pass (64-bit keys camera | tile | depth bits) and the
// per-tile offset encoding of the sorted keys. The wrapper does the int64 cumsum and torch.sort.
#include "common.cuh"
#include "ops_cuda.h"

namespace rgc {
namespace {

struct TileRect {
  int x0, y0, x1, y1;  // [x0, x1) x [y0, y1)
};

__device__ __forceinline__ TileRect tile_rect(float mx, float my, int rx, int ry, int tile_size,
                                              int tile_w, int tile_h) {
  const float ts = (float)tile_size;
  TileRect r;
  r.x0 = min(max(0, (int)floorf((mx - rx) / ts)), tile_w);
  r.y0 = min(max(0, (int)floorf((my - ry) / ts)), tile_h);
  r.x1 = min(max(0, (int)ceilf((mx + rx) / ts)), tile_w);
  r.y1 = min(max(0, (int)ceilf((my + ry) / ts)), tile_h);
  return r;
}

__global__ void isect_count_kernel(const int* radii, const float* means2d, long long total,
                                   int tile_size, int tile_w, int tile_h, int* tiles) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int rx = radii[2 * idx], ry = radii[2 * idx + 1];
  if (rx <= 0 && ry <= 0) {
    tiles[idx] = 0;
    return;
  }
  const TileRect r =
      tile_rect(means2d[2 * idx], means2d[2 * idx + 1], rx, ry, tile_size, tile_w, tile_h);
  tiles[idx] = (r.x1 - r.x0) * (r.y1 - r.y0);
}

__global__ void isect_fill_kernel(const int* radii, const float* means2d, const float* depths,
                                  const long long* cum, long long total, int N, int tile_size,
                                  int tile_w, int tile_h, int tile_bits, long long* keys,
                                  int* flatten_ids) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int rx = radii[2 * idx], ry = radii[2 * idx + 1];
  if (rx <= 0 && ry <= 0) return;
  const long long cam = idx / N;
  const TileRect r =
      tile_rect(means2d[2 * idx], means2d[2 * idx + 1], rx, ry, tile_size, tile_w, tile_h);
  long long cur = idx == 0 ? 0 : cum[idx - 1];
  const unsigned int depth_bits = __float_as_uint(depths[idx]);  // depth > near > 0: monotone
  const unsigned long long head = ((unsigned long long)cam << (32 + tile_bits));
  for (int ty = r.y0; ty < r.y1; ++ty)
    for (int tx = r.x0; tx < r.x1; ++tx) {
      const unsigned long long tile = (unsigned long long)(ty * tile_w + tx);
      keys[cur] = (long long)(head | (tile << 32) | (unsigned long long)depth_bits);
      flatten_ids[cur] = (int)idx;
      ++cur;
    }
}

// Re-linearise (camera << tile_bits | tile) into camera * n_tiles + tile for the offsets table.
__global__ void isect_offset_kernel_cam(const long long* keys, long long n, int tile_bits,
                                        long long n_tiles, long long n_total, int* offsets) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  auto lin = [&](long long k) {
    const unsigned long long hi = (unsigned long long)k >> 32;
    const unsigned long long cam = hi >> tile_bits;
    const unsigned long long tile = hi & ((1ull << tile_bits) - 1ull);
    return (long long)(cam * (unsigned long long)n_tiles + tile);
  };
  const long long cur = lin(keys[idx]);
  if (idx == 0)
    for (long long i = 0; i <= cur; ++i) offsets[i] = 0;
  if (idx == n - 1)
    for (long long i = cur + 1; i < n_total; ++i) offsets[i] = (int)n;
  if (idx > 0) {
    const long long prev = lin(keys[idx - 1]);
    if (prev != cur)
      for (long long i = prev + 1; i <= cur; ++i) offsets[i] = (int)idx;
  }
}

}  // namespace

int tile_id_bits(int tile_w, int tile_h) {
  const long long n = (long long)tile_w * tile_h;
  int bits = 0;
  while ((1ll << bits) <= n) ++bits;  // floor(log2(n)) + 1, as gsplat
  return bits;
}

#if !defined(RG_EMULATE)
void isect_count_cuda(const int* radii, const float* means2d, int C, int N, int tile_size,
                      int tile_w, int tile_h, int* tiles_per_gauss, std::uintptr_t stream) {
  const long long total = (long long)C * N;
  if (total == 0) return;
  isect_count_kernel<<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(
      radii, means2d, total, tile_size, tile_w, tile_h, tiles_per_gauss);
  check_launch("isect_tiles (count)");
}

void isect_fill_cuda(const int* radii, const float* means2d, const float* depths,
                     const long long* cum_tiles, int C, int N, int tile_size, int tile_w,
                     int tile_h, long long* keys, int* flatten_ids, std::uintptr_t stream) {
  const long long total = (long long)C * N;
  if (total == 0) return;
  const int bits = tile_id_bits(tile_w, tile_h);
  // keep bit 63 clear so torch.sort on signed int64 keys orders them correctly
  if (32 + bits + 64 - __builtin_clzll((unsigned long long)C | 1ull) > 63) {
    throw std::runtime_error("isect_tiles: too many cameras x tiles for 64-bit keys (C=" +
                             std::to_string(C) + ", tiles=" + std::to_string(tile_w * tile_h) +
                             "); render fewer cameras per call or use a smaller image");
  }
  isect_fill_kernel<<<n_blocks(total), kThreads, 0, as_stream(stream)>>>(
      radii, means2d, depths, cum_tiles, total, N, tile_size, tile_w, tile_h, bits, keys,
      flatten_ids);
  check_launch("isect_tiles (fill)");
}

void isect_offset_encode_cuda(const long long* sorted_keys, long long n_isects, int C,
                              int tile_w, int tile_h, int* offsets, std::uintptr_t stream) {
  const long long n_tiles = (long long)tile_w * tile_h;
  const long long n_total = (long long)C * n_tiles;
  if (n_total == 0) return;
  if (n_isects == 0) {
    const cudaError_t err =
        cudaMemsetAsync(offsets, 0, sizeof(int) * n_total, as_stream(stream));
    if (err != cudaSuccess)
      throw std::runtime_error(std::string("isect_offset_encode: ") + cudaGetErrorString(err));
    return;
  }
  isect_offset_kernel_cam<<<n_blocks(n_isects), kThreads, 0, as_stream(stream)>>>(
      sorted_keys, n_isects, tile_id_bits(tile_w, tile_h), n_tiles, n_total, offsets);
  check_launch("isect_offset_encode");
}

#endif  // !RG_EMULATE

}  // namespace rgc
