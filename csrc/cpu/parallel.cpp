// Thread-count setting of the CPU backend (see parallel.h).
#include "parallel.h"

#include <cstdlib>
#include <string>

namespace rg::cpu {
namespace {

int default_threads() {
  if (const char* env = std::getenv("RG_NUM_THREADS")) {
    try {
      const int n = std::stoi(env);
      if (n > 0) return n;
    } catch (...) {
    }
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? (int)hc : 1;
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_threads()};
  return n;
}

}  // namespace

int num_threads() { return thread_setting().load(std::memory_order_relaxed); }

void set_num_threads(int n) { thread_setting().store(n > 0 ? n : default_threads()); }

}  // namespace rg::cpu
