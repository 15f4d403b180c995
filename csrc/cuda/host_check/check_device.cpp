// DeviceGuard and guarded(): the binding's device handling, on the emulated runtime. An op whose
// record names device d launches on d whatever the current device, and the current device is
// restored afterwards; device -1 (CPU records) and the current device cost no cudaSetDevice.
#define RG_EMULATE 1
#include "cuda_runtime.h"
#include "../frames_deform.cu"
#include <cstdio>
#include <vector>
using namespace rg::gpu;
int fails = 0;
void expect(bool ok, const char* what) { if (!ok) { ++fails; printf("FAIL %s\n", what); } }
int main() {
  emu::current_device = 1;
  {
    const DeviceGuard g(3);
    expect(emu::current_device == 3, "guard makes its device current");
  }
  expect(emu::current_device == 1, "guard restores the previous device");
  const int calls = emu::set_device_calls;
  { const DeviceGuard g(-1); const DeviceGuard h(1); }
  expect(emu::set_device_calls == calls, "no cudaSetDevice for device -1 or the current device");
  bool threw = false;
  try { const DeviceGuard g(9); } catch (const std::runtime_error&) { threw = true; }
  expect(threw && emu::current_device == 1, "an invalid device raises and changes nothing");
  // a real op through guarded(), as bind_cuda.cpp binds it
  std::vector<float> verts = {0, 0, 0, 1, 0, 0, 0, 1, 0}, cent(3), rot(9), sa(1);
  std::vector<int> faces = {0, 1, 2};
  rg::FramesArgs a;
  a.device = 2; a.B = 1; a.V = 3; a.F = 1;
  a.vertices = verts.data(); a.faces = faces.data();
  a.centroids = cent.data(); a.rotations = rot.data(); a.sqrt_areas = sa.data();
  guarded(&triangle_frames_fwd)(a);
  expect(emu::last_launch_device == 2, "the kernel launched on the record's device");
  expect(emu::current_device == 1, "the current device is restored after the op");
  expect(std::fabs(sa[0] - std::sqrt(0.5f)) < 1e-6f, "the op ran");
  printf("device guard: fails=%d\n", fails);
  return fails;
}
