// Per-tile data of the CPU rasterizer (rasterize.cpp only): the tile's pixel and intersection
// ranges and its Gaussians gathered into structure-of-arrays form, with the per-row span of
// pixels each Gaussian can reach (outside it alpha < 1/255).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.h"
#include "rg/math.h"
#include "rg/ops.h"

namespace rg::cpu::raster {

constexpr int kMaxTile = 64;  // tile_size limit (row buffers live on the stack)

// Per (camera, Gaussian) values the tiles share, computed once per call (not once per tile):
// `skip`, a conservative bound on sigma beyond which alpha < 1/255 for sure (the exact test
// still decides near the bound), and the row_span helpers: 1 / (2A) with A = ca / 2 (0: no
// culling, whole row), the y half-extent (with margin) and an absolute x margin of the ellipse
// sigma <= skip.
struct GaussPrep {
  std::vector<float> skip, inv2a, ey, xmargin;

  void compute(const RasterArgs& a) {
    const long long n = (long long)a.C * a.N;
    for (auto* v : {&skip, &inv2a, &ey, &xmargin}) v->resize(n);
    parallel_for(n, 4096, [&](long long b, long long e) {
      for (long long g = b; g < e; ++g) {
        const float op = a.opacities[g], ca = a.conics[3 * g], cb = a.conics[3 * g + 1],
                    cc = a.conics[3 * g + 2];
        // NaN opacity: +inf, so only the exact tests decide
        skip[g] = op > 0.f ? logf(op / kAlphaMin) + 1e-3f : (op <= 0.f ? -1.f : INFINITY);
        // sigma = 0.5 d^T Q d, Q = [[ca, cb], [cb, cc]]: {sigma <= s} has half-extents
        // sqrt(2 s cc / det) in x and sqrt(2 s ca / det) in y
        const double det = (double)ca * cc - (double)cb * cb;
        const double sk = skip[g];
        if (ca > 0.f && det > 0.0 && std::isfinite(det) && sk >= 0.0 && std::isfinite(sk)) {
          inv2a[g] = (float)(1.0 / ca);
          ey[g] = (float)(std::sqrt(2.0 * sk * ca / det) * 1.001 + 0.01);
          xmargin[g] = (float)(std::sqrt(2.0 * sk * cc / det) * 1e-3 + 0.01);
        } else {
          inv2a[g] = 0.f;
          ey[g] = xmargin[g] = 0.f;
        }
      }
    });
  }
};

// The tile's Gaussians, structure of arrays (gathered from the inputs and a GaussPrep).
struct TileGauss {
  std::vector<float> mx, my, ca, cb, cc, op, skip, col;
  std::vector<float> inv2a, ey, xmargin;
  std::vector<float> lanes;  // SIMD backward: per-Gaussian gradient sums, 8 lanes each

  void gather(const RasterArgs& a, const GaussPrep& prep, int start, int end, int CH) {
    const int n = end - start;
    for (auto* v : {&mx, &my, &ca, &cb, &cc, &op, &skip, &inv2a, &ey, &xmargin}) v->resize(n);
    col.resize((size_t)n * CH);
    for (int k = 0; k < n; ++k) {
      const long long g = a.flatten_ids[start + k];
      mx[k] = a.means2d[2 * g];
      my[k] = a.means2d[2 * g + 1];
      ca[k] = a.conics[3 * g];
      cb[k] = a.conics[3 * g + 1];
      cc[k] = a.conics[3 * g + 2];
      op[k] = a.opacities[g];
      skip[k] = prep.skip[g];
      inv2a[k] = prep.inv2a[g];
      ey[k] = prep.ey[g];
      xmargin[k] = prep.xmargin[g];
      for (int c = 0; c < CH; ++c) col[(size_t)k * CH + c] = a.colors[g * CH + c];
    }
  }

  // Pixels [j0, j1] (within [x0, x1 - 1]) of the row at pixel centre py that may satisfy
  // sigma <= skip[k]: the chord of the ellipse 0.5 d^T Q d <= skip, enlarged by a margin.
  // Returns false when the Gaussian misses the row. A conic that is not positive definite or
  // not finite gives the whole row (the exact per-pixel tests decide).
  bool row_span(int k, float py, int x0, int x1, int& j0, int& j1) const {
    const float s = skip[k];
    if (!(s >= 0.f)) return false;  // opacity <= 0: never visible
    if (inv2a[k] == 0.f) {
      j0 = x0;
      j1 = x1 - 1;
      return true;
    }
    const float dy = my[k] - py;
    if (fabsf(dy) > ey[k]) return false;
    // with d = mean - pixel: 0.5 ca dx^2 + cb dy dx + (0.5 cc dy^2 - s) <= 0
    const float A = 0.5f * ca[k], B = cb[k] * dy, c0 = 0.5f * cc[k] * dy * dy - s;
    const float disc = B * B - 4.f * A * c0;
    const float half = (disc > 0.f ? sqrtf(disc) * inv2a[k] : 0.f) * 1.001f + xmargin[k];
    const float centre = mx[k] + B * inv2a[k] - 0.5f;  // pixel j has centre j + 0.5
    const float lo = centre - half, hi = centre + half;
    if (!(hi >= (float)x0 && lo <= (float)(x1 - 1))) return false;
    j0 = lo <= (float)x0 ? x0 : (int)ceilf(lo);
    j1 = hi >= (float)(x1 - 1) ? x1 - 1 : (int)floorf(hi);
    return j0 <= j1;
  }
};

struct TileRange {
  int cam, x0, y0, x1, y1, start, end;
};

inline TileRange tile_range(const RasterArgs& a, long long t) {
  const long long n_tiles = (long long)a.tile_w * a.tile_h;
  TileRange r;
  r.cam = (int)(t / n_tiles);
  const int tile = (int)(t % n_tiles);
  const int ty = tile / a.tile_w, tx = tile % a.tile_w;
  r.x0 = tx * a.tile_size;
  r.y0 = ty * a.tile_size;
  r.x1 = std::min(a.width, r.x0 + a.tile_size);
  r.y1 = std::min(a.height, r.y0 + a.tile_size);
  r.start = a.offsets[t];
  r.end = t == (long long)a.C * n_tiles - 1 ? (int)a.n_isects : a.offsets[t + 1];
  return r;
}

}  // namespace rg::cpu::raster
