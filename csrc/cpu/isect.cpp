// Tile intersection on the CPU: count and fill with the shared per-element math of rg/isect.h
// (in Gaussian order), then a sort without a comparison sort of the intersections: each
// camera's visible Gaussians in depth order (an LSD radix sort of their depth bits), and a
// counting sort of the intersections by tile key that visits the Gaussians in that order.
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ops_cpu.h"
#include "parallel.h"
#include "rg/isect.h"

namespace rg::cpu {

namespace {
constexpr long long kGrain = 2048;

// Stable LSD radix sort of (key, value) pairs by the key's 32 bits, 8 bits per pass (passes
// whose byte is the same for every key are skipped). tk, tv: scratch.
void radix_sort_u32(std::vector<unsigned>& keys, std::vector<int>& vals, std::vector<unsigned>& tk,
                    std::vector<int>& tv) {
  const size_t n = keys.size();
  tk.resize(n);
  tv.resize(n);
  for (int shift = 0; shift < 32; shift += 8) {
    size_t count[257] = {0};
    for (size_t i = 0; i < n; ++i) ++count[((keys[i] >> shift) & 0xffu) + 1];
    if (n == 0 || count[((keys[0] >> shift) & 0xffu) + 1] == n) continue;  // one bucket
    for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
    for (size_t i = 0; i < n; ++i) {
      const size_t dst = count[(keys[i] >> shift) & 0xffu]++;
      tk[dst] = keys[i];
      tv[dst] = vals[i];
    }
    keys.swap(tk);
    vals.swap(tv);
  }
}

unsigned depth_key(float d) {
  unsigned u;
  std::memcpy(&u, &d, sizeof(u));
  return u;  // depth > near > 0 for visible Gaussians: the bits are monotone in the value
}
}  // namespace

void isect_count(const IsectArgs& a) {
  IsectArgs g = a;
  g.order = nullptr;
  parallel_for((long long)a.C * a.N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i) a.counts[i] = isect_count_one(g, i);
  });
}

void isect_fill(const IsectArgs& a) {
  IsectArgs g = a;
  g.order = nullptr;
  parallel_for((long long)a.C * a.N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i) isect_fill_one(g, i);
  });
}

void isect_sort(const IsectArgs& a) {
  if (a.n_isects > 2147483647ll) {
    throw std::overflow_error("isect_sort: " + std::to_string(a.n_isects) +
                              " tile intersections exceed the int32 range; render fewer "
                              "cameras or Gaussians per call");
  }
  const long long n_tiles = (long long)a.tile_w * a.tile_h, n_total = (long long)a.C * n_tiles;
  // counting pass: intersections per (camera, tile), exclusive scan -> offsets and cursors
  std::vector<int> cursor(n_total + 1, 0);
  for (long long i = 0; i < a.n_isects; ++i) ++cursor[(long long)a.keys[i] + 1];
  for (long long t = 0; t < n_total; ++t) cursor[t + 1] += cursor[t];
  std::memcpy(a.offsets, cursor.data(), sizeof(int) * n_total);
  // Scatter each camera's Gaussians in (depth, index) order: every tile's range is then sorted
  // by depth. Cameras own disjoint tiles (and cursors): one task per camera.
  parallel_for(a.C, 1, [&](long long cb, long long ce) {
    std::vector<unsigned> keys, tk;
    std::vector<int> ids, tv;
    for (long long c = cb; c < ce; ++c) {
      keys.clear();
      ids.clear();
      for (int n = 0; n < a.N; ++n) {
        const long long g = c * a.N + n;
        if (a.cum[g] > (g == 0 ? 0 : a.cum[g - 1])) {
          keys.push_back(depth_key(a.depths[g]));
          ids.push_back(n);
        }
      }
      radix_sort_u32(keys, ids, tk, tv);
      for (const int n : ids) {
        const long long g = c * a.N + n;
        for (long long e = g == 0 ? 0 : a.cum[g - 1]; e < a.cum[g]; ++e)
          a.sorted_ids[cursor[a.keys[e]]++] = a.ids[e];
      }
    }
  });
}

}  // namespace rg::cpu
