// Tile intersection: count pass, fill pass (64-bit keys camera | tile | depth bits) and the
// per-tile offset encoding of the sorted keys (per-element math in rg/isect.h, shared with the
// CPU backend). The wrapper does the int64 cumsum and torch.sort.
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/isect.h"

namespace rgc {
namespace {

__global__ void isect_count_kernel(const int* radii, const float* means2d, long long total,
                                   int tile_size, int tile_w, int tile_h, int* tiles) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  tiles[idx] = isect_count_one(radii, means2d, idx, tile_size, tile_w, tile_h);
}

__global__ void isect_fill_kernel(const int* radii, const float* means2d, const float* depths,
                                  const long long* cum, long long total, int N, int tile_size,
                                  int tile_w, int tile_h, int tile_bits, long long* keys,
                                  int* flatten_ids) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  isect_fill_one(radii, means2d, depths, cum, idx, N, tile_size, tile_w, tile_h, tile_bits, keys,
                 flatten_ids);
}

// Re-linearise (camera << tile_bits | tile) into camera * n_tiles + tile for the offsets table.
__global__ void isect_offset_kernel_cam(const long long* keys, long long n, int tile_bits,
                                        long long n_tiles, long long n_total, int* offsets) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  auto lin = [&](long long k) { return key_tile_linear(k, tile_bits, n_tiles); };
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

int tile_id_bits(int tile_w, int tile_h) { return tile_bits_of(tile_w, tile_h); }

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
  if (!keys_fit(C, bits)) {
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
