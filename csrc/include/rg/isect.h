// Tile intersection per (camera, Gaussian), shared by the CPU and CUDA backends: the tile
// rectangle of a projected Gaussian (gsplat's rule), the exact test of its ellipse against each
// tile, and the count and fill passes over IsectArgs (rg/ops.h).
//
// The exact test (Speedy-Splat / FlashGS style). A pixel blends a Gaussian only where
// alpha = o exp(-sigma) >= 1/255, i.e. sigma <= t = ln(255 o), with sigma = 0.5 d^T Q d
// (Q the conic, d = mean - pixel centre). A tile of the Gaussian's box is emitted only when the
// ellipse {sigma <= t} reaches the rectangle spanned by the tile's pixel centres; every dropped
// (tile, Gaussian) pair has alpha < 1/255 at every pixel of the tile, which the rasterizer skips
// anyway, so images and gradients are the same with and without the test (bit for bit: the
// skipped terms were exact zeros). The test is conservative against the float32 rounding of
// the rasterizer's sigma and exp:
//   - it uses Q_delta = Q - delta diag(|a| + |b|, |c| + |b|), delta = 1e-5 (the float error of
//     the per-pixel sigma is below ~10 ulp of 0.5(|a|dx^2 + |c|dy^2) + |b||dx dy|, which the
//     diagonal bounds), and the level t + 1e-4 (exp's and the product's rounding);
//   - it is evaluated in double precision over the continuous rectangle of pixel centres;
//   - a conic that is not positive definite (after the margin) or not finite, or a non-finite
//     opacity, keeps the whole box (no culling).
// Rounding: the CPU build compiles this with -ffp-contract=off (CMakeLists.txt), so each operation
// rounds once, as in the PyTorch reference (_reference_tiles.py): the tile lists match it entry
// for entry on every x86-64/aarch64 CPU and with RG_NATIVE. nvcc fuses into FMAs (--fmad=true):
// the CUDA lists can differ by a tile whose edge lies within ~1e-15 px of a pixel-column
// boundary; both are conservative, so images are the same.
// For each tile row the ellipse's x-extent over the row's band of pixel centres is exact (the
// extreme of a convex set over a band), so the kept tiles of a row form one contiguous span:
// the count costs O(tile rows), not O(tiles), per Gaussian.
#pragma once

#include <cmath>

#include "rg/common.h"
#include "rg/math.h"
#include "rg/ops.h"

namespace rg {

struct TileRect {
  int x0, y0, x1, y1;  // [x0, x1) x [y0, y1)
};

RG_HD int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// floor / ceil of v clamped to [lo, hi], exactly, through an int conversion (the default x86-64
// target has no rounding instruction: floor/ceil would be library calls). NaN gives lo.
RG_HD int floor_in(double v, int lo, int hi) {
  if (!(v >= lo)) return lo;
  if (v > hi) return hi;
  const int t = (int)v;
  return t - (t > v ? 1 : 0);
}
RG_HD int ceil_in(double v, int lo, int hi) {
  if (!(v >= lo)) return lo;
  if (v > hi) return hi;
  const int t = (int)v;
  return t + (t < v ? 1 : 0);
}

// gsplat's tile box: [floor((m - r)/ts), ceil((m + r)/ts)) per axis (float32), clamped to the grid.
RG_HD TileRect tile_rect(float mx, float my, int rx, int ry, int tile_size, int tile_w,
                         int tile_h) {
  const float ts = (float)tile_size;
  TileRect r;
  r.x0 = floor_in((mx - rx) / ts, 0, tile_w);
  r.y0 = floor_in((my - ry) / ts, 0, tile_h);
  r.x1 = ceil_in((mx + rx) / ts, 0, tile_w);
  r.y1 = ceil_in((my + ry) / ts, 0, tile_h);
  return r;
}

constexpr double kConicMargin = 1e-5;  // delta above
constexpr double kLevelMargin = 1e-4;  // added to t

// One (camera, Gaussian) ready for the row spans.
struct IsectGauss {
  TileRect box;        // gsplat's box of the (opacity-aware) radii; empty when culled
  bool exact;          // rows get exact spans (else the whole box row)
  double mx, my;       // mean
  double A, B, C, det;  // Q_delta (positive definite when exact)
  double inv_a;        // 1 / A
  double s;            // the ellipse A u^2 + 2 B u v + C v^2 <= s, s = 2 (t + margin)
  double ur, vr;       // its rightmost point (u, v) relative to the mean
  double vmax;         // its half-height
};

// min / max of finite doubles (inline: fmin/fmax are library calls without fast-math)
RG_HD double dmin(double a, double b) { return a < b ? a : b; }
RG_HD double dmax(double a, double b) { return a > b ? a : b; }
RG_HD double clampd(double v, double lo, double hi) { return dmin(dmax(v, lo), hi); }

RG_HD IsectGauss isect_gauss(const IsectArgs& a, long long g) {
  IsectGauss q;
  q.exact = false;
  const int rx = a.radii[2 * g], ry = a.radii[2 * g + 1];
  if (rx <= 0 && ry <= 0) {
    q.box = TileRect{0, 0, 0, 0};
    return q;
  }
  const float mx = a.means2d[2 * g], my = a.means2d[2 * g + 1];
  q.box = tile_rect(mx, my, rx, ry, a.tile_size, a.tile_w, a.tile_h);
  if (!a.tight_tiles || a.conics == nullptr || a.opacities == nullptr) return q;
  const double o = a.opacities[g];
  const double A0 = a.conics[3 * g], B0 = a.conics[3 * g + 1], C0 = a.conics[3 * g + 2];
  const double t = log(o / (double)kAlphaMin);
  if (!(std::isfinite(t) && std::isfinite(A0) && std::isfinite(B0) && std::isfinite(C0))) {
    if (o >= 0.0 && o < (double)kAlphaMin) q.box = TileRect{0, 0, 0, 0};  // never blended
    return q;
  }
  q.s = 2.0 * (t + kLevelMargin);
  if (!(q.s > 0.0)) {  // o < 1/255: alpha < 1/255 everywhere
    q.box = TileRect{0, 0, 0, 0};
    return q;
  }
  q.A = A0 - kConicMargin * (fabs(A0) + fabs(B0));
  q.B = B0;
  q.C = C0 - kConicMargin * (fabs(C0) + fabs(B0));
  q.det = q.A * q.C - q.B * q.B;
  if (!(q.A > 0.0 && q.C > 0.0 && q.det > 0.0)) return q;
  q.mx = mx;
  q.my = my;
  q.ur = sqrt(q.s * q.C / q.det);
  q.vr = -q.B * q.ur / q.C;
  q.vmax = sqrt(q.s * q.A / q.det);
  q.inv_a = 1.0 / q.A;
  q.exact = true;
  return q;
}

// The ellipse's half-chord term at height v: u = (-B v +- root) / A on its boundary.
RG_HD double ellipse_root(const IsectGauss& q, double v) {
  return sqrt(dmax(q.s * q.A - q.det * v * v, 0.0));
}

// The tiles [tx0, tx1) of tile row ty (inside the box) whose pixel centres the ellipse may
// reach; false when none.
RG_HD bool isect_row(const IsectGauss& q, const IsectArgs& a, int ty, int& tx0, int& tx1) {
  tx0 = q.box.x0;
  tx1 = q.box.x1;
  if (!q.exact) return tx0 < tx1;
  const double ts = a.tile_size;
  // the band of pixel-centre heights of the row, relative to the mean
  const double v0 = dmax(ty * ts + 0.5 - q.my, -q.vmax);
  const double v1 = dmin(dmin((ty + 1) * ts, (double)a.height) - 0.5 - q.my, q.vmax);
  if (!(v0 <= v1)) return false;
  // the ellipse's x-extent over the band: its extreme points when inside, else the band edge
  // nearest to them (the right branch is concave in v, the left one convex); each edge's root
  // is computed once
  const double vl = -q.vr;
  const bool r_in = q.vr >= v0 && q.vr <= v1, l_in = vl >= v0 && vl <= v1;
  const bool need0 = (!r_in && q.vr < v0) || (!l_in && vl < v0);
  const bool need1 = (!r_in && !(q.vr < v0)) || (!l_in && !(vl < v0));
  const double root0 = need0 ? ellipse_root(q, v0) : 0.0, root1 = need1 ? ellipse_root(q, v1) : 0.0;
  const double u_hi = r_in ? q.ur : (q.vr < v0 ? (-q.B * v0 + root0) : (-q.B * v1 + root1)) * q.inv_a;
  const double u_lo = l_in ? -q.ur : (vl < v0 ? (-q.B * v0 - root0) : (-q.B * v1 - root1)) * q.inv_a;
  // pixel columns j whose centre j + 0.5 lies in [mx + u_lo, mx + u_hi] (clamped to the box's
  // pixel columns, one tile of slack), then their tiles by exact integer floor division
  const int its = a.tile_size, lo = (tx0 - 1) * its, hi = (tx1 + 1) * its;
  const int c0 = ceil_in(q.mx + u_lo - 0.5, lo, hi), c1 = floor_in(q.mx + u_hi - 0.5, lo, hi);
  if (!(c0 <= c1)) return false;
  const int t0 = (c0 >= 0 ? c0 : c0 - its + 1) / its;      // floor(c0 / ts)
  const int t1 = (c1 >= 0 ? c1 : c1 - its + 1) / its + 1;  // floor(c1 / ts) + 1
  tx0 = t0 > tx0 ? t0 : tx0;
  tx1 = t1 < tx1 ? t1 : tx1;
  return tx0 < tx1;
}

// The (camera, Gaussian) index of element s (depth order when a.order is set).
RG_HD long long isect_element(const IsectArgs& a, long long s) {
  return a.order != nullptr ? (long long)a.order[s] : s;
}

// Number of tiles element s emits.
RG_HD int isect_count_one(const IsectArgs& a, long long s) {
  const IsectGauss q = isect_gauss(a, isect_element(a, s));
  int n = 0;
  for (int ty = q.box.y0; ty < q.box.y1; ++ty) {
    int tx0, tx1;
    if (isect_row(q, a, ty, tx0, tx1)) n += tx1 - tx0;
  }
  return n;
}

// Writes the keys (camera * n_tiles + tile) and flatten ids of Gaussian g from index `start`,
// never at or beyond `end`; returns how many it wrote.
RG_HD int isect_fill_range(const IsectArgs& a, long long g, long long start, long long end) {
  if (start >= end) return 0;
  const IsectGauss q = isect_gauss(a, g);
  const long long base = (g / a.N) * (long long)a.tile_w * a.tile_h;
  long long cur = start;
  for (int ty = q.box.y0; ty < q.box.y1; ++ty) {
    int tx0, tx1;
    if (!isect_row(q, a, ty, tx0, tx1)) continue;
    for (int tx = tx0; tx < tx1 && cur < end; ++tx, ++cur) {
      a.keys[cur] = (int)(base + (long long)ty * a.tile_w + tx);
      a.ids[cur] = (int)g;
    }
  }
  return (int)(cur - start);
}

// Writes the intersections of element s at [cum[s-1], cum[s]).
RG_HD void isect_fill_one(const IsectArgs& a, long long s) {
  isect_fill_range(a, isect_element(a, s), s == 0 ? 0 : a.cum[s - 1], a.cum[s]);
}

}  // namespace rg
