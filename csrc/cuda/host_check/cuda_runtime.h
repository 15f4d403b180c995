// Host-side emulation of the few CUDA features the kernels and their launch wrappers use, so
// the REAL kernel code, launch geometry and shared-memory sizes can run (slowly) on a CPU for
// finite-difference and naive-reference checks: threads, blocks, shared memory, warp
// reductions, the current device (cudaGetDevice/cudaSetDevice, recorded at each launch),
// cudaStreamSynchronize (an error can be injected: emu::sync_error), cudaMemcpy and
// cub::DeviceRadixSort::SortPairs (a stable sort over the same key bits). Dynamic shared memory
// starts every block filled with garbage, as real shared memory holds whatever was there, so a
// kernel reading it before writing fails the checks: 0x3F bytes in even blocks (plausible floats
// 0.747 and ids ~1e9: a stale Gaussian blends and its colour read crashes), 0xFF in odd ones
// (NaN floats, -1 ids: NaN reaches the outputs); RG_SHARED_FILL=<byte> fixes one. Testing only.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
typedef void* cudaStream_t;
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalAddress = 700,
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaErrorIllegalAddress ? "an illegal memory access was encountered (emulated)"
                                      : "emulated error";
}
namespace emu {
inline thread_local int current_device = 0;
inline int device_count = 4;        // emulated GPUs
inline int last_launch_device = -1;  // the current device at the last launch
inline int set_device_calls = 0;
inline cudaError_t sync_error = cudaSuccess;  // returned (once) by the next stream sync
inline int syncs = 0;                         // cudaStreamSynchronize calls
#ifndef RG_SHARED_FILL
#define RG_SHARED_FILL -1  // alternate 0x3F / 0xFF per block
#endif
inline int shared_fill = RG_SHARED_FILL;  // the byte of every block's dynamic shared memory
inline int max_block_threads = 0;             // the largest block launched
}  // namespace emu
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  ++emu::syncs;
  const cudaError_t e = emu::sync_error;
  emu::sync_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = emu::current_device;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= emu::device_count) return cudaErrorInvalidDevice;
  ++emu::set_device_calls;
  emu::current_device = d;
  return cudaSuccess;
}
struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim;
using std::max;
using std::min;
namespace emu {
inline std::unique_ptr<std::barrier<>> bar;
inline std::vector<std::unique_ptr<std::barrier<>>> wbar;
inline std::vector<unsigned char> dyn;
inline std::atomic<int> cnt{0};
inline std::vector<float> slots;
inline int tid() { return threadIdx.y * blockDim.x + threadIdx.x; }
// Kernels without block-level synchronisation or warp operations (launch_1d's per-element
// kernels): the threads run one after another on the calling thread.
template <typename K>
void launch_serial(dim3 grid, dim3 block, K kernel) {
  last_launch_device = current_device;
  blockDim = block;
  for (unsigned bx = 0; bx < grid.x; ++bx)
    for (unsigned t = 0; t < block.x; ++t) {
      blockIdx = {bx, 0, 0};
      threadIdx = {t, 0, 0};
      kernel();
    }
}

// One std::thread per thread of a block; the same threads run every block of the grid in turn
// (a block barrier between blocks resets the shared memory), so a launch starts block-size
// threads, not grid-size.
template <typename K>
void launch(dim3 grid, dim3 block, size_t shm, K kernel) {
  last_launch_device = current_device;
  const int nt = block.x * block.y * block.z;
  max_block_threads = std::max(max_block_threads, nt);
  bar = std::make_unique<std::barrier<>>(nt);
  wbar.clear();
  for (int w = 0; w < (nt + 31) / 32; ++w) wbar.push_back(std::make_unique<std::barrier<>>(32));
  std::barrier<> between(nt);
  std::vector<std::thread> th;
  for (int t = 0; t < nt; ++t)
    th.emplace_back([&, t] {
      threadIdx = {(unsigned)(t % block.x), (unsigned)(t / block.x), 0};
      blockDim = block;
      for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
          for (unsigned bx = 0; bx < grid.x; ++bx) {
            between.arrive_and_wait();  // every thread is done with the previous block
            if (t == 0) {
              const long long b = ((long long)bz * grid.y + by) * grid.x + bx;
              dyn.assign(shm, (unsigned char)(shared_fill >= 0 ? shared_fill : (b % 2 ? 0xFF : 0x3F)));
              slots.assign(nt, 0.f);
              cnt = 0;
            }
            between.arrive_and_wait();
            blockIdx = {bx, by, bz};
            kernel();
          }
    });
  for (auto& x : th) x.join();
}
}  // namespace emu
inline void __syncthreads() { emu::bar->arrive_and_wait(); }
inline int __syncthreads_count(int p) {
  emu::bar->arrive_and_wait();
  if (p) emu::cnt++;
  emu::bar->arrive_and_wait();
  const int r = emu::cnt.load();
  emu::bar->arrive_and_wait();
  if (emu::tid() == 0) emu::cnt = 0;
  emu::bar->arrive_and_wait();
  return r;
}
inline float warp_reduce_emu(float v) {
  const int t = emu::tid(), w = t / 32;
  auto& b = *emu::wbar[w];
  emu::slots[t] = v;
  b.arrive_and_wait();
  float s = 0.f;
  for (int i = 0; i < 32; ++i) s += emu::slots[w * 32 + i];
  b.arrive_and_wait();
  return s;
}
inline bool __any_sync(unsigned, bool p) { return warp_reduce_emu(p ? 1.f : 0.f) > 0.f; }
inline float __expf(float x) { return expf(x); }
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline int atomicMax(int* p, int v) {
  std::atomic_ref<int> a(*p);
  int old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {}
  return old;
}
#define RG_DYN_SHARED(type, name) type* name = reinterpret_cast<type*>(emu::dyn.data())
#define RG_SHARED(type, name) static type name
namespace rg::gpu { inline float warp_sum(float v) { return warp_reduce_emu(v); } }
inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }

// cub::DeviceRadixSort::SortPairs: with temp == nullptr, report a scratch size; else a stable
// sort of the pairs by key bits [begin_bit, end_bit) (keys unsigned, as the real one).
namespace cub {
struct DeviceRadixSort {
  template <typename K, typename V>
  static cudaError_t SortPairs(void* temp, size_t& bytes, const K* keys_in, K* keys_out,
                               const V* values_in, V* values_out, int n, int begin_bit,
                               int end_bit, cudaStream_t = nullptr) {
    if (temp == nullptr) {
      bytes = 64;
      return cudaSuccess;
    }
    const unsigned long long mask =
        end_bit - begin_bit >= 64 ? ~0ull : ((1ull << (end_bit - begin_bit)) - 1ull);
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    auto digit = [&](int i) { return ((unsigned long long)keys_in[i] >> begin_bit) & mask; };
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return digit(a) < digit(b); });
    std::vector<K> k(n);
    std::vector<V> v(n);
    for (int i = 0; i < n; ++i) {
      k[i] = keys_in[order[i]];
      v[i] = values_in[order[i]];
    }
    std::copy(k.begin(), k.end(), keys_out);
    std::copy(v.begin(), v.end(), values_out);
    return cudaSuccess;
  }
};
}  // namespace cub
