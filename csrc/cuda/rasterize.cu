// Tile rasterizer: one block per (camera, tile), one thread per pixel. Gaussians of the tile
// (depth-sorted) are staged in shared memory in batches of tile_size^2. Forward blends front to
// back with early stop; backward walks back to front from each pixel's last contributor,
// reduces per warp and scatters with atomics.
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/math.h"

namespace rgc {
namespace {

struct SharedG {
  int id;
  float mx, my, opac, ca, cb, cc;
};

template <int CH>
__global__ void rasterize_fwd_kernel(RasterArgs a) {
  RG_DYN_SHARED(SharedG, sh);
  const int cam = blockIdx.z, ty = blockIdx.y, tx = blockIdx.x;
  const int tile = ty * a.tile_w + tx;
  const int i = ty * a.tile_size + threadIdx.y, j = tx * a.tile_size + threadIdx.x;
  const int tr = threadIdx.y * blockDim.x + threadIdx.x;
  const int block_size = blockDim.x * blockDim.y;
  const float px = (float)j + 0.5f, py = (float)i + 0.5f;
  const bool inside = i < a.height && j < a.width;
  const long long pix = ((long long)cam * a.height + i) * a.width + j;

  const long long tile_lin = (long long)cam * a.tile_h * a.tile_w + tile;
  const int start = a.offsets[tile_lin];
  const bool last_tile = cam == a.C - 1 && tile == a.tile_h * a.tile_w - 1;
  const int end = last_tile ? (int)a.n_isects : a.offsets[tile_lin + 1];

  bool done = !inside;
  float T = 1.f;
  float acc[CH];
#pragma unroll
  for (int k = 0; k < CH; ++k) acc[k] = 0.f;
  int cur_idx = -1;
  const int n_batches = (end - start + block_size - 1) / block_size;
  for (int b = 0; b < n_batches; ++b) {
    if (__syncthreads_count(done) >= block_size) break;
    const int load = start + b * block_size + tr;
    if (load < end) {
      const int g = a.flatten_ids[load];
      SharedG s;
      s.id = g;
      s.mx = a.means2d[2 * g];
      s.my = a.means2d[2 * g + 1];
      s.opac = a.opacities[g];
      s.ca = a.conics[3 * g];
      s.cb = a.conics[3 * g + 1];
      s.cc = a.conics[3 * g + 2];
      sh[tr] = s;
    }
    __syncthreads();
    const int bsize = min(block_size, end - start - b * block_size);
    for (int t = 0; t < bsize && !done; ++t) {
      const SharedG s = sh[t];
      const float dx = s.mx - px, dy = s.my - py;
      const float sigma = 0.5f * (s.ca * dx * dx + s.cc * dy * dy) + s.cb * dx * dy;
      const float alpha = fminf(kAlphaMax, s.opac * __expf(-sigma));
      if (sigma < 0.f || alpha < kAlphaMin) continue;
      const float next_T = T * (1.f - alpha);
      if (next_T <= kTransmittanceMin) {
        done = true;
        break;
      }
      const float vis = alpha * T;
      const float* c = a.colors + (long long)s.id * CH;
#pragma unroll
      for (int k = 0; k < CH; ++k) acc[k] += c[k] * vis;
      cur_idx = start + b * block_size + t;
      T = next_T;
    }
    __syncthreads();  // shared batch is overwritten next iteration
  }
  if (inside) {
    a.render_alphas[pix] = 1.f - T;
#pragma unroll
    for (int k = 0; k < CH; ++k)
      a.render_colors[pix * CH + k] =
          acc[k] + (a.backgrounds ? T * a.backgrounds[cam * CH + k] : 0.f);
    a.last_ids[pix] = cur_idx;
  }
}

template <int CH>
__global__ void rasterize_bwd_kernel(RasterArgs a, RasterGrads gr) {
  RG_DYN_SHARED(unsigned char, smem);
  const int block_size = blockDim.x * blockDim.y;
  SharedG* sg = reinterpret_cast<SharedG*>(smem);
  float* scol = reinterpret_cast<float*>(sg + block_size);  // [block_size, CH]

  const int cam = blockIdx.z, ty = blockIdx.y, tx = blockIdx.x;
  const int tile = ty * a.tile_w + tx;
  const int i = ty * a.tile_size + threadIdx.y, j = tx * a.tile_size + threadIdx.x;
  const int tr = threadIdx.y * blockDim.x + threadIdx.x;
  const float px = (float)j + 0.5f, py = (float)i + 0.5f;
  const bool inside = i < a.height && j < a.width;
  const long long pix = ((long long)cam * a.height + min(i, a.height - 1)) * a.width +
                        min(j, a.width - 1);

  const long long tile_lin = (long long)cam * a.tile_h * a.tile_w + tile;
  const int start = a.offsets[tile_lin];  // last contributors bound the range from above

  const float T_final = 1.f - a.render_alphas[pix];
  float T = T_final;
  float buffer[CH];
  float v_rc[CH];
#pragma unroll
  for (int k = 0; k < CH; ++k) {
    buffer[k] = 0.f;
    v_rc[k] = inside ? gr.v_render_colors[pix * CH + k] : 0.f;
  }
  const float v_ra = (inside && gr.v_render_alphas) ? gr.v_render_alphas[pix] : 0.f;
  float bg_dot = 0.f;  // sum_k bg_k v_rc_k
  if (a.backgrounds) {
#pragma unroll
    for (int k = 0; k < CH; ++k) bg_dot += a.backgrounds[cam * CH + k] * v_rc[k];
  }
  // index (in sorted isect list) of the last Gaussian this pixel blended; -1: none
  const int bin_final = inside ? a.last_ids[pix] : -1;
  int max_bin = bin_final;
  // the block's furthest contributor bounds the loop
  RG_SHARED(int, s_max);
  if (tr == 0) s_max = -1;
  __syncthreads();
  atomicMax(&s_max, max_bin);
  __syncthreads();
  max_bin = s_max;
  const int range_end = max_bin + 1;  // process [start, range_end) back to front
  const int n = range_end - start;
  const int n_batches = n > 0 ? (n + block_size - 1) / block_size : 0;
  const int lane = tr & 31;

  for (int b = 0; b < n_batches; ++b) {
    // batch covers indices [batch_end - bsize, batch_end) with batch_end descending
    const int batch_end = range_end - b * block_size;
    const int bsize = min(block_size, batch_end - start);
    __syncthreads();
    const int load = batch_end - 1 - tr;  // shared slot tr holds index batch_end-1-tr
    if (tr < bsize) {
      const int g = a.flatten_ids[load];
      SharedG s;
      s.id = g;
      s.mx = a.means2d[2 * g];
      s.my = a.means2d[2 * g + 1];
      s.opac = a.opacities[g];
      s.ca = a.conics[3 * g];
      s.cb = a.conics[3 * g + 1];
      s.cc = a.conics[3 * g + 2];
      sg[tr] = s;
#pragma unroll
      for (int k = 0; k < CH; ++k) scol[tr * CH + k] = a.colors[(long long)g * CH + k];
    }
    __syncthreads();
    for (int t = 0; t < bsize; ++t) {
      const int isect_idx = batch_end - 1 - t;
      bool valid = isect_idx <= bin_final;
      const SharedG s = sg[t];
      float alpha = 0.f, vis = 0.f, sigma = 0.f, dx = 0.f, dy = 0.f;
      if (valid) {
        dx = s.mx - px;
        dy = s.my - py;
        sigma = 0.5f * (s.ca * dx * dx + s.cc * dy * dy) + s.cb * dx * dy;
        vis = __expf(-sigma);
        alpha = fminf(kAlphaMax, s.opac * vis);
        if (sigma < 0.f || alpha < kAlphaMin) valid = false;
      }
      if (!__any_sync(0xffffffffu, valid)) continue;
      float v_col[CH];
      float v_mx = 0.f, v_my = 0.f, v_ca = 0.f, v_cb = 0.f, v_cc = 0.f, v_op = 0.f;
#pragma unroll
      for (int k = 0; k < CH; ++k) v_col[k] = 0.f;
      if (valid) {
        const float ra = 1.f / (1.f - alpha);
        T *= ra;
        const float fac = alpha * T;
        float v_alpha = 0.f;
#pragma unroll
        for (int k = 0; k < CH; ++k) {
          v_col[k] = fac * v_rc[k];
          v_alpha += (scol[t * CH + k] * T - buffer[k] * ra) * v_rc[k];
        }
        v_alpha += T_final * ra * v_ra;
        v_alpha += -T_final * ra * bg_dot;
        if (s.opac * vis <= kAlphaMax) {
          const float v_sigma = -s.opac * vis * v_alpha;
          v_ca = 0.5f * v_sigma * dx * dx;
          v_cb = v_sigma * dx * dy;
          v_cc = 0.5f * v_sigma * dy * dy;
          v_mx = v_sigma * (s.ca * dx + s.cb * dy);
          v_my = v_sigma * (s.cb * dx + s.cc * dy);
          v_op = vis * v_alpha;
        }
#pragma unroll
        for (int k = 0; k < CH; ++k) buffer[k] += scol[t * CH + k] * fac;
      }
      // warp reduce (the Gaussian is the same for every lane of the warp)
#pragma unroll
      for (int k = 0; k < CH; ++k) v_col[k] = warp_sum(v_col[k]);
      const float s_mx = warp_sum(v_mx), s_my = warp_sum(v_my);
      const float a_mx = warp_sum(fabsf(v_mx)), a_my = warp_sum(fabsf(v_my));
      v_ca = warp_sum(v_ca);
      v_cb = warp_sum(v_cb);
      v_cc = warp_sum(v_cc);
      v_op = warp_sum(v_op);
      if (lane == 0) {
        const long long g = s.id;
#pragma unroll
        for (int k = 0; k < CH; ++k) atomicAdd(gr.v_colors + g * CH + k, v_col[k]);
        atomicAdd(gr.v_means2d + 2 * g, s_mx);
        atomicAdd(gr.v_means2d + 2 * g + 1, s_my);
        if (gr.v_means2d_abs) {
          atomicAdd(gr.v_means2d_abs + 2 * g, a_mx);
          atomicAdd(gr.v_means2d_abs + 2 * g + 1, a_my);
        }
        atomicAdd(gr.v_conics + 3 * g, v_ca);
        atomicAdd(gr.v_conics + 3 * g + 1, v_cb);
        atomicAdd(gr.v_conics + 3 * g + 2, v_cc);
        atomicAdd(gr.v_opacities + g, v_op);
      }
    }
  }
}

#if !defined(RG_EMULATE)
template <int CH>
void launch_fwd(const RasterArgs& a, cudaStream_t s) {
  const dim3 grid(a.tile_w, a.tile_h, a.C), block(a.tile_size, a.tile_size);
  const size_t shm = sizeof(SharedG) * a.tile_size * a.tile_size;
  rasterize_fwd_kernel<CH><<<grid, block, shm, s>>>(a);
}
template <int CH>
void launch_bwd(const RasterArgs& a, const RasterGrads& g, cudaStream_t s) {
  const dim3 grid(a.tile_w, a.tile_h, a.C), block(a.tile_size, a.tile_size);
  const size_t shm = (sizeof(SharedG) + sizeof(float) * CH) * a.tile_size * a.tile_size;
  rasterize_bwd_kernel<CH><<<grid, block, shm, s>>>(a, g);
}

void check_args(const RasterArgs& a, const char* op) {
  if (a.tile_size < 8 || a.tile_size > 32 || a.tile_size % 8 != 0) {
    throw std::invalid_argument(std::string(op) + ": tile_size must be 8, 16, 24 or 32, got " +
                                std::to_string(a.tile_size));
  }
  if (a.CH < 1 || a.CH > 4) {
    throw std::invalid_argument(std::string(op) + ": the CUDA rasterizer supports 1..4 channels "
                                "per Gaussian, got " + std::to_string(a.CH));
  }
  if (a.n_isects > 2147483647ll) {
    throw std::overflow_error(std::string(op) + ": " + std::to_string(a.n_isects) +
                              " tile intersections exceed the int32 range; render fewer "
                              "cameras or Gaussians per call");
  }
}

#endif  // !RG_EMULATE
}  // namespace

#if !defined(RG_EMULATE)
void rasterize_fwd_cuda(const RasterArgs& a, std::uintptr_t stream) {
  check_args(a, "rasterize_to_pixels_fwd");
  if (a.C == 0 || a.width == 0 || a.height == 0) return;
  const cudaStream_t s = as_stream(stream);
  switch (a.CH) {
    case 1: launch_fwd<1>(a, s); break;
    case 2: launch_fwd<2>(a, s); break;
    case 3: launch_fwd<3>(a, s); break;
    default: launch_fwd<4>(a, s); break;
  }
  check_launch("rasterize_to_pixels_fwd");
}

void rasterize_bwd_cuda(const RasterArgs& a, const RasterGrads& g, std::uintptr_t stream) {
  check_args(a, "rasterize_to_pixels_bwd");
  if (a.C == 0 || a.width == 0 || a.height == 0) return;
  const cudaStream_t s = as_stream(stream);
  switch (a.CH) {
    case 1: launch_bwd<1>(a, g, s); break;
    case 2: launch_bwd<2>(a, g, s); break;
    case 3: launch_bwd<3>(a, g, s); break;
    default: launch_bwd<4>(a, g, s); break;
  }
  check_launch("rasterize_to_pixels_bwd");
}
#endif  // !RG_EMULATE

}  // namespace rgc
