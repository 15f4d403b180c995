// Tile rasterizer on the CPU, gsplat's conventions: one task per (camera, tile) on the thread
// pool. The tile's depth-sorted Gaussians are gathered into contiguous arrays once. Each pixel
// row of the tile is blended Gaussian by Gaussian (front to back), each Gaussian touching only
// the pixels of the row inside its ellipse sigma <= log(255 o) (outside it alpha < 1/255), so
// the work is the number of (pixel, Gaussian) pairs that can contribute; a pixel stops before T
// would reach 1e-4 and a row stops when all its pixels have. The backward walks each row back
// to front from its furthest last contributor, sums each Gaussian's gradient over the row and
// writes one row per (tile, Gaussian) intersection into a scratch buffer (each task owns its
// tiles' rows: no races, no atomics); a second pass sums every Gaussian's rows in intersection
// order, so the gradients are bit-identical whatever the thread count or scheduling. Two
// implementations of the per-tile kernels: portable scalar C++, and AVX2 kernels (8 pixels per
// instruction) picked at run time on CPUs that have AVX2 and FMA.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops_cpu.h"
#include "parallel.h"
#include "raster_tile.h"
#include "rg/common.h"
#include "rg/math.h"

namespace rg::cpu {

namespace {

using namespace raster;

template <int CH>
void fwd_tile(const RasterArgs& a, const GaussPrep& prep, long long t, TileGauss& G) {
  const TileRange r = tile_range(a, t);
  const int n = r.end - r.start;
  const int w = r.x1 - r.x0;
  G.gather(a, prep, r.start, r.end, CH);
  const float* bg = a.backgrounds ? a.backgrounds + (long long)r.cam * CH : nullptr;
  float T[kMaxTile], acc[kMaxTile][CH];
  int cur[kMaxTile];
  bool done[kMaxTile];
  for (int i = r.y0; i < r.y1; ++i) {
    const float py = (float)i + 0.5f;
    for (int q = 0; q < w; ++q) {
      T[q] = 1.f;
      cur[q] = -1;
      done[q] = false;
      for (int ch = 0; ch < CH; ++ch) acc[q][ch] = 0.f;
    }
    int active = w;
    for (int k = 0; k < n && active > 0; ++k) {
      int j0, j1;
      if (!G.row_span(k, py, r.x0, r.x1, j0, j1)) continue;
      const float mxk = G.mx[k], dy = G.my[k] - py, cak = G.ca[k], cbk = G.cb[k], cck = G.cc[k];
      const float opk = G.op[k], sk = G.skip[k];
      const float* c = &G.col[(size_t)k * CH];
      for (int j = j0; j <= j1; ++j) {
        const int q = j - r.x0;
        if (done[q]) continue;
        const float dx = mxk - ((float)j + 0.5f);
        const float sigma = 0.5f * (cak * dx * dx + cck * dy * dy) + cbk * dx * dy;
        if (sigma < 0.f || sigma > sk) continue;
        const float alpha = fminf(kAlphaMax, opk * expf(-sigma));
        if (alpha < kAlphaMin) continue;
        const float next_T = T[q] * (1.f - alpha);
        if (next_T <= kTransmittanceMin) {
          done[q] = true;
          --active;
          continue;
        }
        const float vis = alpha * T[q];
        for (int ch = 0; ch < CH; ++ch) acc[q][ch] += c[ch] * vis;
        cur[q] = r.start + k;
        T[q] = next_T;
      }
    }
    const long long row = ((long long)r.cam * a.height + i) * a.width;
    for (int q = 0; q < w; ++q) {
      const long long pix = row + r.x0 + q;
      a.render_alphas[pix] = 1.f - T[q];
      for (int ch = 0; ch < CH; ++ch)
        a.render_colors[pix * CH + ch] = acc[q][ch] + (bg ? T[q] * bg[ch] : 0.f);
      a.last_ids[pix] = cur[q];
    }
  }
}

template <int CH, bool ABS>
void bwd_tile(const RasterArgs& a, const RasterGrads& gr, const GaussPrep& prep, long long t,
              TileGauss& G, float* isect_grads) {
  const TileRange r = tile_range(a, t);
  const int n = r.end - r.start;
  if (n <= 0) return;
  const int w = r.x1 - r.x0;
  G.gather(a, prep, r.start, r.end, CH);
  constexpr int S = 8 + CH;  // per Gaussian: mx, my, |mx|, |my|, ca, cb, cc, op, colours
  // this tile's rows of the per-intersection buffer (owned by this task: no races)
  float* grads = isect_grads + (size_t)r.start * S;
  std::fill(grads, grads + (size_t)n * S, 0.f);
  const float* bg = a.backgrounds ? a.backgrounds + (long long)r.cam * CH : nullptr;
  float T[kMaxTile], T_final[kMaxTile], buffer[kMaxTile][CH], v_rc[kMaxTile][CH];
  float v_ra[kMaxTile], bg_dot[kMaxTile];
  int last[kMaxTile];
  for (int i = r.y0; i < r.y1; ++i) {
    const float py = (float)i + 0.5f;
    const long long row = ((long long)r.cam * a.height + i) * a.width;
    int row_last = -1;
    for (int q = 0; q < w; ++q) {
      const long long pix = row + r.x0 + q;
      last[q] = a.last_ids[pix] - r.start;  // local index; < 0: no contributor
      row_last = std::max(row_last, last[q]);
      T_final[q] = 1.f - a.render_alphas[pix];
      T[q] = T_final[q];
      v_ra[q] = gr.v_render_alphas ? gr.v_render_alphas[pix] : 0.f;
      bg_dot[q] = 0.f;
      for (int ch = 0; ch < CH; ++ch) {
        buffer[q][ch] = 0.f;
        v_rc[q][ch] = gr.v_render_colors[pix * CH + ch];
        if (bg) bg_dot[q] += bg[ch] * v_rc[q][ch];
      }
    }
    for (int k = row_last; k >= 0; --k) {
      int j0, j1;
      if (!G.row_span(k, py, r.x0, r.x1, j0, j1)) continue;
      const float mxk = G.mx[k], dy = G.my[k] - py, cak = G.ca[k], cbk = G.cb[k], cck = G.cc[k];
      const float opk = G.op[k], sk = G.skip[k];
      const float* c = &G.col[(size_t)k * CH];
      float s_mx = 0.f, s_my = 0.f, s_ax = 0.f, s_ay = 0.f, s_ca = 0.f, s_cb = 0.f, s_cc = 0.f;
      float s_op = 0.f, s_col[CH] = {};
      bool any = false;
      for (int j = j0; j <= j1; ++j) {
        const int q = j - r.x0;
        if (k > last[q]) continue;
        const float dx = mxk - ((float)j + 0.5f);
        const float sigma = 0.5f * (cak * dx * dx + cck * dy * dy) + cbk * dx * dy;
        if (sigma < 0.f || sigma > sk) continue;
        const float vis = expf(-sigma);
        const float alpha = fminf(kAlphaMax, opk * vis);
        if (alpha < kAlphaMin) continue;
        any = true;
        const float ra = 1.f / (1.f - alpha);
        T[q] *= ra;
        const float fac = alpha * T[q];
        float v_alpha = 0.f;
        for (int ch = 0; ch < CH; ++ch) {
          s_col[ch] += fac * v_rc[q][ch];
          v_alpha += (c[ch] * T[q] - buffer[q][ch] * ra) * v_rc[q][ch];
          buffer[q][ch] += c[ch] * fac;
        }
        v_alpha += T_final[q] * ra * v_ra[q] - T_final[q] * ra * bg_dot[q];
        if (opk * vis <= kAlphaMax) {
          const float v_sigma = -opk * vis * v_alpha;
          const float v_mx = v_sigma * (cak * dx + cbk * dy);
          const float v_my = v_sigma * (cbk * dx + cck * dy);
          s_mx += v_mx;
          s_my += v_my;
          if constexpr (ABS) {
            s_ax += fabsf(v_mx);
            s_ay += fabsf(v_my);
          }
          s_ca += 0.5f * v_sigma * dx * dx;
          s_cb += v_sigma * dx * dy;
          s_cc += 0.5f * v_sigma * dy * dy;
          s_op += vis * v_alpha;
        }
      }
      if (!any) continue;
      float* Ak = grads + (size_t)k * S;
      Ak[0] += s_mx;
      Ak[1] += s_my;
      Ak[2] += s_ax;
      Ak[3] += s_ay;
      Ak[4] += s_ca;
      Ak[5] += s_cb;
      Ak[6] += s_cc;
      Ak[7] += s_op;
      for (int ch = 0; ch < CH; ++ch) Ak[8 + ch] += s_col[ch];
    }
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RG_HAVE_SIMD 1

// ---- AVX2 kernels: 8-lane vectors (GCC/Clang vector extensions) in functions compiled for
// AVX2 + FMA (target attribute; chosen at run time by __builtin_cpu_supports, so the wheel
// still runs on any x86-64). A tile row is processed as ceil(width / 8) lane groups; every
// per-pixel decision is a lane mask, so the algorithm is the scalar one's. exp is a polynomial
// (<= 2 ulp) and products fuse into FMAs (the build's -ffp-contract=off is lifted for these
// kernels only): values match the scalar path to ~1e-6. Which pixels a Gaussian reaches is
// still decided conservatively (GaussPrep's skip bound and row spans carry margins far above
// these differences; only `alpha < 1/255`, a generic threshold, differs between the paths).
#if defined(__clang__)
#pragma clang fp contract(fast)
#else
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif
#define RG_SIMD __attribute__((target("avx2,fma")))
#define RG_SIMD_INLINE __attribute__((target("avx2,fma"), always_inline)) inline
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
constexpr int kLanes = 8;
constexpr int kMaxGroups = kMaxTile / kLanes;

RG_SIMD_INLINE v8f splat(float x) { return v8f{} + x; }
RG_SIMD_INLINE v8i splati(int x) { return v8i{} + x; }
// Lane masks are 0 / -1 per lane: their sign bits, gathered by one movemask.
RG_SIMD_INLINE int mask_bits(v8i m) {
  return __builtin_ia32_movmskps256(reinterpret_cast<v8f>(m));
}
RG_SIMD_INLINE bool any(v8i m) { return mask_bits(m) != 0; }
RG_SIMD_INLINE float hsum(v8f v) {
  float s = 0.f;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}
// p[0..8) += v (unaligned)
RG_SIMD_INLINE void add_lanes(float* p, v8f v) {
  v8f cur;
  __builtin_memcpy(&cur, p, sizeof(cur));
  cur += v;
  __builtin_memcpy(p, &cur, sizeof(cur));
}
RG_SIMD_INLINE v8f vmin(v8f a, v8f b) { return a < b ? a : b; }
RG_SIMD_INLINE v8f vmax(v8f a, v8f b) { return a > b ? a : b; }
RG_SIMD_INLINE v8f vabs(v8f a) { return a < 0.f ? -a : a; }

// exp(x) for x <= 0 (Cephes expf: range reduction by ln 2 and a degree-6 polynomial; within 2
// ulp of expf on [-87, 0]; NaN lanes give NaN, masked out by the callers).
RG_SIMD_INLINE v8f vexp_neg(v8f x) {
  x = vmax(x, splat(-87.f));
  const v8f fx = x * 1.44269504088896341f + 0.5f;
  v8i n = __builtin_convertvector(fx, v8i);  // truncation toward zero
  n = __builtin_convertvector(n, v8f) > fx ? n - 1 : n;  // floor
  const v8f nf = __builtin_convertvector(n, v8f);
  x = x - nf * 0.693359375f;
  x = x - nf * -2.12194440e-4f;
  const v8f z = x * x;
  v8f y = splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.f;
  const v8i bits = (n + 127) << 23;
  v8f scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}

template <int CH>
RG_SIMD void fwd_tile_simd(const RasterArgs& a, const GaussPrep& prep, long long t, TileGauss& G) {
  const TileRange r = tile_range(a, t);
  const int n = r.end - r.start;
  const int w = r.x1 - r.x0;
  const int groups = (w + kLanes - 1) / kLanes;
  G.gather(a, prep, r.start, r.end, CH);
  const float* bg = a.backgrounds ? a.backgrounds + (long long)r.cam * CH : nullptr;
  v8f px[kMaxGroups], T[kMaxGroups], acc[kMaxGroups][CH];
  v8i cur[kMaxGroups], done[kMaxGroups];
  for (int i = r.y0; i < r.y1; ++i) {
    const float py = (float)i + 0.5f;
    for (int gi = 0; gi < groups; ++gi) {
      for (int l = 0; l < kLanes; ++l) {
        const int j = r.x0 + gi * kLanes + l;
        px[gi][l] = (float)j + 0.5f;
        done[gi][l] = j < r.x1 ? 0 : -1;  // lanes past the image edge never blend
      }
      T[gi] = splat(1.f);
      cur[gi] = splati(-1);
      for (int ch = 0; ch < CH; ++ch) acc[gi][ch] = splat(0.f);
    }
    int active = w;
    for (int k = 0; k < n && active > 0; ++k) {
      int j0, j1;
      if (!G.row_span(k, py, r.x0, r.x1, j0, j1)) continue;
      const float dy = G.my[k] - py;
      const v8f mxk = splat(G.mx[k]), cak = splat(G.ca[k]), cbk = splat(G.cb[k]);
      const v8f ccdy2 = splat(G.cc[k] * dy * dy), dyv = splat(dy);
      const float sk = G.skip[k], opk = G.op[k];
      const float* c = &G.col[(size_t)k * CH];
      for (int gi = (j0 - r.x0) / kLanes; gi <= (j1 - r.x0) / kLanes; ++gi) {
        const v8f dx = mxk - px[gi];
        const v8f sigma = 0.5f * (cak * dx * dx + ccdy2) + cbk * dx * dyv;
        v8i in = (sigma >= 0.f) & (sigma <= sk) & ~done[gi];
        if (!any(in)) continue;
        const v8f alpha = vmin(splat(kAlphaMax), opk * vexp_neg(-sigma));
        in &= alpha >= kAlphaMin;
        const v8f next_T = T[gi] * (1.f - alpha);
        const v8i stop = in & (next_T <= kTransmittanceMin);
        if (any(stop)) {
          done[gi] |= stop;
          in &= ~stop;
          active -= __builtin_popcount(mask_bits(stop));
        }
        const v8f vis = alpha * T[gi];
        for (int ch = 0; ch < CH; ++ch) acc[gi][ch] = in ? acc[gi][ch] + c[ch] * vis : acc[gi][ch];
        T[gi] = in ? next_T : T[gi];
        cur[gi] = in ? splati(r.start + k) : cur[gi];
      }
    }
    const long long row = ((long long)r.cam * a.height + i) * a.width;
    for (int q = 0; q < w; ++q) {
      const int gi = q / kLanes, l = q % kLanes;
      const long long pix = row + r.x0 + q;
      a.render_alphas[pix] = 1.f - T[gi][l];
      for (int ch = 0; ch < CH; ++ch)
        a.render_colors[pix * CH + ch] = acc[gi][ch][l] + (bg ? T[gi][l] * bg[ch] : 0.f);
      a.last_ids[pix] = cur[gi][l];
    }
  }
}

template <int CH, bool ABS>
RG_SIMD void bwd_tile_simd(const RasterArgs& a, const RasterGrads& gr, const GaussPrep& prep,
                           long long t, TileGauss& G, float* isect_grads) {
  const TileRange r = tile_range(a, t);
  const int n = r.end - r.start;
  if (n <= 0) return;
  const int w = r.x1 - r.x0;
  const int groups = (w + kLanes - 1) / kLanes;
  G.gather(a, prep, r.start, r.end, CH);
  constexpr int S = 8 + CH;  // per Gaussian: mx, my, |mx|, |my|, ca, cb, cc, op, colours
  // this tile's rows of the per-intersection buffer (owned by this task: no races)
  float* grads = isect_grads + (size_t)r.start * S;
  // each Gaussian's gradient terms summed lane-wise over the rows, reduced across the lanes
  // once at the end of the tile (a fixed order: deterministic)
  G.lanes.assign((size_t)n * S * kLanes, 0.f);
  const float* bg = a.backgrounds ? a.backgrounds + (long long)r.cam * CH : nullptr;
  v8f px[kMaxGroups], T[kMaxGroups], T_final[kMaxGroups], buffer[kMaxGroups][CH];
  v8f v_rc[kMaxGroups][CH], v_ra[kMaxGroups], bg_dot[kMaxGroups];
  v8i last[kMaxGroups];
  for (int i = r.y0; i < r.y1; ++i) {
    const float py = (float)i + 0.5f;
    const long long row = ((long long)r.cam * a.height + i) * a.width;
    int row_last = -1;
    for (int gi = 0; gi < groups; ++gi) {
      for (int l = 0; l < kLanes; ++l) {
        const int q = gi * kLanes + l;
        px[gi][l] = (float)(r.x0 + q) + 0.5f;
        if (q >= w) {  // past the image edge: no contributor, zero gradients
          last[gi][l] = -1;
          T_final[gi][l] = 1.f;
          v_ra[gi][l] = 0.f;
          bg_dot[gi][l] = 0.f;
          for (int ch = 0; ch < CH; ++ch) v_rc[gi][ch][l] = 0.f;
          continue;
        }
        const long long pix = row + r.x0 + q;
        last[gi][l] = a.last_ids[pix] - r.start;  // local index; < 0: no contributor
        row_last = std::max(row_last, last[gi][l]);
        T_final[gi][l] = 1.f - a.render_alphas[pix];
        v_ra[gi][l] = gr.v_render_alphas ? gr.v_render_alphas[pix] : 0.f;
        float bd = 0.f;
        for (int ch = 0; ch < CH; ++ch) {
          v_rc[gi][ch][l] = gr.v_render_colors[pix * CH + ch];
          if (bg) bd += bg[ch] * v_rc[gi][ch][l];
        }
        bg_dot[gi][l] = bd;
      }
      T[gi] = T_final[gi];
      for (int ch = 0; ch < CH; ++ch) buffer[gi][ch] = splat(0.f);
    }
    for (int k = row_last; k >= 0; --k) {
      int j0, j1;
      if (!G.row_span(k, py, r.x0, r.x1, j0, j1)) continue;
      const float dy = G.my[k] - py;
      const v8f mxk = splat(G.mx[k]), cak = splat(G.ca[k]), cbk = splat(G.cb[k]);
      const v8f cck = splat(G.cc[k]), dyv = splat(dy), ccdy2 = splat(G.cc[k] * dy * dy);
      const float sk = G.skip[k], opk = G.op[k];
      const float* c = &G.col[(size_t)k * CH];
      v8f s_mx = splat(0.f), s_my = s_mx, s_ax = s_mx, s_ay = s_mx, s_ca = s_mx, s_cb = s_mx;
      v8f s_cc = s_mx, s_op = s_mx, s_col[CH];
      for (int ch = 0; ch < CH; ++ch) s_col[ch] = s_mx;
      bool hit = false;
      for (int gi = (j0 - r.x0) / kLanes; gi <= (j1 - r.x0) / kLanes; ++gi) {
        const v8f dx = mxk - px[gi];
        const v8f sigma = 0.5f * (cak * dx * dx + ccdy2) + cbk * dx * dyv;
        v8i valid = (last[gi] >= k) & (sigma >= 0.f) & (sigma <= sk);
        if (!any(valid)) continue;
        const v8f vis = vexp_neg(-sigma);
        const v8f alpha = vmin(splat(kAlphaMax), opk * vis);
        valid &= alpha >= kAlphaMin;
        if (!any(valid)) continue;
        hit = true;
        const v8f ra = 1.f / (1.f - alpha);
        T[gi] = valid ? T[gi] * ra : T[gi];
        const v8f fac = alpha * T[gi];
        v8f v_alpha = splat(0.f);
        for (int ch = 0; ch < CH; ++ch) {
          s_col[ch] = valid ? s_col[ch] + fac * v_rc[gi][ch] : s_col[ch];
          v_alpha += (c[ch] * T[gi] - buffer[gi][ch] * ra) * v_rc[gi][ch];
          buffer[gi][ch] = valid ? buffer[gi][ch] + c[ch] * fac : buffer[gi][ch];
        }
        v_alpha += T_final[gi] * ra * v_ra[gi] - T_final[gi] * ra * bg_dot[gi];
        const v8i unclamped = valid & (opk * vis <= kAlphaMax);
        const v8f v_sigma = -opk * vis * v_alpha;
        const v8f v_mx = v_sigma * (cak * dx + cbk * dyv);
        const v8f v_my = v_sigma * (cbk * dx + cck * dyv);
        s_mx = unclamped ? s_mx + v_mx : s_mx;
        s_my = unclamped ? s_my + v_my : s_my;
        if constexpr (ABS) {
          s_ax = unclamped ? s_ax + vabs(v_mx) : s_ax;
          s_ay = unclamped ? s_ay + vabs(v_my) : s_ay;
        }
        s_ca = unclamped ? s_ca + 0.5f * v_sigma * dx * dx : s_ca;
        s_cb = unclamped ? s_cb + v_sigma * dx * dyv : s_cb;
        s_cc = unclamped ? s_cc + 0.5f * v_sigma * dyv * dyv : s_cc;
        s_op = unclamped ? s_op + vis * v_alpha : s_op;
      }
      if (!hit) continue;
      float* lk = &G.lanes[(size_t)k * S * kLanes];
      add_lanes(lk, s_mx);
      add_lanes(lk + kLanes, s_my);
      if constexpr (ABS) {
        add_lanes(lk + 2 * kLanes, s_ax);
        add_lanes(lk + 3 * kLanes, s_ay);
      }
      add_lanes(lk + 4 * kLanes, s_ca);
      add_lanes(lk + 5 * kLanes, s_cb);
      add_lanes(lk + 6 * kLanes, s_cc);
      add_lanes(lk + 7 * kLanes, s_op);
      for (int ch = 0; ch < CH; ++ch) add_lanes(lk + (8 + ch) * kLanes, s_col[ch]);
    }
  }
  for (int k = 0; k < n; ++k)
    for (int j = 0; j < S; ++j) {
      v8f v;
      __builtin_memcpy(&v, &G.lanes[((size_t)k * S + j) * kLanes], sizeof(v));
      grads[(size_t)k * S + j] = hsum(v);
    }
}

#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC pop_options
#endif
#endif  // x86-64 SIMD kernels

void check_args(const RasterArgs& a, const char* op) {
  if (a.tile_size < 1 || a.tile_size > kMaxTile) {
    throw std::invalid_argument(std::string(op) + ": tile_size must be in 1..64, got " +
                                std::to_string(a.tile_size));
  }
  if (a.CH < 1 || a.CH > 4) {
    throw std::invalid_argument(std::string(op) +
                                ": the rasterizer supports 1..4 channels per Gaussian, got " +
                                std::to_string(a.CH));
  }
  if (a.n_isects > 2147483647ll) {
    throw std::overflow_error(std::string(op) + ": " + std::to_string(a.n_isects) +
                              " tile intersections exceed the int32 range; render fewer "
                              "cameras or Gaussians per call");
  }
}

// The AVX2 kernels when the CPU has AVX2 and FMA, unless RG_RASTER_SIMD=0 (the scalar kernels:
// a reference for tests and the path of other CPUs).
bool use_simd() {
#if defined(RG_HAVE_SIMD)
  static const bool on = [] {
    const char* env = std::getenv("RG_RASTER_SIMD");
    if (env != nullptr && std::string(env) == "0") return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return on;
#else
  return false;
#endif
}

template <int CH>
void fwd_all(const RasterArgs& a) {
  const bool simd = use_simd();
  GaussPrep prep;
  prep.compute(a);
  parallel_for((long long)a.C * a.tile_w * a.tile_h, 1, [&](long long b, long long e) {
    TileGauss G;
    for (long long t = b; t < e; ++t) {
#if defined(RG_HAVE_SIMD)
      if (simd) {
        fwd_tile_simd<CH>(a, prep, t, G);
        continue;
      }
#endif
      fwd_tile<CH>(a, prep, t, G);
    }
  });
}

// Adds the per-intersection rows to the per-Gaussian outputs: each Gaussian's rows are summed
// in increasing intersection order (camera, tile, depth), whatever the thread count.
template <int CH, bool ABS>
void reduce_isects(const RasterArgs& a, const RasterGrads& gr, const float* isect_grads) {
  constexpr int S = 8 + CH;
  ordered_scatter_add(
      a.n_isects, (long long)a.C * a.N, [&](long long i) { return (long long)a.flatten_ids[i]; },
      [&](long long i, long long g) {
        const float* Ak = isect_grads + (size_t)i * S;
        gr.v_means2d[2 * g] += Ak[0];
        gr.v_means2d[2 * g + 1] += Ak[1];
        if constexpr (ABS) {
          gr.v_means2d_abs[2 * g] += Ak[2];
          gr.v_means2d_abs[2 * g + 1] += Ak[3];
        }
        gr.v_conics[3 * g] += Ak[4];
        gr.v_conics[3 * g + 1] += Ak[5];
        gr.v_conics[3 * g + 2] += Ak[6];
        gr.v_opacities[g] += Ak[7];
        for (int ch = 0; ch < CH; ++ch) gr.v_colors[g * CH + ch] += Ak[8 + ch];
      });
}

// One task per (camera, tile) writes its rows [offsets[t], offsets[t+1]) of isect_grads
// [n_isects, 8 + CH]; then a fixed-order reduction into the outputs (deterministic).
template <int CH, bool ABS>
void bwd_all(const RasterArgs& a, const RasterGrads& g, float* isect_grads) {
  const bool simd = use_simd();
  // rows before the first tile's range (none for well-formed offsets) must not add garbage
  const long long first = std::min<long long>(std::max(0, a.offsets[0]), a.n_isects);
  std::fill(isect_grads, isect_grads + (size_t)first * (8 + CH), 0.f);
  GaussPrep prep;
  prep.compute(a);
  parallel_for((long long)a.C * a.tile_w * a.tile_h, 1, [&](long long b, long long e) {
    TileGauss G;
    for (long long t = b; t < e; ++t) {
#if defined(RG_HAVE_SIMD)
      if (simd) {
        bwd_tile_simd<CH, ABS>(a, g, prep, t, G, isect_grads);
        continue;
      }
#endif
      bwd_tile<CH, ABS>(a, g, prep, t, G, isect_grads);
    }
  });
  reduce_isects<CH, ABS>(a, g, isect_grads);
}

}  // namespace

bool rasterize_uses_simd() { return use_simd(); }

void rasterize_to_pixels_fwd(const RasterArgs& a) {
  check_args(a, "rasterize_to_pixels_fwd");
  if (a.C == 0 || a.width == 0 || a.height == 0) return;
  switch (a.CH) {
    case 1: fwd_all<1>(a); break;
    case 2: fwd_all<2>(a); break;
    case 3: fwd_all<3>(a); break;
    default: fwd_all<4>(a); break;
  }
}

template <int CH>
void bwd_ch(const RasterArgs& a, const RasterGrads& g, float* isect_grads) {
  if (g.v_means2d_abs != nullptr) {
    bwd_all<CH, true>(a, g, isect_grads);
  } else {
    bwd_all<CH, false>(a, g, isect_grads);
  }
}

void rasterize_to_pixels_bwd(const RasterArgs& a, const RasterGrads& g) {
  check_args(a, "rasterize_to_pixels_bwd");
  if (a.C == 0 || a.width == 0 || a.height == 0 || a.n_isects == 0) return;
  float* isect_grads = g.isect_grads;
  std::vector<float> own;  // fallback scratch when the caller passes none
  if (isect_grads == nullptr) {
    own.resize((size_t)a.n_isects * (8 + a.CH));
    isect_grads = own.data();
  }
  switch (a.CH) {
    case 1: bwd_ch<1>(a, g, isect_grads); break;
    case 2: bwd_ch<2>(a, g, isect_grads); break;
    case 3: bwd_ch<3>(a, g, isect_grads); break;
    default: bwd_ch<4>(a, g, isect_grads); break;
  }
}

}  // namespace rg::cpu
