// The GPU's tile intersection through its real launch wrappers (count, fill, radix sort,
// offsets) on the emulated runtime, in depth order as the glue runs it:
//  - without tight tiles: every tile's list == the brute-force gsplat box rule, depth-sorted;
//  - with tight tiles: every list is an in-order subset of that, it keeps every pair the
//    rasterizer's float32 per-pixel test can blend (alpha >= 1/255 at a pixel of the tile),
//    and it drops pairs;
//  - tile sizes 8, 16, 24 and 32, elongated and round conics, and zero intersections.
#define RG_EMULATE 1
#include "cuda_runtime.h"
#include "../isect.cu"
#include <cstdio>
#include <map>
#include <random>
using namespace rg::gpu;
std::mt19937 rng(9);
float rnd(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng); }
int fails = 0;

struct Lists { std::vector<int> offsets, ids; long long n; };

Lists run(rg::IsectArgs a) {
  const long long total = (long long)a.C * a.N;
  // 1. depth order: radix sort of the depth bits (int32 view), values 0..C*N-1
  std::vector<int> dkeys(total), iota(total), dk_out(total), order(total);
  for (long long i = 0; i < total; ++i) { std::memcpy(&dkeys[i], &a.depths[i], 4); iota[i] = (int)i; }
  rg::SortArgs s; s.n = total; s.keys_in = dkeys.data(); s.keys_out = dk_out.data(); s.values_in = iota.data(); s.values_out = order.data();
  std::vector<unsigned char> temp(radix_sort_temp_bytes(s)); s.temp = temp.data(); s.temp_bytes = (long long)temp.size();
  radix_sort(s);
  // 2. counts in depth order, cumsum; 3. fill; 4. sort keys over the bits in use; 5. offsets
  std::vector<int> counts(total); a.order = order.data(); a.counts = counts.data();
  isect_count(a);
  std::vector<long long> cum(total); long long sum = 0; for (long long i = 0; i < total; ++i) cum[i] = sum += counts[i];
  Lists out; out.n = sum;
  std::vector<int> keys(sum), ids(sum), skeys(sum); out.ids.resize(sum);
  a.cum = cum.data(); a.n_isects = sum; a.keys = keys.data(); a.ids = ids.data();
  isect_fill(a);
  const long long n_total = (long long)a.C * a.tile_w * a.tile_h;
  int bits = 0; while ((1ll << bits) < n_total) ++bits;
  rg::SortArgs t; t.n = sum; t.end_bit = bits > 0 ? bits : 1; t.keys_in = keys.data(); t.keys_out = skeys.data(); t.values_in = ids.data(); t.values_out = out.ids.data();
  t.temp = temp.data(); t.temp_bytes = (long long)temp.size();
  radix_sort(t);
  out.offsets.assign(n_total, -7); a.sorted_keys = skeys.data(); a.offsets = out.offsets.data();
  isect_offsets(a);
  return out;
}

std::vector<int> tile_list(const Lists& l, long long t) {
  const int s = l.offsets[t], e = t + 1 < (long long)l.offsets.size() ? l.offsets[t + 1] : (int)l.n;
  return std::vector<int>(l.ids.begin() + s, l.ids.begin() + e);
}

int main() {
  for (int ts : {8, 16, 24, 32})
    for (int trial = 0; trial < 3; ++trial) {
      const int C = 2, N = 60, W = 70, H = 45, TW = (W + ts - 1) / ts, TH = (H + ts - 1) / ts;
      const long long total = (long long)C * N;
      std::vector<int> radii(total * 2); std::vector<float> m2(total * 2), dep(total), con(total * 3), op(total);
      for (long long i = 0; i < total; ++i) {
        // a 2D covariance (elongated for a third), its conic and gsplat's 3.33 sigma radii
        float a = rnd(1, 60), c = rnd(1, 60), r = rnd(-0.98f, 0.98f);
        if (i % 3 == 0) { a = rnd(100, 400); c = rnd(0.5f, 3); }
        const float b = r * std::sqrt(a * c), det = a * c - b * b;
        con[3 * i] = c / det; con[3 * i + 1] = -b / det; con[3 * i + 2] = a / det;
        op[i] = rnd(0.01f, 0.99f);
        const bool vis = rnd(0, 1) < 0.85f && trial != 2;  // trial 2: nothing visible
        radii[2 * i] = vis ? (int)std::ceil(3.33f * std::sqrt(a)) : 0;
        radii[2 * i + 1] = vis ? (int)std::ceil(3.33f * std::sqrt(c)) : 0;
        m2[2 * i] = rnd(-20, W + 20); m2[2 * i + 1] = rnd(-20, H + 20); dep[i] = rnd(0.1f, 10);
      }
      rg::IsectArgs a; a.C = C; a.N = N; a.width = W; a.height = H; a.tile_size = ts; a.tile_w = TW; a.tile_h = TH;
      a.radii = radii.data(); a.means2d = m2.data(); a.depths = dep.data(); a.conics = con.data(); a.opacities = op.data();
      a.tight_tiles = false; const Lists loose = run(a);
      a.tight_tiles = true; const Lists tight = run(a);
      long long dropped = 0, kept_needed = 0;
      for (int cam = 0; cam < C; ++cam)
        for (int t = 0; t < TW * TH; ++t) {
          const int tx = t % TW, ty = t / TW;
          std::vector<std::pair<float, int>> ref;  // brute force: gsplat's box rule, by depth
          for (int k = 0; k < N; ++k) {
            const long long i = (long long)cam * N + k;
            if (radii[2 * i] <= 0 && radii[2 * i + 1] <= 0) continue;
            const rg::TileRect r = rg::tile_rect(m2[2 * i], m2[2 * i + 1], radii[2 * i], radii[2 * i + 1], ts, TW, TH);
            if (tx >= r.x0 && tx < r.x1 && ty >= r.y0 && ty < r.y1) ref.push_back({dep[i], (int)i});
          }
          std::stable_sort(ref.begin(), ref.end(), [](auto& p, auto& q) { return p.first < q.first; });
          const long long tl = (long long)cam * TW * TH + t;
          const std::vector<int> L = tile_list(loose, tl), T = tile_list(tight, tl);
          bool ok = L.size() == ref.size();
          for (size_t k = 0; ok && k < ref.size(); ++k) ok = L[k] == ref[k].second;
          if (!ok) { if (++fails < 5) printf("ts %d: loose list of cam %d tile %d differs from the box rule\n", ts, cam, t); }
          size_t j = 0;  // T must be an in-order subset of L
          for (int g : T) { while (j < L.size() && L[j] != g) ++j; if (j == L.size()) { if (++fails < 5) printf("tight list not a subset\n"); break; } ++j; }
          for (int g : L) {  // every pair some pixel can blend is kept
            bool blends = false;
            for (int y = ty * ts; y < std::min(H, (ty + 1) * ts) && !blends; ++y)
              for (int x = tx * ts; x < std::min(W, (tx + 1) * ts) && !blends; ++x) {
                const float dx = m2[2 * g] - (x + 0.5f), dy = m2[2 * g + 1] - (y + 0.5f);
                const float sg = 0.5f * (con[3 * g] * dx * dx + con[3 * g + 2] * dy * dy) + con[3 * g + 1] * dx * dy;
                const float al = std::min(0.999f, op[g] * expf(-sg));
                blends = !(sg < 0.f || al < rg::kAlphaMin);
              }
            const bool in_t = std::find(T.begin(), T.end(), g) != T.end();
            if (blends) { ++kept_needed; if (!in_t && ++fails < 5) printf("tight test dropped a blending pair (g %d)\n", g); }
            if (!in_t) ++dropped;
          }
        }
      const bool ok_counts = trial == 2 ? (loose.n == 0 && tight.n == 0) : (dropped > 0 && kept_needed > 0);
      if (!ok_counts) ++fails;
      bool zero_offsets = true; if (trial == 2) for (int o : loose.offsets) zero_offsets &= o == 0;
      if (!zero_offsets) ++fails;
      printf("tile %d trial %d: n_isects loose %lld tight %lld (dropped %lld, blending pairs kept %lld) %s\n", ts, trial, loose.n, tight.n, dropped, kept_needed, ok_counts && zero_offsets ? "ok" : "FAIL");
    }
  printf("fails=%d\n", fails);
  return fails;
}
