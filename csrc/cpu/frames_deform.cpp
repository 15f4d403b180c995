// Triangle frames and the (unfused) deformation on the CPU: loops over the shared per-element
// math of rg/frames.h.
#include "ops_cpu.h"
#include "parallel.h"
#include "rg/frames.h"

namespace rg::cpu {

namespace {
constexpr long long kGrain = 2048;
}

void triangle_frames_fwd_cpu(const float* vertices, const int* faces, int B, int V, int F,
                             float* centroids, float* rotations, float* sqrt_areas) {
  parallel_for((long long)B * F, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      frames_fwd_one(vertices, faces, V, F, i, centroids, rotations, sqrt_areas);
  });
}

void triangle_frames_bwd_cpu(const float* vertices, const int* faces, int B, int V, int F,
                             const float* v_centroids, const float* v_rotations,
                             const float* v_sqrt_areas, float* v_vertices) {
  parallel_for((long long)B * F, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      frames_bwd_one(vertices, faces, V, F, i, v_centroids, v_rotations, v_sqrt_areas,
                     v_vertices);
  });
}

void deform_fwd_cpu(const float* means, const float* quats, const float* log_scales,
                    const int* face_ids, const float* centroids, const float* rotations,
                    const float* sqrt_areas, int B, int N, int F, float* out_means,
                    float* out_quats, float* out_scales) {
  parallel_for((long long)B * N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      deform_fwd_one(means, quats, log_scales, face_ids, centroids, rotations, sqrt_areas, N, F,
                     i, out_means, out_quats, out_scales);
  });
}

void deform_bwd_cpu(const float* means, const float* quats, const float* log_scales,
                    const int* face_ids, const float* centroids, const float* rotations,
                    const float* sqrt_areas, int B, int N, int F, const float* v_out_means,
                    const float* v_out_quats, const float* v_out_scales, float* v_means,
                    float* v_quats, float* v_log_scales, float* v_centroids, float* v_rotations,
                    float* v_sqrt_areas) {
  parallel_for((long long)B * N, kGrain, [&](long long b, long long e) {
    for (long long i = b; i < e; ++i)
      deform_bwd_one(means, quats, log_scales, face_ids, centroids, rotations, sqrt_areas, N, F,
                     i, v_out_means, v_out_quats, v_out_scales, v_means, v_quats, v_log_scales,
                     v_centroids, v_rotations, v_sqrt_areas);
  });
}

}  // namespace rg::cpu
