// The rigged_gaussians._C extension: the CPU backend always, the CUDA backend when built with
// CUDA (RG_WITH_CUDA). Links no libtorch: every op takes integer data pointers and sizes.
#include <pybind11/pybind11.h>

#include "rg/isect.h"

#if defined(RG_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace py = pybind11;

void rg_bind_cpu(py::module_& m);
#if defined(RG_WITH_CUDA)
void rg_bind_cuda(py::module_& m);
#endif

namespace {

// Visible CUDA devices; 0 when built without CUDA or when there is no driver/device (never
// raises: cudaGetDeviceCount only reports an error code).
int cuda_device_count() {
#if defined(RG_WITH_CUDA)
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

bool has_cuda() {
#if defined(RG_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "rigged_gaussians native backends (CPU always; CUDA when compiled with it)";
  m.def("has_cuda", &has_cuda, "True when the extension was compiled with the CUDA backend.");
  m.def("cuda_device_count", &cuda_device_count,
        "Number of visible CUDA devices (0 without CUDA support, driver or device).");
  m.def("tile_id_bits", &rg::tile_bits_of, py::arg("tile_w"), py::arg("tile_h"),
        "Bits of the tile id inside the intersection keys (gsplat's rule).");
  rg_bind_cpu(m);
#if defined(RG_WITH_CUDA)
  rg_bind_cuda(m);
#endif
}
