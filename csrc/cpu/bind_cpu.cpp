// pybind11 registration of the CPU backend: only a list of m.def calls, with the same keyword
// signatures as the CUDA ones (bind_cuda.cpp) so one Python glue drives both. Every pointer
// argument is an integer (torch `tensor.data_ptr()`); the trailing `stream` is accepted and
// ignored (the CPU backend runs synchronously on its own thread pool).
#include <pybind11/pybind11.h>

#include <cstdint>

#include "rg/bind_args.h"
#include "ops_cpu.h"
#include "parallel.h"

using namespace rg::bind;  // P<T>(ptr), proj_args, raster_args, PROJ_ARGS, RASTER_ARGS; py, u

void rg_bind_cpu(py::module_& m) {
  m.def(
      "triangle_frames_fwd_cpu",
      [](u vertices, u faces, int B, int V, int F, u centroids, u rotations, u sqrt_areas,
         u /*stream*/) {
        rg::cpu::triangle_frames_fwd_cpu(P<const float>(vertices), P<const int>(faces), B, V, F,
                                      P<float>(centroids), P<float>(rotations),
                                      P<float>(sqrt_areas));
      },
      py::arg("vertices"), py::arg("faces"), py::arg("B"), py::arg("V"), py::arg("F"),
      py::arg("centroids"), py::arg("rotations"), py::arg("sqrt_areas"), py::arg("stream") = 0,
      "Triangle frames of [B,V,3] vertices and [F,3] int32 faces (outputs preallocated).");

  m.def(
      "triangle_frames_bwd_cpu",
      [](u vertices, u faces, int B, int V, int F, u v_centroids, u v_rotations,
         u v_sqrt_areas, u v_vertices, u /*stream*/) {
        rg::cpu::triangle_frames_bwd_cpu(P<const float>(vertices), P<const int>(faces), B, V, F,
                                      P<const float>(v_centroids), P<const float>(v_rotations),
                                      P<const float>(v_sqrt_areas), P<float>(v_vertices));
      },
      py::arg("vertices"), py::arg("faces"), py::arg("B"), py::arg("V"), py::arg("F"),
      py::arg("v_centroids"), py::arg("v_rotations"), py::arg("v_sqrt_areas"),
      py::arg("v_vertices"), py::arg("stream") = 0,
      "VJP of triangle_frames into zeroed v_vertices [B,V,3]; null (0) gradients are skipped.");

  m.def(
      "deform_fwd_cpu",
      [](u means, u quats, u log_scales, u face_ids, u centroids, u rotations, u sqrt_areas,
         int B, int N, int F, u out_means, u out_quats, u out_scales, u /*stream*/) {
        rg::cpu::deform_fwd_cpu(P<const float>(means), P<const float>(quats),
                             P<const float>(log_scales), P<const int>(face_ids),
                             P<const float>(centroids), P<const float>(rotations),
                             P<const float>(sqrt_areas), B, N, F, P<float>(out_means),
                             P<float>(out_quats), P<float>(out_scales));
      },
      py::arg("means"), py::arg("quats"), py::arg("log_scales"), py::arg("face_ids"),
      py::arg("centroids"), py::arg("rotations"), py::arg("sqrt_areas"), py::arg("B"),
      py::arg("N"), py::arg("F"), py::arg("out_means"), py::arg("out_quats"),
      py::arg("out_scales"), py::arg("stream") = 0, "Deform local Gaussians by triangle frames.");

  m.def(
      "deform_bwd_cpu",
      [](u means, u quats, u log_scales, u face_ids, u centroids, u rotations, u sqrt_areas,
         int B, int N, int F, u v_out_means, u v_out_quats, u v_out_scales, u v_means,
         u v_quats, u v_log_scales, u v_centroids, u v_rotations, u v_sqrt_areas, u /*stream*/) {
        rg::cpu::deform_bwd_cpu(P<const float>(means), P<const float>(quats),
                             P<const float>(log_scales), P<const int>(face_ids),
                             P<const float>(centroids), P<const float>(rotations),
                             P<const float>(sqrt_areas), B, N, F, P<const float>(v_out_means),
                             P<const float>(v_out_quats), P<const float>(v_out_scales),
                             P<float>(v_means), P<float>(v_quats), P<float>(v_log_scales),
                             P<float>(v_centroids), P<float>(v_rotations),
                             P<float>(v_sqrt_areas));
      },
      py::arg("means"), py::arg("quats"), py::arg("log_scales"), py::arg("face_ids"),
      py::arg("centroids"), py::arg("rotations"), py::arg("sqrt_areas"), py::arg("B"),
      py::arg("N"), py::arg("F"), py::arg("v_out_means"), py::arg("v_out_quats"),
      py::arg("v_out_scales"), py::arg("v_means"), py::arg("v_quats"), py::arg("v_log_scales"),
      py::arg("v_centroids"), py::arg("v_rotations"), py::arg("v_sqrt_areas"),
      py::arg("stream") = 0, "VJP of deform into zeroed gradient buffers.");

  auto proj_fwd = [](bool rigged) {
    return [rigged](int C, int N, bool per_camera, u means, u quats, u scales, u face_ids,
                    u centroids, u rotations, u sqrt_areas, int F, int cams_per_pose,
                    u viewmats, u Ks, int width, int height, float near_plane, float far_plane,
                    float eps2d, float radius_clip, int sh_degree, int K, bool sh_per_camera,
                    u sh, u radii, u means2d, u depths, u conics, u colors, u /*stream*/) {
      const rg::ProjArgs a = proj_args(
          C, N, per_camera, means, quats, scales, face_ids, centroids, rotations, sqrt_areas, F,
          cams_per_pose, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radius_clip,
          sh_degree, K, sh_per_camera, sh, radii, means2d, depths, conics, colors);
      rg::cpu::projection_fwd_cpu(a, rigged);
    };
  };
  m.def("projection_fwd_cpu", proj_fwd(false), PROJ_ARGS, py::arg("stream") = 0,
        "Project world Gaussians (radii, means2d, depths, conics, SH colours).");
  m.def("projection_rigged_fwd_cpu", proj_fwd(true), PROJ_ARGS, py::arg("stream") = 0,
        "Fused deformation + projection of local Gaussians bound to triangle frames.");

  auto proj_bwd = [](bool rigged) {
    return [rigged](int C, int N, bool per_camera, u means, u quats, u scales, u face_ids,
                    u centroids, u rotations, u sqrt_areas, int F, int cams_per_pose,
                    u viewmats, u Ks, int width, int height, float near_plane, float far_plane,
                    float eps2d, float radius_clip, int sh_degree, int K, bool sh_per_camera,
                    u sh, u radii, u means2d, u depths, u conics, u colors, u v_means2d,
                    u v_depths, u v_conics, u v_colors, u v_means, u v_quats, u v_scales,
                    u v_sh, u v_centroids, u v_rotations, u v_sqrt_areas, u /*stream*/) {
      const rg::ProjArgs a = proj_args(
          C, N, per_camera, means, quats, scales, face_ids, centroids, rotations, sqrt_areas, F,
          cams_per_pose, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radius_clip,
          sh_degree, K, sh_per_camera, sh, radii, means2d, depths, conics, colors);
      rg::ProjGrads g;
      g.v_means2d = P<const float>(v_means2d);
      g.v_depths = P<const float>(v_depths);
      g.v_conics = P<const float>(v_conics);
      g.v_colors = P<const float>(v_colors);
      g.v_means = P<float>(v_means);
      g.v_quats = P<float>(v_quats);
      g.v_scales = P<float>(v_scales);
      g.v_sh = P<float>(v_sh);
      g.v_centroids = P<float>(v_centroids);
      g.v_rotations = P<float>(v_rotations);
      g.v_sqrt_areas = P<float>(v_sqrt_areas);
      rg::cpu::projection_bwd_cpu(a, g, rigged);
    };
  };
#define PROJ_GRADS                                                                         \
  py::arg("v_means2d"), py::arg("v_depths"), py::arg("v_conics"), py::arg("v_colors"),     \
      py::arg("v_means"), py::arg("v_quats"), py::arg("v_scales"), py::arg("v_sh"),        \
      py::arg("v_centroids"), py::arg("v_rotations"), py::arg("v_sqrt_areas"),             \
      py::arg("stream") = 0
  m.def("projection_bwd_cpu", proj_bwd(false), PROJ_ARGS, PROJ_GRADS,
        "VJP of projection into zeroed v_means/v_quats/v_scales/v_sh.");
  m.def("projection_rigged_bwd_cpu", proj_bwd(true), PROJ_ARGS, PROJ_GRADS,
        "VJP of the fused projection into local parameters and zeroed frame gradients.");

  m.def(
      "isect_count_cpu",
      [](u radii, u means2d, int C, int N, int tile_size, int tile_w, int tile_h,
         u tiles_per_gauss, u /*stream*/) {
        rg::cpu::isect_count_cpu(P<const int>(radii), P<const float>(means2d), C, N, tile_size,
                              tile_w, tile_h, P<int>(tiles_per_gauss));
      },
      py::arg("radii"), py::arg("means2d"), py::arg("C"), py::arg("N"), py::arg("tile_size"),
      py::arg("tile_w"), py::arg("tile_h"), py::arg("tiles_per_gauss"), py::arg("stream") = 0,
      "Tiles touched by each (camera, Gaussian) -> int32 [C,N].");
  m.def(
      "isect_fill_cpu",
      [](u radii, u means2d, u depths, u cum_tiles, int C, int N, int tile_size, int tile_w,
         int tile_h, u keys, u flatten_ids, u /*stream*/) {
        rg::cpu::isect_fill_cpu(P<const int>(radii), P<const float>(means2d),
                             P<const float>(depths), P<const long long>(cum_tiles), C, N,
                             tile_size, tile_w, tile_h, P<long long>(keys),
                             P<int>(flatten_ids));
      },
      py::arg("radii"), py::arg("means2d"), py::arg("depths"), py::arg("cum_tiles"),
      py::arg("C"), py::arg("N"), py::arg("tile_size"), py::arg("tile_w"), py::arg("tile_h"),
      py::arg("keys"), py::arg("flatten_ids"), py::arg("stream") = 0,
      "Write int64 keys (camera|tile|depth) and int32 flatten ids at int64 cumsum offsets.");
  m.def(
      "isect_offset_encode_cpu",
      [](u sorted_keys, long long n_isects, int C, int tile_w, int tile_h, u offsets,
         u /*stream*/) {
        rg::cpu::isect_offset_encode_cpu(P<const long long>(sorted_keys), n_isects, C, tile_w,
                                      tile_h, P<int>(offsets));
      },
      py::arg("sorted_keys"), py::arg("n_isects"), py::arg("C"), py::arg("tile_w"),
      py::arg("tile_h"), py::arg("offsets"), py::arg("stream") = 0,
      "First intersection index of every (camera, tile) -> int32 [C,tile_h,tile_w].");

  m.def(
      "rasterize_to_pixels_fwd_cpu",
      [](int C, int N, int CH, int width, int height, int tile_size, int tile_w, int tile_h,
         long long n_isects, u means2d, u conics, u colors, u opacities, u backgrounds,
         u offsets, u flatten_ids, u render_colors, u render_alphas, u last_ids, u /*stream*/) {
        const rg::RasterArgs a = raster_args(C, N, CH, width, height, tile_size, tile_w, tile_h,
                                              n_isects, means2d, conics, colors, opacities,
                                              backgrounds, offsets, flatten_ids, render_colors,
                                              render_alphas, last_ids);
        rg::cpu::rasterize_fwd_cpu(a);
      },
      RASTER_ARGS, py::arg("stream") = 0,
      "Alpha-blend the sorted Gaussians of each tile front to back.");
  m.def(
      "rasterize_to_pixels_bwd_cpu",
      [](int C, int N, int CH, int width, int height, int tile_size, int tile_w, int tile_h,
         long long n_isects, u means2d, u conics, u colors, u opacities, u backgrounds,
         u offsets, u flatten_ids, u render_colors, u render_alphas, u last_ids,
         u v_render_colors, u v_render_alphas, u v_means2d, u v_means2d_abs, u v_conics,
         u v_colors, u v_opacities, u /*stream*/, u isect_grads) {
        const rg::RasterArgs a = raster_args(C, N, CH, width, height, tile_size, tile_w, tile_h,
                                              n_isects, means2d, conics, colors, opacities,
                                              backgrounds, offsets, flatten_ids, render_colors,
                                              render_alphas, last_ids);
        rg::RasterGrads g;
        g.v_render_colors = P<const float>(v_render_colors);
        g.v_render_alphas = P<const float>(v_render_alphas);
        g.v_means2d = P<float>(v_means2d);
        g.v_means2d_abs = P<float>(v_means2d_abs);
        g.v_conics = P<float>(v_conics);
        g.v_colors = P<float>(v_colors);
        g.v_opacities = P<float>(v_opacities);
        rg::cpu::rasterize_bwd_cpu(a, g, P<float>(isect_grads));
      },
      RASTER_ARGS, py::arg("v_render_colors"), py::arg("v_render_alphas"),
      py::arg("v_means2d"), py::arg("v_means2d_abs"), py::arg("v_conics"), py::arg("v_colors"),
      py::arg("v_opacities"), py::arg("stream") = 0, py::arg("isect_grads") = 0,
      "VJP of the rasterizer (back to front) into zeroed gradient buffers; isect_grads: "
      "float32 [n_isects, 8 + CH] scratch (0: allocated internally).");
  m.def(
      "isect_sort_cpu",
      [](u keys, u flatten_ids, u cum_tiles, long long n_isects, int C, int N, int tile_w,
         int tile_h, u sorted_keys, u sorted_ids, u offsets, u /*stream*/) {
        rg::cpu::isect_sort_cpu(P<const long long>(keys), P<const int>(flatten_ids),
                                P<const long long>(cum_tiles), n_isects, C, N, tile_w, tile_h,
                                P<long long>(sorted_keys), P<int>(sorted_ids), P<int>(offsets));
      },
      py::arg("keys"), py::arg("flatten_ids"), py::arg("cum_tiles"), py::arg("n_isects"),
      py::arg("C"), py::arg("N"), py::arg("tile_w"), py::arg("tile_h"), py::arg("sorted_keys"),
      py::arg("sorted_ids"), py::arg("offsets"), py::arg("stream") = 0,
      "Sort intersections by (camera, tile, depth) and write the per-tile offsets [C,th,tw].");
  m.def("set_num_threads", &rg::cpu::set_num_threads, py::arg("n"),
        "Threads of the CPU backend (n <= 0: RG_NUM_THREADS or the hardware concurrency).");
  m.def("get_num_threads", &rg::cpu::num_threads, "Threads the CPU backend uses.");
  m.def("rasterize_uses_simd", &rg::cpu::rasterize_uses_simd,
        "True when the CPU rasterizer uses its AVX2 kernels (RG_RASTER_SIMD=0 forces scalar).");
}
