// pybind11 registration of the CPU backend: one line for every op of RG_CPU_OPS (ops_cpu.h), each
// taking the argument records of rg/ops.h (bound by csrc/bind.h). The CPU backend runs
// synchronously on its own thread pool; the records' device and stream are ignored.
#include <pybind11/pybind11.h>

#include "ops_cpu.h"
#include "parallel.h"

namespace py = pybind11;

void rg_bind_cpu(py::module_& m) {
#define RG_DEF_CPU(ret, op, params, doc) m.def(#op "_cpu", &rg::cpu::op, doc);
  RG_CPU_OPS(RG_DEF_CPU)
#undef RG_DEF_CPU
  m.def("set_num_threads", &rg::cpu::set_num_threads, py::arg("n"),
        "Threads of the CPU backend (n <= 0: RG_NUM_THREADS or the hardware concurrency).");
  m.def("get_num_threads", &rg::cpu::num_threads, "Threads the CPU backend uses.");
  m.def("rasterize_uses_simd", &rg::cpu::rasterize_uses_simd,
        "True when the CPU rasterizer uses its AVX2 kernels (RG_RASTER_SIMD=0 forces scalar).");
}
