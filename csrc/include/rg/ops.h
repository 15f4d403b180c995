// The argument records of every native op, shared by the CPU and CUDA backends.
//
// Each record is written ONCE, as an X-macro field list: the struct below and its Python binding
// (csrc/bind.h: `py::class_` with one property per field, pointers as integers) are both
// generated from it, so an op's arguments exist in one place. The Python glue
// (rigged_gaussians/_glue.py) fills a record with torch data pointers and sizes and calls
// `_C.<op>_<backend>(record)`.
//
// Every pointer is allocated by the Python glue through torch (float32 unless stated;
// contiguous, row-major): host pointers for the CPU backend, pointers on device `device` for
// CUDA. Shapes: B poses, C cameras (C = B * cams_per_pose for rigged projection), N Gaussians,
// V vertices, F faces, K SH coefficients per channel, M tile intersections.
#pragma once

#include <cstdint>

// X(type, name, default)
// ---- execution context, common to every record (the CPU backend ignores device and stream)
#define RG_EXEC_FIELDS(X)                                                                    \
  X(int, device, -1)               /* CUDA device index of every pointer (-1: the CPU) */     \
  X(std::uintptr_t, stream, 0)     /* torch.cuda.current_stream(device).cuda_stream */        \
  X(int*, errors, nullptr)         /* int32 [kErrorSlots] or null: 1 where a bad index was met */ \
  X(bool, sync_debug, false)       /* CUDA: synchronise after each kernel, name the op on error */

// ---- triangle frames: vertices [B,V,3], faces [F,3] int32 -> centroids [B,F,3],
// rotations [B,F,3,3], sqrt_areas [B,F]; backward: v_* of the outputs (null: zero) -> v_vertices
#define RG_FRAMES_FIELDS(X)                                                                 \
  X(int, B, 0) X(int, V, 0) X(int, F, 0)                                                    \
  X(const float*, vertices, nullptr) X(const int*, faces, nullptr)                          \
  X(float*, centroids, nullptr) X(float*, rotations, nullptr) X(float*, sqrt_areas, nullptr) \
  X(const float*, v_centroids, nullptr) X(const float*, v_rotations, nullptr)                \
  X(const float*, v_sqrt_areas, nullptr) X(float*, v_vertices, nullptr)

// ---- deformation: local means [N,3], quats [N,4], log_scales [N,3], face_ids [N] int32 and
// frames of B poses -> out_means [B,N,3], out_quats [B,N,4], out_scales [B,N,3]; backward:
// v_out_* (null: zero) -> v_means, v_quats, v_log_scales, v_centroids, v_rotations, v_sqrt_areas
#define RG_DEFORM_FIELDS(X)                                                                  \
  X(int, B, 0) X(int, N, 0) X(int, F, 0)                                                     \
  X(const float*, means, nullptr) X(const float*, quats, nullptr)                            \
  X(const float*, log_scales, nullptr) X(const int*, face_ids, nullptr)                      \
  X(const float*, centroids, nullptr) X(const float*, rotations, nullptr)                    \
  X(const float*, sqrt_areas, nullptr)                                                       \
  X(float*, out_means, nullptr) X(float*, out_quats, nullptr) X(float*, out_scales, nullptr) \
  X(const float*, v_out_means, nullptr) X(const float*, v_out_quats, nullptr)                \
  X(const float*, v_out_scales, nullptr)                                                     \
  X(float*, v_means, nullptr) X(float*, v_quats, nullptr) X(float*, v_log_scales, nullptr)   \
  X(float*, v_centroids, nullptr) X(float*, v_rotations, nullptr)                            \
  X(float*, v_sqrt_areas, nullptr)

// ---- projection (plain, or rigged: means/quats/scales are LOCAL [N,·] with log-scales,
// face_ids [N] and frames [B,F,·]; camera c uses pose c / cams_per_pose)
#define RG_PROJ_FIELDS(X)                                                                     \
  X(int, C, 0) X(int, N, 0)                                                                   \
  X(bool, per_camera, false)  /* means/quats/scales are [C,N,·] instead of [N,·] */           \
  X(const float*, means, nullptr) X(const float*, quats, nullptr)                             \
  X(const float*, scales, nullptr)                                                            \
  X(const float*, opacities, nullptr)  /* [N] or [C,N] (opacities_per_camera); null: 3.33 sigma */ \
  X(bool, opacities_per_camera, false)                                                        \
  X(const int*, face_ids, nullptr) X(const float*, centroids, nullptr)                        \
  X(const float*, rotations, nullptr) X(const float*, sqrt_areas, nullptr)                    \
  X(int, F, 0) X(int, cams_per_pose, 1)                                                       \
  X(const float*, viewmats, nullptr)  /* [C,4,4] world->camera */                             \
  X(const float*, Ks, nullptr)        /* [C,3,3] */                                           \
  X(int, width, 0) X(int, height, 0)                                                          \
  X(float, near_plane, 0.01f) X(float, far_plane, 1e10f) X(float, eps2d, 0.3f)                \
  X(float, radius_clip, 0.f)                                                                  \
  X(bool, tight_tiles, true)  /* opacity-aware radii, cull opacity < 1/255 */                 \
  X(int, sh_degree, -1)       /* <0: no SH evaluation */                                      \
  X(int, K, 0)                /* SH coefficients per channel in `sh` (>= (deg+1)^2) */         \
  X(bool, sh_per_camera, false)                                                               \
  X(const float*, sh, nullptr)  /* [N|C*N, K, 3] */                                           \
  X(int*, radii, nullptr)       /* outputs [C,N,2] int32; read by the backward */             \
  X(float*, means2d, nullptr)   /* [C,N,2] */                                                 \
  X(float*, depths, nullptr)    /* [C,N] */                                                   \
  X(float*, conics, nullptr)    /* [C,N,3]; read by the backward */                           \
  X(float*, colors, nullptr)    /* [C,N,3] when sh_degree >= 0 */

// gradients of the projection outputs (v_depths, v_colors may be null) -> zeroed outputs
#define RG_PROJ_GRAD_FIELDS(X)                                                          \
  X(const float*, v_means2d, nullptr) X(const float*, v_depths, nullptr)                \
  X(const float*, v_conics, nullptr) X(const float*, v_colors, nullptr)                 \
  X(float*, v_means, nullptr) X(float*, v_quats, nullptr) X(float*, v_scales, nullptr)  \
  X(float*, v_sh, nullptr) X(float*, v_centroids, nullptr)                              \
  X(float*, v_rotations, nullptr) X(float*, v_sqrt_areas, nullptr)

// ---- tile intersection. Intersections are produced in DEPTH order: `order` [C*N] int32 (or
// null: Gaussian order) lists the (camera, Gaussian) indices by increasing depth bits (ties by
// index); element s of counts/cum is Gaussian order[s]. keys [M] int32 = camera * n_tiles +
// tile; a stable sort of the keys then leaves every tile's list in depth order.
#define RG_ISECT_FIELDS(X)                                                                   \
  X(int, C, 0) X(int, N, 0) X(int, width, 0) X(int, height, 0)                               \
  X(int, tile_size, 16) X(int, tile_w, 0) X(int, tile_h, 0)                                  \
  X(bool, tight_tiles, true)  /* exact ellipse/tile test (needs conics and opacities) */     \
  X(const int*, radii, nullptr) X(const float*, means2d, nullptr)                            \
  X(const float*, depths, nullptr)  /* [C,N] (CPU sort) */                                   \
  X(const float*, conics, nullptr) X(const float*, opacities, nullptr)  /* [C,N] */          \
  X(const int*, order, nullptr)     /* [C*N] depth order, or null */                         \
  X(int*, counts, nullptr)          /* [C*N] tiles per element (in `order`) */               \
  X(const long long*, cum, nullptr) /* [C*N] int64 inclusive cumsum of counts */             \
  X(long long, n_isects, 0)                                                                  \
  X(int*, keys, nullptr) X(int*, ids, nullptr)  /* [M] fill output (ids: c * N + n) */       \
  X(int*, sorted_ids, nullptr)      /* [M] CPU sort output */                                \
  X(const int*, sorted_keys, nullptr)  /* [M] CUDA offset encoding input */                  \
  X(int*, offsets, nullptr)         /* [C,tile_h,tile_w] first intersection of each tile */

// ---- a stable LSD radix sort of (key, value) int32 pairs over key bits [begin_bit, end_bit)
// (CUDA: cub::DeviceRadixSort; keys compare as unsigned). temp: scratch of temp_bytes bytes.
#define RG_SORT_FIELDS(X)                                                                   \
  X(long long, n, 0) X(int, begin_bit, 0) X(int, end_bit, 32)                               \
  X(const int*, keys_in, nullptr) X(int*, keys_out, nullptr)                                \
  X(const int*, values_in, nullptr) X(int*, values_out, nullptr)                            \
  X(void*, temp, nullptr) X(long long, temp_bytes, 0)

// ---- rasterization (one record for the forward and the backward)
#define RG_RASTER_FIELDS(X)                                                                 \
  X(int, C, 0) X(int, N, 0) X(int, CH, 3)  /* CH channels per Gaussian, 1..4 */            \
  X(int, width, 0) X(int, height, 0) X(int, tile_size, 16) X(int, tile_w, 0)                \
  X(int, tile_h, 0) X(long long, n_isects, 0)                                               \
  X(const float*, means2d, nullptr)      /* [C,N,2] */                                      \
  X(const float*, conics, nullptr)       /* [C,N,3] */                                      \
  X(const float*, colors, nullptr)       /* [C,N,CH] */                                     \
  X(const float*, opacities, nullptr)    /* [C,N] */                                        \
  X(const float*, backgrounds, nullptr)  /* [C,CH] or null */                               \
  X(const int*, offsets, nullptr)        /* [C,tile_h,tile_w] */                            \
  X(const int*, flatten_ids, nullptr)    /* [M] */                                          \
  X(float*, render_colors, nullptr)      /* [C,H,W,CH] forward outputs, read by the backward */ \
  X(float*, render_alphas, nullptr)      /* [C,H,W] */                                      \
  X(int*, last_ids, nullptr)             /* [C,H,W] */

// incoming gradients (v_render_alphas may be null) -> zeroed outputs (v_means2d_abs may be null)
#define RG_RASTER_GRAD_FIELDS(X)                                                       \
  X(const float*, v_render_colors, nullptr) X(const float*, v_render_alphas, nullptr)  \
  X(float*, v_means2d, nullptr) X(float*, v_means2d_abs, nullptr)                      \
  X(float*, v_conics, nullptr) X(float*, v_colors, nullptr) X(float*, v_opacities, nullptr)  \
  X(float*, isect_grads, nullptr)  /* CPU: [M, 8 + CH] scratch (null: allocated inside) */

namespace rg {

// Slots of Exec::errors (each set to 1 by a kernel that met an index out of range; the kernel
// never dereferences it: the element's outputs are NaN or culled instead). kErrIsectFill: the
// CUDA fill pass emitted another number of intersections than the count pass counted for some
// element (its unfilled slots are padded with kIsectPadKey / kIsectPadId, which every later pass
// skips); raised by the op itself under sync_debug, since the render's one sync precedes it.
enum ErrorSlot : int { kErrFaces = 0, kErrFaceIds = 1, kErrIsectFill = 2, kErrorSlots = 3 };

// A padded intersection slot: its key sorts after every tile over any low bit range and its id
// is outside [0, C*N), which the rasterizer treats as a transparent Gaussian.
constexpr int kIsectPadKey = 0x7fffffff;
constexpr int kIsectPadId = -1;

#define RG_DECLARE_FIELD(type, name, init) type name = init;

struct Exec {
  RG_EXEC_FIELDS(RG_DECLARE_FIELD)
};
struct FramesArgs : Exec {
  RG_FRAMES_FIELDS(RG_DECLARE_FIELD)
};
struct DeformArgs : Exec {
  RG_DEFORM_FIELDS(RG_DECLARE_FIELD)
};
struct ProjArgs : Exec {
  RG_PROJ_FIELDS(RG_DECLARE_FIELD)
};
struct ProjGrads {
  RG_PROJ_GRAD_FIELDS(RG_DECLARE_FIELD)
};
struct IsectArgs : Exec {
  RG_ISECT_FIELDS(RG_DECLARE_FIELD)
};
struct SortArgs : Exec {
  RG_SORT_FIELDS(RG_DECLARE_FIELD)
};
struct RasterArgs : Exec {
  RG_RASTER_FIELDS(RG_DECLARE_FIELD)
};
struct RasterGrads {
  RG_RASTER_GRAD_FIELDS(RG_DECLARE_FIELD)
};

#undef RG_DECLARE_FIELD

// The ops both backends implement, X(return type, op, parameters, docstring): each backend's
// header declares them in its namespace (rg::cpu, rg::gpu) with its own extras, and its binding
// binds them as _C.<op>_<backend>(record[, grads]).
#define RG_COMMON_OPS(X)                                                                       \
  X(void, triangle_frames_fwd, (const FramesArgs& a),                                          \
    "Triangle frames of vertices [B,V,3] and faces [F,3] int32 (FramesArgs).")                \
  X(void, triangle_frames_bwd, (const FramesArgs& a),                                          \
    "VJP of triangle_frames into zeroed v_vertices; null incoming gradients are zero.")       \
  X(void, deform_fwd, (const DeformArgs& a), "Deform local Gaussians by triangle frames.")     \
  X(void, deform_bwd, (const DeformArgs& a), "VJP of deform into zeroed gradient buffers.")    \
  X(void, projection_fwd, (const ProjArgs& a),                                                 \
    "Project world Gaussians: radii, means2d, depths, conics, SH colours.")                  \
  X(void, projection_rigged_fwd, (const ProjArgs& a),                                          \
    "Fused deformation + projection of local Gaussians bound to triangle frames.")            \
  X(void, projection_bwd, (const ProjArgs& a, const ProjGrads& g),                             \
    "VJP of projection into zeroed buffers.")                                                 \
  X(void, projection_rigged_bwd, (const ProjArgs& a, const ProjGrads& g),                      \
    "VJP of the fused projection into the local parameters and zeroed frame gradients.")      \
  X(void, isect_count, (const IsectArgs& a),                                                   \
    "Tiles of each (camera, Gaussian) -> counts (in `order` when set).")                      \
  X(void, isect_fill, (const IsectArgs& a),                                                    \
    "Keys camera * n_tiles + tile and flatten ids of every intersection at the cum offsets.") \
  X(void, rasterize_to_pixels_fwd, (const RasterArgs& a),                                      \
    "Alpha-blend each tile's sorted Gaussians front to back.")                                \
  X(void, rasterize_to_pixels_bwd, (const RasterArgs& a, const RasterGrads& g),                \
    "VJP of the rasterizer (back to front) into zeroed gradient buffers.")

#define RG_DECLARE_OP(ret, op, params, doc) ret op params;

// The records and their field lists, for the binding generator (csrc/bind.h).
#define RG_RECORDS(X)                                            \
  X(FramesArgs, RG_FRAMES_FIELDS) X(DeformArgs, RG_DEFORM_FIELDS) \
  X(ProjArgs, RG_PROJ_FIELDS) X(IsectArgs, RG_ISECT_FIELDS)       \
  X(SortArgs, RG_SORT_FIELDS) X(RasterArgs, RG_RASTER_FIELDS)
#define RG_GRAD_RECORDS(X) X(ProjGrads, RG_PROJ_GRAD_FIELDS) X(RasterGrads, RG_RASTER_GRAD_FIELDS)

}  // namespace rg
