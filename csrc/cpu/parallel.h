// A small parallel_for for the CPU backend: a persistent pool of std::thread workers pulling
// fixed-size chunks of an index range from an atomic counter (dynamic scheduling: tiles and
// Gaussians have uneven cost). The workers are started once and sleep between calls, so a call
// costs a wake-up, not a thread start. The thread count is set_num_threads(n) when called (the
// Python glue passes torch.get_num_threads()), else the RG_NUM_THREADS environment variable,
// else std::thread::hardware_concurrency(). A parallel_for called from inside another one, or
// while another thread's call holds the pool, runs on the calling thread alone.
//
// Determinism: a parallel_for body must not accumulate into memory that another chunk also
// writes (the order of the additions would follow the scheduling). Backward kernels whose
// elements share an output write per-element rows instead and reduce them with
// ordered_scatter_add, whose result does not depend on the thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <functional>
#include <mutex>

namespace rg::cpu {

int num_threads();
void set_num_threads(int n);

// Runs task() on `threads - 1` pool workers and on the calling thread, and returns when every
// call has returned. Returns false (running nothing) when the pool is busy or this is a worker.
bool pool_run(int threads, const std::function<void()>& task);

// Calls fn(begin, end) on disjoint chunks of [0, n) of at most `grain` indices, on up to
// num_threads() threads (the caller's thread included). The first exception is rethrown.
template <typename Fn>
void parallel_for(long long n, long long grain, Fn&& fn) {
  if (n <= 0) return;
  grain = std::max(1ll, grain);
  const long long chunks = (n + grain - 1) / grain;
  const int nt = (int)std::min<long long>(num_threads(), chunks);
  if (nt > 1) {
    std::atomic<long long> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    const std::function<void()> task = [&]() {
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
    if (pool_run(nt, task)) {
      if (error) std::rethrow_exception(error);
      return;
    }
  }
  fn(0ll, n);
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
