// Projection on the CPU (plain and rigged/fused): loops over the shared per-(camera, Gaussian)
// math of rg/projection.h.
#include "ops_cpu.h"
#include "parallel.h"
#include "rg/projection.h"

namespace rg::cpu {

namespace {
constexpr long long kGrain = 1024;
}

void projection_fwd_cpu(const ProjArgs& a, bool rigged) {
  parallel_for((long long)a.C * a.N, kGrain, [&](long long b, long long e) {
    if (rigged) {
      for (long long i = b; i < e; ++i) projection_fwd_one<true>(a, i);
    } else {
      for (long long i = b; i < e; ++i) projection_fwd_one<false>(a, i);
    }
  });
}

void projection_bwd_cpu(const ProjArgs& a, const ProjGrads& g, bool rigged) {
  parallel_for((long long)a.C * a.N, kGrain, [&](long long b, long long e) {
    if (rigged) {
      for (long long i = b; i < e; ++i) projection_bwd_one<true>(a, g, i);
    } else {
      for (long long i = b; i < e; ++i) projection_bwd_one<false>(a, g, i);
    }
  });
}

}  // namespace rg::cpu
