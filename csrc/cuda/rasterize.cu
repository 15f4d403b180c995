// Tile rasterizer: one block per (camera, tile) on a 1D grid (no per-axis grid limit on the
// camera count), one thread per pixel. Gaussians of the tile (depth-sorted) are staged in shared
// memory in batches of tile_size^2. Forward blends front to back with early stop; backward walks
// back to front from each pixel's last contributor, reduces per warp and scatters with atomics.
// Every index into a [C,N,·] or [C,H,W,·] buffer is 64-bit.
#include "common.cuh"
#include "ops_cuda.h"
#include "rg/math.h"

namespace rg::gpu {

struct SharedG {
  int id;
  float mx, my, opac, ca, cb, cc;
};

// ---- geometry, shared by the kernels, the launches and the host emulation checks
struct TileCoord {
  int cam, ty, tx;
  long long tile_lin;  // camera * n_tiles + ty * tile_w + tx
};

RG_HD TileCoord tile_of_block(const RasterArgs& a, long long block) {
  const long long n_tiles = (long long)a.tile_w * a.tile_h;
  TileCoord t;
  t.tile_lin = block;
  t.cam = (int)(block / n_tiles);
  const long long tile = block % n_tiles;
  t.ty = (int)(tile / a.tile_w);
  t.tx = (int)(tile % a.tile_w);
  return t;
}

RG_HD long long pixel_index(const RasterArgs& a, int cam, int i, int j) {
  return ((long long)cam * a.height + i) * a.width + j;
}

// End of a tile's range of sorted intersections.
RG_HD long long tile_end(const RasterArgs& a, long long tile_lin) {
  return tile_lin == (long long)a.C * a.tile_w * a.tile_h - 1 ? a.n_isects
                                                               : (long long)a.offsets[tile_lin + 1];
}

inline dim3 raster_grid(const RasterArgs& a) {
  return dim3((unsigned)((long long)a.C * a.tile_w * a.tile_h));
}
inline dim3 raster_block(const RasterArgs& a) { return dim3(a.tile_size, a.tile_size); }
inline int raster_threads(const RasterArgs& a) { return a.tile_size * a.tile_size; }
inline size_t raster_fwd_shared_bytes(const RasterArgs& a) {
  return sizeof(SharedG) * a.tile_size * a.tile_size;
}
inline size_t raster_bwd_shared_bytes(const RasterArgs& a) {
  return (sizeof(SharedG) + sizeof(float) * a.CH) * a.tile_size * a.tile_size;
}

namespace {

// Intersection `isect` staged for the block. An id outside [0, C*N) (a slot the fill padded,
// kIsectPadId) is never dereferenced: it loads as a transparent Gaussian (opacity 0, id 0), which
// every pixel skips (alpha < 1/255) in the forward and the backward alike.
RG_HD SharedG load_shared(const RasterArgs& a, long long isect) {
  const long long g = a.flatten_ids[isect];
  SharedG s;
  if (g < 0 || g >= (long long)a.C * a.N) {
    s.id = 0;
    s.mx = s.my = s.opac = s.ca = s.cb = s.cc = 0.f;
    return s;
  }
  s.id = (int)g;
  s.mx = a.means2d[2 * g];
  s.my = a.means2d[2 * g + 1];
  s.opac = a.opacities[g];
  s.ca = a.conics[3 * g];
  s.cb = a.conics[3 * g + 1];
  s.cc = a.conics[3 * g + 2];
  return s;
}

// The kernels are compiled for at most MAXT threads per block (__launch_bounds__): kMaxThreadsSmall
// for tiles up to 16 (256 threads), kMaxThreadsLarge for 24 and 32 (576, 1024 threads), where the
// bound keeps the registers within what 1024 threads may use (64 each on every supported GPU),
// so a block of 32^2 threads always launches, whatever nvcc or debug flags are used.
constexpr int kMaxThreadsSmall = 256;
constexpr int kMaxThreadsLarge = 1024;

template <int CH, int MAXT>
__global__ void __launch_bounds__(MAXT) rasterize_fwd_kernel(RasterArgs a) {
  RG_DYN_SHARED(SharedG, sh);
  const TileCoord tc = tile_of_block(a, blockIdx.x);
  const int cam = tc.cam;
  const int i = tc.ty * a.tile_size + threadIdx.y, j = tc.tx * a.tile_size + threadIdx.x;
  const int tr = threadIdx.y * blockDim.x + threadIdx.x;
  const int block_size = blockDim.x * blockDim.y;
  const float px = (float)j + 0.5f, py = (float)i + 0.5f;
  const bool inside = i < a.height && j < a.width;
  const long long pix = pixel_index(a, cam, i, j);
  const long long start = a.offsets[tc.tile_lin], end = tile_end(a, tc.tile_lin);

  bool done = !inside;
  float T = 1.f;
  float acc[CH];
#pragma unroll
  for (int k = 0; k < CH; ++k) acc[k] = 0.f;
  long long cur_idx = -1;
  const long long n_batches = (end - start + block_size - 1) / block_size;
  for (long long b = 0; b < n_batches; ++b) {
    if (__syncthreads_count(done) >= block_size) break;
    const long long batch_start = start + b * block_size;
    if (batch_start + tr < end) sh[tr] = load_shared(a, batch_start + tr);
    __syncthreads();
    const int bsize = (int)min((long long)block_size, end - batch_start);
    for (int t = 0; t < bsize && !done; ++t) {
      const SharedG s = sh[t];
      const float dx = s.mx - px, dy = s.my - py;
      const float sigma = 0.5f * (s.ca * dx * dx + s.cc * dy * dy) + s.cb * dx * dy;
      // the raw alpha is tested before the clamp: a NaN one (NaN opacity or conic, only with
      // check_finite=False) is skipped like a faint one instead of clamping to kAlphaMax
      const float raw = s.opac * __expf(-sigma);
      if (sigma < 0.f || !(raw >= kAlphaMin)) continue;
      const float alpha = fminf(kAlphaMax, raw);
      const float next_T = T * (1.f - alpha);
      if (next_T <= kTransmittanceMin) {
        done = true;
        break;
      }
      const float vis = alpha * T;
      const float* c = a.colors + (long long)s.id * CH;
#pragma unroll
      for (int k = 0; k < CH; ++k) acc[k] += c[k] * vis;
      cur_idx = batch_start + t;
      T = next_T;
    }
    __syncthreads();  // shared batch is overwritten next iteration
  }
  if (inside) {
    a.render_alphas[pix] = 1.f - T;
#pragma unroll
    for (int k = 0; k < CH; ++k)
      a.render_colors[pix * CH + k] =
          acc[k] + (a.backgrounds ? T * a.backgrounds[(long long)cam * CH + k] : 0.f);
    a.last_ids[pix] = (int)cur_idx;
  }
}

// ABS: also accumulate |d loss / d means2d| per pixel (absgrad), compiled in only when asked.
template <int CH, bool ABS, int MAXT>
__global__ void __launch_bounds__(MAXT) rasterize_bwd_kernel(RasterArgs a, RasterGrads gr) {
  RG_DYN_SHARED(unsigned char, smem);
  const int block_size = blockDim.x * blockDim.y;
  SharedG* sg = reinterpret_cast<SharedG*>(smem);
  float* scol = reinterpret_cast<float*>(sg + block_size);  // [block_size, CH]

  const TileCoord tc = tile_of_block(a, blockIdx.x);
  const int cam = tc.cam;
  const int i = tc.ty * a.tile_size + threadIdx.y, j = tc.tx * a.tile_size + threadIdx.x;
  const int tr = threadIdx.y * blockDim.x + threadIdx.x;
  const float px = (float)j + 0.5f, py = (float)i + 0.5f;
  const bool inside = i < a.height && j < a.width;
  const long long pix = pixel_index(a, cam, min(i, a.height - 1), min(j, a.width - 1));
  const long long start = a.offsets[tc.tile_lin];  // last contributors bound the range above

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
    for (int k = 0; k < CH; ++k) bg_dot += a.backgrounds[(long long)cam * CH + k] * v_rc[k];
  }
  // index (in the sorted intersections) of the last Gaussian this pixel blended; -1: none
  const int bin_final = inside ? a.last_ids[pix] : -1;
  // the block's furthest contributor bounds the loop
  RG_SHARED(int, s_max);
  if (tr == 0) s_max = -1;
  __syncthreads();
  atomicMax(&s_max, bin_final);
  __syncthreads();
  const long long range_end = (long long)s_max + 1;  // process [start, range_end) back to front
  const long long n = range_end - start;
  const long long n_batches = n > 0 ? (n + block_size - 1) / block_size : 0;
  const int lane = tr & 31;

  for (long long b = 0; b < n_batches; ++b) {
    // batch covers indices [batch_end - bsize, batch_end) with batch_end descending
    const long long batch_end = range_end - b * block_size;
    const int bsize = (int)min((long long)block_size, batch_end - start);
    __syncthreads();
    if (tr < bsize) {  // shared slot tr holds index batch_end - 1 - tr
      const SharedG s = load_shared(a, batch_end - 1 - tr);
      sg[tr] = s;
#pragma unroll
      for (int k = 0; k < CH; ++k) scol[tr * CH + k] = a.colors[(long long)s.id * CH + k];
    }
    __syncthreads();
    for (int t = 0; t < bsize; ++t) {
      const long long isect_idx = batch_end - 1 - t;
      bool valid = isect_idx <= bin_final;
      const SharedG s = sg[t];
      float alpha = 0.f, vis = 0.f, sigma = 0.f, dx = 0.f, dy = 0.f;
      if (valid) {
        dx = s.mx - px;
        dy = s.my - py;
        sigma = 0.5f * (s.ca * dx * dx + s.cc * dy * dy) + s.cb * dx * dy;
        vis = __expf(-sigma);
        alpha = fminf(kAlphaMax, s.opac * vis);
        if (sigma < 0.f || !(s.opac * vis >= kAlphaMin)) valid = false;  // as the forward
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
      float a_mx = 0.f, a_my = 0.f;
      if constexpr (ABS) {
        a_mx = warp_sum(fabsf(v_mx));
        a_my = warp_sum(fabsf(v_my));
      }
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
        if constexpr (ABS) {
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
  if ((long long)a.C * a.tile_w * a.tile_h > 2147483647ll) {
    throw std::overflow_error(std::string(op) + ": more than 2^31-1 (camera, tile) blocks");
  }
}

template <int CH, int MAXT>
void fwd_bounded(const RasterArgs& a) {
  launch("rasterize_to_pixels_fwd", rasterize_fwd_kernel<CH, MAXT>, raster_grid(a),
         raster_block(a), raster_fwd_shared_bytes(a), a, a);
}

template <int CH, int MAXT>
void bwd_bounded(const RasterArgs& a, const RasterGrads& g) {
  const char* op = "rasterize_to_pixels_bwd";
  if (g.v_means2d_abs != nullptr) {
    launch(op, rasterize_bwd_kernel<CH, true, MAXT>, raster_grid(a), raster_block(a),
           raster_bwd_shared_bytes(a), a, a, g);
  } else {
    launch(op, rasterize_bwd_kernel<CH, false, MAXT>, raster_grid(a), raster_block(a),
           raster_bwd_shared_bytes(a), a, a, g);
  }
}

template <int CH>
void fwd(const RasterArgs& a) {
  if (raster_threads(a) <= kMaxThreadsSmall) {
    fwd_bounded<CH, kMaxThreadsSmall>(a);
  } else {
    fwd_bounded<CH, kMaxThreadsLarge>(a);
  }
}

template <int CH>
void bwd(const RasterArgs& a, const RasterGrads& g) {
  if (raster_threads(a) <= kMaxThreadsSmall) {
    bwd_bounded<CH, kMaxThreadsSmall>(a, g);
  } else {
    bwd_bounded<CH, kMaxThreadsLarge>(a, g);
  }
}

}  // namespace

void rasterize_to_pixels_fwd(const RasterArgs& a) {
  check_args(a, "rasterize_to_pixels_fwd");
  if (a.C == 0 || a.width == 0 || a.height == 0) return;
  switch (a.CH) {
    case 1: fwd<1>(a); break;
    case 2: fwd<2>(a); break;
    case 3: fwd<3>(a); break;
    default: fwd<4>(a); break;
  }
}

void rasterize_to_pixels_bwd(const RasterArgs& a, const RasterGrads& g) {
  check_args(a, "rasterize_to_pixels_bwd");
  if (a.C == 0 || a.width == 0 || a.height == 0) return;
  switch (a.CH) {
    case 1: bwd<1>(a, g); break;
    case 2: bwd<2>(a, g); break;
    case 3: bwd<3>(a, g); break;
    default: bwd<4>(a, g); break;
  }
}

}  // namespace rg::gpu
