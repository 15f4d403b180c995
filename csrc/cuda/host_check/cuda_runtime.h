// Host-side emulation of the few CUDA features the kernels use, so the REAL kernel code can
// run (slowly) on a CPU for finite-difference and naive-reference checks. Testing only.
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
typedef void* cudaStream_t;
enum cudaError_t { cudaSuccess = 0 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return ""; }
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
template <typename K>
void launch(dim3 grid, dim3 block, size_t shm, K kernel) {
  const int nt = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        bar = std::make_unique<std::barrier<>>(nt);
        wbar.clear();
        for (int w = 0; w < (nt + 31) / 32; ++w) wbar.push_back(std::make_unique<std::barrier<>>(32));
        dyn.assign(shm, 0);
        slots.assign(nt, 0.f);
        std::vector<std::thread> th;
        for (int t = 0; t < nt; ++t)
          th.emplace_back([=] {
            threadIdx = {(unsigned)(t % block.x), (unsigned)(t / block.x), 0};
            blockIdx = {bx, by, bz};
            blockDim = block;
            kernel();
          });
        for (auto& x : th) x.join();
      }
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
namespace rgc { inline float warp_sum(float v) { return warp_reduce_emu(v); } }
inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
