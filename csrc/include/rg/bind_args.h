// Binding helpers shared by the CPU (csrc/cpu/bind_cpu.cpp) and CUDA (csrc/cuda/bind_cuda.cpp)
// registrations: both take every pointer as an integer (torch `tensor.data_ptr()`) and build the
// same argument structs (rg/ops.h) from the same keyword lists, so one Python glue drives both.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "rg/ops.h"

namespace rg::bind {

namespace py = pybind11;
using u = std::uintptr_t;


template <typename T>
inline T* P(u p) {
  return reinterpret_cast<T*>(p);
}

inline ProjArgs proj_args(int C, int N, bool per_camera, u means, u quats, u scales, u face_ids,
                        u centroids, u rotations, u sqrt_areas, int F, int cams_per_pose,
                        u viewmats, u Ks, int width, int height, float near_plane,
                        float far_plane, float eps2d, float radius_clip, int sh_degree, int K,
                        bool sh_per_camera, u sh, u radii, u means2d, u depths, u conics,
                        u colors) {
  ProjArgs a;
  a.C = C;
  a.N = N;
  a.per_camera = per_camera;
  a.means = P<const float>(means);
  a.quats = P<const float>(quats);
  a.scales = P<const float>(scales);
  a.face_ids = P<const int>(face_ids);
  a.centroids = P<const float>(centroids);
  a.rotations = P<const float>(rotations);
  a.sqrt_areas = P<const float>(sqrt_areas);
  a.F = F;
  a.cams_per_pose = cams_per_pose < 1 ? 1 : cams_per_pose;
  a.viewmats = P<const float>(viewmats);
  a.Ks = P<const float>(Ks);
  a.width = width;
  a.height = height;
  a.near_plane = near_plane;
  a.far_plane = far_plane;
  a.eps2d = eps2d;
  a.radius_clip = radius_clip;
  a.sh_degree = sh_degree;
  a.K = K;
  a.sh_per_camera = sh_per_camera;
  a.sh = P<const float>(sh);
  a.radii = P<int>(radii);
  a.means2d = P<float>(means2d);
  a.depths = P<float>(depths);
  a.conics = P<float>(conics);
  a.colors = P<float>(colors);
  return a;
}

inline RasterArgs raster_args(int C, int N, int CH, int width, int height, int tile_size,
                            int tile_w, int tile_h, long long n_isects, u means2d, u conics,
                            u colors, u opacities, u backgrounds, u offsets, u flatten_ids,
                            u render_colors, u render_alphas, u last_ids) {
  RasterArgs a;
  a.C = C;
  a.N = N;
  a.CH = CH;
  a.width = width;
  a.height = height;
  a.tile_size = tile_size;
  a.tile_w = tile_w;
  a.tile_h = tile_h;
  a.n_isects = n_isects;
  a.means2d = P<const float>(means2d);
  a.conics = P<const float>(conics);
  a.colors = P<const float>(colors);
  a.opacities = P<const float>(opacities);
  a.backgrounds = P<const float>(backgrounds);
  a.offsets = P<const int>(offsets);
  a.flatten_ids = P<const int>(flatten_ids);
  a.render_colors = P<float>(render_colors);
  a.render_alphas = P<float>(render_alphas);
  a.last_ids = P<int>(last_ids);
  return a;
}

#define PROJ_ARGS                                                                          \
  py::arg("C"), py::arg("N"), py::arg("per_camera"), py::arg("means"), py::arg("quats"),   \
      py::arg("scales"), py::arg("face_ids"), py::arg("centroids"), py::arg("rotations"),  \
      py::arg("sqrt_areas"), py::arg("F"), py::arg("cams_per_pose"), py::arg("viewmats"),  \
      py::arg("Ks"), py::arg("width"), py::arg("height"), py::arg("near_plane"),           \
      py::arg("far_plane"), py::arg("eps2d"), py::arg("radius_clip"), py::arg("sh_degree"), \
      py::arg("K"), py::arg("sh_per_camera"), py::arg("sh"), py::arg("radii"),             \
      py::arg("means2d"), py::arg("depths"), py::arg("conics"), py::arg("colors")

#define RASTER_ARGS                                                                          \
  py::arg("C"), py::arg("N"), py::arg("CH"), py::arg("width"), py::arg("height"),            \
      py::arg("tile_size"), py::arg("tile_w"), py::arg("tile_h"), py::arg("n_isects"),       \
      py::arg("means2d"), py::arg("conics"), py::arg("colors"), py::arg("opacities"),        \
      py::arg("backgrounds"), py::arg("offsets"), py::arg("flatten_ids"),                    \
      py::arg("render_colors"), py::arg("render_alphas"), py::arg("last_ids")

}  // namespace rg::bind
