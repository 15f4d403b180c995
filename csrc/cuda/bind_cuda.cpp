// pybind11 registration of the CUDA backend: one line per op of RG_CUDA_OPS (ops_cuda.h), each
// taking the argument records of rg/ops.h (bound by csrc/bind.h) and run under a DeviceGuard of
// the record's device, so kernels launch on the GPU that holds the tensors whatever the current
// device is. Compiled in CUDA builds and by csrc/cuda/compile_check.sh (CI, no GPU).
#include <pybind11/pybind11.h>

#include "device.h"
#include "ops_cuda.h"

namespace py = pybind11;

void rg_bind_cuda(py::module_& m) {
#define RG_DEF_CUDA(ret, op, params, doc) m.def(#op "_cuda", rg::gpu::guarded(&rg::gpu::op), doc);
  RG_CUDA_OPS(RG_DEF_CUDA)
#undef RG_DEF_CUDA
}
