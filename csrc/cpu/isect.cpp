// Tile intersection on the CPU, with the shared per-element math of rg/isect.h (in Gaussian
// order): the glue counts each Gaussian's tile box (cheap: no exact test), fills every
// Gaussian's tight intersections into its box's slots (the exact test runs once, isect_fill_box
// records how many it wrote), then sorts without a comparison sort of the intersections: each
// camera's visible Gaussians in depth order (an LSD radix sort of their depth bits), and a
// counting sort of the intersections by tile key that visits the Gaussians in that order.
#include <algorithm>
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

void isect_fill_box(const IsectArgs& a) {
  parallel_for((long long)a.C * a.N, kGrain, [&](long long b, long long e) {
    for (long long g = b; g < e; ++g)
      a.counts[g] = isect_fill_range(a, g, g == 0 ? 0 : a.cum[g - 1], a.cum[g]);
  });
}

void isect_sort(const IsectArgs& a) {
  if (a.n_isects > 2147483647ll) {
    throw std::overflow_error("isect_sort: " + std::to_string(a.n_isects) +
                              " tile intersections exceed the int32 range; render fewer "
                              "cameras or Gaussians per call");
  }
  const long long n_tiles = (long long)a.tile_w * a.tile_h, n_total = (long long)a.C * n_tiles;
  // Gaussian g's intersections: counts[g] keys from its slot start (cum: slots per Gaussian)
  auto start = [&](long long g) { return g == 0 ? 0ll : a.cum[g - 1]; };
  // counting pass: intersections per (camera, tile), exclusive scan -> offsets and cursors
  std::vector<int> cursor(n_total + 1, 0);
  for (long long g = 0; g < (long long)a.C * a.N; ++g)
    for (long long e = start(g), end = e + a.counts[g]; e < end; ++e) ++cursor[(long long)a.keys[e] + 1];
  for (long long t = 0; t < n_total; ++t) cursor[t + 1] += cursor[t];
  std::memcpy(a.offsets, cursor.data(), sizeof(int) * n_total);
  // Each camera's visible Gaussians in (depth, index) order (one task per camera) ...
  std::vector<std::vector<int>> order(a.C);
  parallel_for(a.C, 1, [&](long long cb, long long ce) {
    std::vector<unsigned> keys, tk;
    std::vector<int> tv;
    for (long long c = cb; c < ce; ++c) {
      keys.clear();
      std::vector<int>& ids = order[c];
      for (int n = 0; n < a.N; ++n)
        if (a.counts[c * a.N + n] > 0) {
          keys.push_back(depth_key(a.depths[c * a.N + n]));
          ids.push_back(n);
        }
      radix_sort_u32(keys, ids, tk, tv);
    }
  });
  // ... then scattered in that order, so every tile's range comes out sorted by depth. The
  // (camera, tile) keys are split into one contiguous range per task, balanced by intersection
  // count; each task visits every Gaussian in order and writes its range's keys only (each
  // cursor is owned by one task: the result does not depend on the thread count).
  const long long parts = std::max(1ll, std::min<long long>(num_threads(), a.n_isects / 20000 + 1));
  std::vector<long long> bound(parts + 1, n_total);
  for (long long p = 0, t = 0; p < parts; ++p) {
    while (t < n_total && cursor[t] < a.n_isects * p / parts) ++t;
    bound[p] = t;
  }
  parallel_for(parts, 1, [&](long long pb, long long pe) {
    for (long long p = pb; p < pe; ++p) {
      const long long lo = bound[p], hi = bound[p + 1];
      for (long long c = 0; c < a.C; ++c) {
        if ((c + 1) * n_tiles <= lo || c * n_tiles >= hi) continue;  // no key of this camera
        for (const int n : order[c]) {
          const long long g = c * a.N + n;
          for (long long e = start(g), end = e + a.counts[g]; e < end; ++e) {
            const long long k = a.keys[e];
            if (k >= lo && k < hi) a.sorted_ids[cursor[k]++] = a.ids[e];
          }
        }
      }
    }
  });
}

}  // namespace rg::cpu
