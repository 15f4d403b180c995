// The thread-count setting and the persistent worker pool of the CPU backend (see parallel.h).
#include "parallel.h"

#include <pthread.h>

#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

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

thread_local bool t_in_pool_task = false;

// Workers sleep on a condition variable; each call bumps `generation` and wakes them. The pool
// is leaked at exit (workers may still sleep on it) and replaced in a forked child (the
// parent's workers do not exist there).
class Pool {
 public:
  bool run(int threads, const std::function<void()>& task) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    resize(threads - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      task_ = &task;
      pending_ = (int)workers_.size();
      ++generation_;
    }
    work_.notify_all();
    t_in_pool_task = true;
    task();
    t_in_pool_task = false;
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return pending_ == 0; });
    task_ = nullptr;
    return true;
  }

 private:
  void resize(int n) {
    if ((int)workers_.size() == n) return;
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    work_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    // a worker starts from the generation current now, so the next run() wakes it even when
    // it bumps the generation before the thread is scheduled
    for (int i = 0; i < n; ++i) workers_.emplace_back([this, g = generation_] { loop(g); });
  }

  void loop(std::uint64_t seen) {
    t_in_pool_task = true;
    for (;;) {
      const std::function<void()>* task;
      {
        std::unique_lock<std::mutex> lk(m_);
        work_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        task = task_;
      }
      (*task)();
      std::lock_guard<std::mutex> lk(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex busy_, m_;
  std::condition_variable work_, done_;
  std::vector<std::thread> workers_;
  const std::function<void()>* task_ = nullptr;
  std::uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

Pool* g_pool = nullptr;
std::once_flag g_atfork;

Pool& pool() {
  std::call_once(g_atfork, [] {
    pthread_atfork(nullptr, nullptr, [] { g_pool = nullptr; });  // child: a fresh pool
  });
  if (g_pool == nullptr) g_pool = new Pool();  // leaked on purpose (see Pool)
  return *g_pool;
}

}  // namespace

int num_threads() { return thread_setting().load(std::memory_order_relaxed); }

void set_num_threads(int n) { thread_setting().store(n > 0 ? n : default_threads()); }

bool pool_run(int threads, const std::function<void()>& task) {
  if (t_in_pool_task) return false;
  return pool().run(threads, task);
}

}  // namespace rg::cpu
