// The tile rasterizer through its real launch wrappers (rasterize_to_pixels_fwd/bwd: the real
// grid, block and shared-memory sizes) on the emulated runtime:
//  - every configuration of tile size 8, 16, 24 and 32 (576 and 1024 threads per block, the
//    kernels' larger __launch_bounds__), 1..4 channels, a null or real background, with and
//    without the alpha gradient and absgrad, and zero intersections: forward and all gradients
//    vs a naive per-pixel blend (double precision), with the dynamic shared memory of every
//    block filled with 0xFF bytes (NaN floats, -1 ids) so reading it before writing fails;
//  - a NaN opacity in the lists (check_finite=False) is skipped: the image of the lists without
//    it, bit for bit, and no gradient for it;
//  - one configuration also against finite differences (informative outliers allowed);
//  - the 64-bit index arithmetic with counts whose products pass 2^31 (no memory allocated).
#define RG_EMULATE 1
#include "cuda_runtime.h"
#include "../rasterize.cu"
#include "rg/isect.h"
#include <cstdio>
#include <random>
using namespace rg::gpu;
std::mt19937 rng(5);
float rnd(float a = -1, float b = 1) { return std::uniform_real_distribution<float>(a, b)(rng); }
int fails = 0;

struct Scene {
  int C = 2, N = 0, CH = 4, W = 21, H = 18, TS = 8, TW = 0, TH = 0;
  bool bg_on = true, alpha_grad = true, absgrad = true;
  std::vector<float> m2, con, col, op, bg, dep, rc, ra, wc, wa;
  std::vector<int> offs, fids, last;
  rg::RasterArgs args() {
    rg::RasterArgs a; a.C = C; a.N = N; a.CH = CH; a.width = W; a.height = H; a.tile_size = TS; a.tile_w = TW; a.tile_h = TH;
    a.n_isects = (long long)fids.size(); a.means2d = m2.data(); a.conics = con.data(); a.colors = col.data(); a.opacities = op.data();
    a.backgrounds = bg_on ? bg.data() : nullptr; a.offsets = offs.data(); a.flatten_ids = fids.data();
    a.render_colors = rc.data(); a.render_alphas = ra.data(); a.last_ids = last.data(); return a; }
  double fwd() {
    rasterize_to_pixels_fwd(args());
    double L = 0; for (size_t i = 0; i < rc.size(); ++i) L += wc[i] * rc[i];
    if (alpha_grad) for (size_t i = 0; i < ra.size(); ++i) L += wa[i] * ra[i];
    return L; }
};

Scene make(int N, int TS, int CH, bool bg_on, bool alpha_grad, bool absgrad) {
  Scene s; s.N = N; s.TS = TS; s.CH = CH; s.bg_on = bg_on; s.alpha_grad = alpha_grad; s.absgrad = absgrad;
  if (TS >= 24) { s.W = 2 * TS + 5; s.H = TS + 7; }  // 3 x 2 tiles, partial at the edges
  s.TW = (s.W + TS - 1) / TS; s.TH = (s.H + TS - 1) / TS;
  const int C = s.C, W = s.W, H = s.H;
  s.m2.resize(C * N * 2); s.con.resize(C * N * 3); s.col.resize(C * N * CH); s.op.resize(C * N); s.bg.resize(C * CH); s.dep.resize(C * N);
  std::vector<float> cov(C * N * 3);
  for (int i = 0; i < C * N; ++i) {
    s.m2[2 * i] = rnd(0, W); s.m2[2 * i + 1] = rnd(0, H);
    float a = rnd(2, 12), c = rnd(2, 12), b = rnd(-1, 1) * 0.6f * sqrtf(a * c); float det = a * c - b * b;
    s.con[3 * i] = c / det; s.con[3 * i + 1] = -b / det; s.con[3 * i + 2] = a / det; cov[3 * i] = a; cov[3 * i + 2] = c;
    for (int k = 0; k < CH; ++k) s.col[CH * i + k] = rnd(0, 1);
    s.op[i] = rnd(0.3f, 0.98f); s.dep[i] = rnd(1, 5);
  }
  for (auto& v : s.bg) v = rnd(0, 1);
  s.rc.resize(C * H * W * CH); s.ra.resize(C * H * W); s.last.resize(C * H * W);
  s.wc.resize(s.rc.size()); s.wa.resize(s.ra.size());
  for (auto& v : s.wc) v = rnd(); for (auto& v : s.wa) v = rnd();
  // intersections (gsplat's tile rule), sorted by camera, tile, depth
  struct E { long long key; float d; int id; }; std::vector<E> es;
  for (int c = 0; c < C; ++c) for (int n = 0; n < N; ++n) { int i = c * N + n;
    int rx = (int)ceilf(3.33f * sqrtf(cov[3 * i])), ry = (int)ceilf(3.33f * sqrtf(cov[3 * i + 2]));
    rg::TileRect r; { int x0 = (int)floorf((s.m2[2*i] - rx) / TS), x1 = (int)ceilf((s.m2[2*i] + rx) / TS), y0 = (int)floorf((s.m2[2*i+1] - ry) / TS), y1 = (int)ceilf((s.m2[2*i+1] + ry) / TS);
      r = {std::clamp(x0, 0, s.TW), std::clamp(y0, 0, s.TH), std::clamp(x1, 0, s.TW), std::clamp(y1, 0, s.TH)}; }
    for (int ty = r.y0; ty < r.y1; ++ty) for (int tx = r.x0; tx < r.x1; ++tx) es.push_back({(long long)c * s.TW * s.TH + ty * s.TW + tx, s.dep[i], i}); }
  std::sort(es.begin(), es.end(), [](const E& a, const E& b) { return a.key != b.key ? a.key < b.key : a.d < b.d; });
  s.offs.assign(C * s.TW * s.TH, 0); for (int t = 0; t < C * s.TW * s.TH; ++t) { int k = 0; while (k < (int)es.size() && es[k].key < t) ++k; s.offs[t] = k; }
  for (auto& e : es) s.fids.push_back(e.id);
  return s;
}

// Naive per-pixel forward and backward in double; compares with the kernels' outputs.
void compare(Scene& s, const char* name) {
  const int C = s.C, N = s.N, CH = s.CH, W = s.W, H = s.H, TS = s.TS, TW = s.TW, TH = s.TH;
  s.fwd();
  std::vector<float> vm(C * N * 2), vabs(C * N * 2), vc(C * N * 3), vcol(C * N * CH), vop(C * N);
  rg::RasterGrads g; g.v_render_colors = s.wc.data(); g.v_render_alphas = s.alpha_grad ? s.wa.data() : nullptr;
  g.v_means2d = vm.data(); g.v_means2d_abs = s.absgrad ? vabs.data() : nullptr; g.v_conics = vc.data(); g.v_colors = vcol.data(); g.v_opacities = vop.data();
  rasterize_to_pixels_bwd(s.args(), g);
  double maxf = 0; std::vector<double> nm(vm.size()), nc(vc.size()), ncol(vcol.size()), nop(vop.size());
  for (int c = 0; c < C; ++c) for (int y = 0; y < H; ++y) for (int x = 0; x < W; ++x) {
    const int t = c * TW * TH + (y / TS) * TW + (x / TS); const int st = s.offs[t], en = t + 1 < C * TW * TH ? s.offs[t + 1] : (int)s.fids.size();
    const long long p = ((long long)c * H + y) * W + x;
    std::vector<int> used; double T = 1; std::vector<double> acc(CH, 0.0);
    for (int k = st; k < en; ++k) { const int gg = s.fids[k]; const float dx = s.m2[2*gg] - (x + .5f), dy = s.m2[2*gg+1] - (y + .5f);
      const float sg = 0.5f * (s.con[3*gg] * dx * dx + s.con[3*gg+2] * dy * dy) + s.con[3*gg+1] * dx * dy; const float al = std::min(0.999f, s.op[gg] * expf(-sg));
      if (sg < 0 || al < 1.f / 255) continue; if (T * (1 - al) <= 1e-4) break; used.push_back(gg); for (int q = 0; q < CH; ++q) acc[q] += s.col[CH*gg+q] * al * T; T *= 1 - al; }
    for (int q = 0; q < CH; ++q) maxf = std::max(maxf, std::fabs(acc[q] + (s.bg_on ? T * s.bg[c*CH+q] : 0.0) - s.rc[p*CH+q]));
    maxf = std::max(maxf, std::fabs(1 - T - s.ra[p]));
    const double Tf = T; double Ti = Tf; std::vector<double> buf(CH, 0.0);
    for (int u = (int)used.size() - 1; u >= 0; --u) { const int gg = used[u]; const double dx = s.m2[2*gg] - (x + .5), dy = s.m2[2*gg+1] - (y + .5);
      const double sg = 0.5 * (s.con[3*gg] * dx * dx + s.con[3*gg+2] * dy * dy) + s.con[3*gg+1] * dx * dy; const double vis = exp(-sg); const double al = std::min(0.999, s.op[gg] * vis);
      Ti /= (1 - al); double va = 0;
      for (int q = 0; q < CH; ++q) { ncol[CH*gg+q] += al * Ti * s.wc[p*CH+q]; va += (s.col[CH*gg+q] * Ti - buf[q] / (1 - al)) * s.wc[p*CH+q]; if (s.bg_on) va -= Tf / (1 - al) * s.bg[c*CH+q] * s.wc[p*CH+q]; }
      if (s.alpha_grad) va += Tf / (1 - al) * s.wa[p];
      if (s.op[gg] * vis <= 0.999) { const double vs = -s.op[gg] * vis * va; nc[3*gg] += 0.5*vs*dx*dx; nc[3*gg+1] += vs*dx*dy; nc[3*gg+2] += 0.5*vs*dy*dy;
        nm[2*gg] += vs * (s.con[3*gg] * dx + s.con[3*gg+1] * dy); nm[2*gg+1] += vs * (s.con[3*gg+1] * dx + s.con[3*gg+2] * dy); nop[gg] += vis * va; }
      for (int q = 0; q < CH; ++q) buf[q] += s.col[CH*gg+q] * al * Ti; } }
  bool ok = maxf < 1e-5;
  auto cmp = [&](std::vector<double>& ref, std::vector<float>& got) { double me = 0, sc = 1e-9; for (size_t i = 0; i < ref.size(); ++i) { me = std::max(me, std::fabs(ref[i] - got[i])); sc = std::max(sc, std::fabs(ref[i])); } return me <= 1e-3 * sc; };
  ok = ok && cmp(nm, vm) && cmp(nc, vc) && cmp(ncol, vcol) && cmp(nop, vop);
  bool abs_ok = true;
  if (s.absgrad) { for (size_t i = 0; i < vm.size(); ++i) abs_ok &= vabs[i] + 1e-5 >= std::fabs(vm[i]); }
  else { for (float v : vabs) abs_ok &= v == 0.f; }  // null pointer: never written
  if (s.fids.empty()) { for (float v : vm) ok &= v == 0.f; for (int v : s.last) ok &= v == -1; }
  ok = ok && abs_ok;
  if (!ok) ++fails;
  printf("  %-34s n_isects %4zu  fwd maxdiff %.1e  %s\n", name, s.fids.size(), maxf, ok ? "ok" : "FAIL");
}

void finite_differences(Scene& s) {
  std::vector<float> vm(s.m2.size()), vabs(s.m2.size()), vc(s.con.size()), vcol(s.col.size()), vop(s.op.size());
  s.fwd();
  rg::RasterGrads g; g.v_render_colors = s.wc.data(); g.v_render_alphas = s.wa.data(); g.v_means2d = vm.data(); g.v_means2d_abs = vabs.data(); g.v_conics = vc.data(); g.v_colors = vcol.data(); g.v_opacities = vop.data();
  rasterize_to_pixels_bwd(s.args(), g);
  int groups = 0;  // FD outliers come from alpha-threshold jumps: informative only
  auto chk = [&](const char* nm, std::vector<float>& x, std::vector<float>& ga, float eps) { int bad = 0; for (size_t i0 = 0; i0 < 30; ++i0) { size_t i = (i0 * 7919) % x.size(); float o = x[i]; x[i] = o + eps; double lp = s.fwd(); x[i] = o - eps; double lm = s.fwd(); x[i] = o; double fd = (lp - lm) / (2 * eps); if (std::fabs(fd - ga[i]) > 3e-2 * std::fabs(fd) + 2e-3) ++bad; }
    printf("  finite differences %-10s bad %d/30\n", nm, bad); groups += bad > 2; };
  chk("means2d", s.m2, vm, 1e-3f); chk("conics", s.con, vc, 3e-4f); chk("colors", s.col, vcol, 1e-2f); chk("opacities", s.op, vop, 1e-3f);
  printf("  finite-difference outlier groups: %d (informative)\n", groups);
}

void index_arithmetic() {
  // products of counts beyond 2^31, computed on records only (no memory)
  rg::RasterArgs a; a.C = 100000; a.width = a.height = 4096; a.tile_size = 16; a.tile_w = a.tile_h = 256;
  bool ok = pixel_index(a, 99999, 4095, 4095) == 99999ll * 4096 * 4096 + 4095ll * 4096 + 4095;
  a.C = 30000; a.tile_w = a.tile_h = 256;  // 1.97e9 (camera, tile) blocks: one 1D grid axis
  const dim3 grid = raster_grid(a);
  ok = ok && grid.x == 30000u * 65536u && grid.y == 1 && grid.z == 1;
  const TileCoord tc = tile_of_block(a, (long long)grid.x - 1);
  ok = ok && tc.cam == 29999 && tc.ty == 255 && tc.tx == 255 && tc.tile_lin == (long long)grid.x - 1;
  a.n_isects = 2147483647ll;  // the last tile's range ends at n_isects, past int32 products
  ok = ok && tile_end(a, (long long)a.C * 65536 - 1) == 2147483647ll;
  a.tile_size = 16; a.CH = 4;
  ok = ok && raster_block(a).x == 16 && raster_fwd_shared_bytes(a) == sizeof(SharedG) * 256 && raster_bwd_shared_bytes(a) == (sizeof(SharedG) + 16) * 256;
  a.tile_size = 32;
  ok = ok && raster_bwd_shared_bytes(a) <= 48 * 1024;  // the default per-block limit
  rg::IsectArgs ia; ia.N = 1 << 20; ia.tile_w = ia.tile_h = 64;  // key base of Gaussian 2^31-1
  const long long g = 2147483647ll;
  ok = ok && (g / ia.N) * (long long)ia.tile_w * ia.tile_h == 2047ll * 4096;
  if (!ok) ++fails;
  printf("  64-bit index arithmetic (C=1e5 cameras at 4096^2, 2^31-1 intersections) %s\n", ok ? "ok" : "FAIL");
}

// A NaN opacity in a tile list is skipped by the forward and the backward: the same image as the
// lists without that Gaussian, bit for bit, and zero gradients for it.
void nan_opacity() {
  Scene s = make(NN, 16, 3, true, true, false);
  const int victim = s.fids[s.fids.size() / 2];
  Scene without = s;
  without.fids.clear();
  std::vector<int> kept_before(s.fids.size() + 1, 0);
  for (size_t i = 0; i < s.fids.size(); ++i) {
    kept_before[i + 1] = kept_before[i] + (s.fids[i] != victim);
    if (s.fids[i] != victim) without.fids.push_back(s.fids[i]);
  }
  for (auto& o : without.offs) o = kept_before[o];
  s.op[victim] = NAN;
  without.op[victim] = NAN;  // never read
  s.fwd(); without.fwd();
  bool ok = s.rc == without.rc && s.ra == without.ra;
  std::vector<float> vm(s.m2.size()), vc(s.con.size()), vcol(s.col.size()), vop(s.op.size());
  rg::RasterGrads g; g.v_render_colors = s.wc.data(); g.v_render_alphas = s.wa.data(); g.v_means2d = vm.data(); g.v_conics = vc.data(); g.v_colors = vcol.data(); g.v_opacities = vop.data();
  rasterize_to_pixels_bwd(s.args(), g);
  for (int k = 0; k < 2; ++k) ok &= vm[2 * victim + k] == 0.f;
  for (int k = 0; k < 3; ++k) ok &= vc[3 * victim + k] == 0.f && vcol[3 * victim + k] == 0.f;
  ok &= vop[victim] == 0.f;
  for (float v : s.rc) ok &= std::isfinite(v);
  if (!ok) ++fails;
  printf("  %-34s %s\n", "NaN opacity skipped (fwd and bwd)", ok ? "ok" : "FAIL");
}

#ifndef BIG_TILES  // 0: tiles 8 and 16 only (the emulation runs a thread per pixel of a tile)
#define BIG_TILES 1
#endif

int main() {
  index_arithmetic();
  nan_opacity();
  for (int TS : {8, 16, 24, 32}) {
    if (TS > 16 && !BIG_TILES) continue;
    for (int CH = 1; CH <= 4; ++CH) {
      Scene s = make(NN, TS, CH, CH % 2 == 1, CH != 2, CH >= 3);
      char name[96]; snprintf(name, sizeof name, "tile %d, CH %d, bg %d, alpha-grad %d, absgrad %d", TS, CH, s.bg_on, s.alpha_grad, s.absgrad);
      compare(s, name);
    }
  }
  Scene empty = make(NN, 8, 3, true, true, true);
  empty.fids.clear(); std::fill(empty.offs.begin(), empty.offs.end(), 0);
  compare(empty, "zero intersections");
  if (NN <= 20) {  // finite differences: a few hundred forwards, on the small scene only
    Scene s = make(NN, 8, 4, true, true, true);
    finite_differences(s);
  }
  if (BIG_TILES && emu::max_block_threads != 1024) { ++fails; printf("  32 x 32 tiles were not launched\n"); }
  printf("fails=%d\n", fails);
  return fails;
}
