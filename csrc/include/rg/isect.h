// Tile intersection per (camera, Gaussian), shared by the CPU and CUDA backends: the tile
// rectangle a projected Gaussian touches (gsplat's rule), the count pass, the fill pass writing
// 64-bit keys (camera | tile | depth bits) and the key layout.
#pragma once

#include <cmath>

#include "rg/common.h"

namespace rg {

struct TileRect {
  int x0, y0, x1, y1;  // [x0, x1) x [y0, y1)
};

RG_HD int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

RG_HD TileRect tile_rect(float mx, float my, int rx, int ry, int tile_size, int tile_w,
                         int tile_h) {
  const float ts = (float)tile_size;
  TileRect r;
  r.x0 = clampi((int)floorf((mx - rx) / ts), 0, tile_w);
  r.y0 = clampi((int)floorf((my - ry) / ts), 0, tile_h);
  r.x1 = clampi((int)ceilf((mx + rx) / ts), 0, tile_w);
  r.y1 = clampi((int)ceilf((my + ry) / ts), 0, tile_h);
  return r;
}

// Bits of the tile id inside the keys: floor(log2(tile_w * tile_h)) + 1, as gsplat.
RG_HD int tile_bits_of(int tile_w, int tile_h) {
  const long long n = (long long)tile_w * tile_h;
  int bits = 0;
  while ((1ll << bits) <= n) ++bits;
  return bits;
}

RG_HD int isect_count_one(const int* radii, const float* means2d, long long idx, int tile_size,
                          int tile_w, int tile_h) {
  const int rx = radii[2 * idx], ry = radii[2 * idx + 1];
  if (rx <= 0 && ry <= 0) return 0;
  const TileRect r =
      tile_rect(means2d[2 * idx], means2d[2 * idx + 1], rx, ry, tile_size, tile_w, tile_h);
  return (r.x1 - r.x0) * (r.y1 - r.y0);
}

// cum: int64 inclusive cumsum of the counts; writes this element's keys and flatten ids.
RG_HD void isect_fill_one(const int* radii, const float* means2d, const float* depths,
                          const long long* cum, long long idx, int N, int tile_size, int tile_w,
                          int tile_h, int tile_bits, long long* keys, int* flatten_ids) {
  const int rx = radii[2 * idx], ry = radii[2 * idx + 1];
  if (rx <= 0 && ry <= 0) return;
  const long long cam = idx / N;
  const TileRect r =
      tile_rect(means2d[2 * idx], means2d[2 * idx + 1], rx, ry, tile_size, tile_w, tile_h);
  long long cur = idx == 0 ? 0 : cum[idx - 1];
  const unsigned int depth_bits = float_bits(depths[idx]);  // depth > near > 0: monotone
  const unsigned long long head = ((unsigned long long)cam << (32 + tile_bits));
  for (int ty = r.y0; ty < r.y1; ++ty)
    for (int tx = r.x0; tx < r.x1; ++tx) {
      const unsigned long long tile = (unsigned long long)(ty * tile_w + tx);
      keys[cur] = (long long)(head | (tile << 32) | (unsigned long long)depth_bits);
      flatten_ids[cur] = (int)idx;
      ++cur;
    }
}

// (camera << tile_bits | tile) of a key, re-linearised as camera * n_tiles + tile.
RG_HD long long key_tile_linear(long long key, int tile_bits, long long n_tiles) {
  const unsigned long long hi = (unsigned long long)key >> 32;
  const unsigned long long cam = hi >> tile_bits;
  const unsigned long long tile = hi & ((1ull << tile_bits) - 1ull);
  return (long long)(cam * (unsigned long long)n_tiles + tile);
}

// True when camera ids up to C - 1 fit above 32 + tile_bits bits with bit 63 clear.
inline bool keys_fit(int C, int tile_bits) {
  int cam_bits = 0;
  while ((1ll << cam_bits) <= (long long)(C > 0 ? C - 1 : 0)) ++cam_bits;
  return 32 + tile_bits + cam_bits <= 63;
}

}  // namespace rg
