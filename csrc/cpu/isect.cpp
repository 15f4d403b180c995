// Tile intersection on the CPU: count and fill with the shared per-element math of rg/isect.h,
// then a counting sort by (camera, tile) and a per-tile depth sort (no global comparison sort).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ops_cpu.h"
#include "parallel.h"
#include "rg/isect.h"

namespace rg::cpu {

namespace {
constexpr long long kGrain = 4096;

void check_keys(int C, int tile_w, int tile_h, const char* op) {
  if (!keys_fit(C, tile_bits_of(tile_w, tile_h))) {
    throw std::overflow_error(std::string(op) + ": too many cameras x tiles for 64-bit keys (C=" +
                              std::to_string(C) + ", tiles=" +
                              std::to_string((long long)tile_w * tile_h) +
                              "); render fewer cameras per call or use a smaller image");
  }
}
}  // namespace

void isect_count_cpu(const int* radii, const float* means2d, int C, int N, int tile_size,
                     int tile_w, int tile_h, int* tiles_per_gauss) {
  parallel_for((long long)C * N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      tiles_per_gauss[i] = isect_count_one(radii, means2d, i, tile_size, tile_w, tile_h);
  });
}

void isect_fill_cpu(const int* radii, const float* means2d, const float* depths,
                    const long long* cum_tiles, int C, int N, int tile_size, int tile_w,
                    int tile_h, long long* keys, int* flatten_ids) {
  check_keys(C, tile_w, tile_h, "isect_tiles");
  const int bits = tile_bits_of(tile_w, tile_h);
  parallel_for((long long)C * N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      isect_fill_one(radii, means2d, depths, cum_tiles, i, N, tile_size, tile_w, tile_h, bits,
                     keys, flatten_ids);
  });
}

void isect_sort_cpu(const long long* keys, const int* flatten_ids, const long long* cum_tiles,
                    long long n_isects, int C, int N, int tile_w, int tile_h,
                    long long* sorted_keys, int* sorted_ids, int* offsets) {
  if (n_isects > 2147483647ll) {
    throw std::overflow_error("isect_sort: " + std::to_string(n_isects) +
                              " tile intersections exceed the int32 range; render fewer "
                              "cameras or Gaussians per call");
  }
  const int bits = tile_bits_of(tile_w, tile_h);
  const long long n_tiles = (long long)tile_w * tile_h;
  const long long n_total = (long long)C * n_tiles;
  // counting pass: intersections per (camera, tile), exclusive scan -> offsets
  std::vector<int> cursor(n_total + 1, 0);
  for (long long i = 0; i < n_isects; ++i) ++cursor[key_tile_linear(keys[i], bits, n_tiles) + 1];
  for (long long t = 0; t < n_total; ++t) cursor[t + 1] += cursor[t];
  for (long long t = 0; t < n_total; ++t) offsets[t] = cursor[t];
  // Scatter each camera's Gaussians in (depth, id) order: every tile's range is then sorted by
  // depth without sorting the intersections. Cameras own disjoint tiles: one task per camera.
  parallel_for(C, 1, [&](long long cb, long long ce) {
    std::vector<std::pair<unsigned int, int>> order;
    for (long long c = cb; c < ce; ++c) {
      order.clear();
      for (int n = 0; n < N; ++n) {
        const long long g = c * N + n;
        const long long s = g == 0 ? 0 : cum_tiles[g - 1];
        if (cum_tiles[g] > s) order.emplace_back((unsigned int)(keys[s] & 0xffffffffll), n);
      }
      std::sort(order.begin(), order.end());
      for (const auto& [depth_bits, n] : order) {
        const long long g = c * N + n;
        const long long s = g == 0 ? 0 : cum_tiles[g - 1];
        for (long long e = s; e < cum_tiles[g]; ++e) {
          const int dst = cursor[key_tile_linear(keys[e], bits, n_tiles)]++;
          sorted_keys[dst] = keys[e];
          sorted_ids[dst] = flatten_ids[e];
        }
      }
    }
  });
}

void isect_offset_encode_cpu(const long long* sorted_keys, long long n_isects, int C,
                             int tile_w, int tile_h, int* offsets) {
  const int bits = tile_bits_of(tile_w, tile_h);
  const long long n_tiles = (long long)tile_w * tile_h;
  const long long n_total = (long long)C * n_tiles;
  long long k = 0;
  for (long long t = 0; t < n_total; ++t) {
    while (k < n_isects && key_tile_linear(sorted_keys[k], bits, n_tiles) < t) ++k;
    offsets[t] = (int)k;
  }
}

}  // namespace rg::cpu
