// A small parallel_for for the CPU backend: std::thread workers pulling fixed-size chunks of
// an index range from an atomic counter (dynamic scheduling: tiles and Gaussians have uneven
// cost). The thread count is set_num_threads(n) when called (the Python glue passes
// torch.get_num_threads()), else the RG_NUM_THREADS environment variable, else
// std::thread::hardware_concurrency().
//
// Determinism: a parallel_for body must not accumulate into memory that another chunk also
// writes (the order of the additions would follow the scheduling). Backward kernels whose
// elements share an output write per-element rows instead and reduce them with
// ordered_scatter_add, whose result does not depend on the thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace rg::cpu {

int num_threads();
void set_num_threads(int n);

// Calls fn(begin, end) on disjoint chunks of [0, n) of at most `grain` indices, on up to
// num_threads() threads (the caller's thread included). The first exception is rethrown.
template <typename Fn>
void parallel_for(long long n, long long grain, Fn&& fn) {
  if (n <= 0) return;
  grain = std::max(1ll, grain);
  const long long chunks = (n + grain - 1) / grain;
  const int nt = (int)std::min<long long>(num_threads(), chunks);
  if (nt <= 1) {
    fn(0ll, n);
    return;
  }
  std::atomic<long long> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&]() {
    try {
      for (;;) {
        const long long c = next.fetch_add(1, std::memory_order_relaxed);
        if (c >= chunks) break;
        const long long b = c * grain;
        fn(b, std::min(n, b + grain));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(chunks);
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(nt - 1);
  for (int t = 0; t < nt - 1; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

// For r = 0, 1, ..., rows - 1 in this order, calls add(r, target(r)) with target(r) in
// [0, n_targets) (or < 0: skipped): each target's additions happen in increasing r, on one
// thread, whatever the thread count, so float sums are bit-identical run to run. The targets
// are split into one contiguous range per thread; every thread scans all rows and handles the
// rows of its range (target() is called up to num_threads() times per row: keep it cheap).
template <typename Target, typename Add>
void ordered_scatter_add(long long rows, long long n_targets, Target&& target, Add&& add) {
  if (rows <= 0 || n_targets <= 0) return;
  const long long parts = std::max(1ll, std::min<long long>(num_threads(), rows / 4096 + 1));
  parallel_for(parts, 1, [&](long long pb, long long pe) {
    const long long lo = n_targets * pb / parts, hi = n_targets * pe / parts;
    for (long long r = 0; r < rows; ++r) {
      const long long t = target(r);
      if (t >= lo && t < hi) add(r, t);
    }
  });
}

}  // namespace rg::cpu
