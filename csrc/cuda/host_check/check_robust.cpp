// Failure handling of the CUDA backend on the emulated runtime (built with ASan by run.sh, so a
// read out of bounds fails the check):
//  - debug mode (Exec::sync_debug, RG_CUDA_DEBUG=1): a fault during a kernel is raised by the op
//    that ran it, named ("rigged_gaussians: CUDA error in <op>: ..."); without it, no sync;
//  - a count/fill mismatch, forced by corrupting the counts: the fill never writes past its
//    range, pads what it leaves unfilled (no slot of the torch.empty-like buffers keeps its
//    garbage), flags kErrIsectFill (raised under sync_debug), and the sort, offsets and
//    rasterizer skip the pads: the image equals the one of the same lists without them;
//  - a non-finite opacity (check_finite=False) is culled by the projection, tight tiles or not.
#define RG_EMULATE 1
#include "cuda_runtime.h"
#include "../projection.cu"
#include "../isect.cu"
#include "../rasterize.cu"
#include <cstdio>
#include <random>
using namespace rg::gpu;
std::mt19937 rng(11);
float rnd(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng); }
int fails = 0;
void expect(bool ok, const char* what) {
  if (!ok) ++fails;
  printf("  %-72s %s\n", what, ok ? "ok" : "FAIL");
}

constexpr int C = 2, N = 40, W = 50, H = 37, TS = 16, TW = (W + TS - 1) / TS, TH = (H + TS - 1) / TS;

struct Scene {
  std::vector<int> radii;
  std::vector<float> m2, dep, con, op, col;
};

Scene make_scene() {
  Scene s;
  const int T = C * N;
  s.radii.resize(2 * T); s.m2.resize(2 * T); s.dep.resize(T); s.con.resize(3 * T); s.op.resize(T); s.col.resize(3 * T);
  for (int i = 0; i < T; ++i) {
    const float a = rnd(2, 40), c = rnd(2, 40), b = rnd(-0.8f, 0.8f) * std::sqrt(a * c), det = a * c - b * b;
    s.con[3 * i] = c / det; s.con[3 * i + 1] = -b / det; s.con[3 * i + 2] = a / det;
    s.radii[2 * i] = (int)std::ceil(3.33f * std::sqrt(a)); s.radii[2 * i + 1] = (int)std::ceil(3.33f * std::sqrt(c));
    s.m2[2 * i] = rnd(0, W); s.m2[2 * i + 1] = rnd(0, H); s.dep[i] = rnd(1, 9); s.op[i] = rnd(0.2f, 0.95f);
    for (int k = 0; k < 3; ++k) s.col[3 * i + k] = rnd(0, 1);
  }
  return s;
}

rg::IsectArgs isect_args(Scene& s) {
  rg::IsectArgs a; a.C = C; a.N = N; a.width = W; a.height = H; a.tile_size = TS; a.tile_w = TW; a.tile_h = TH;
  a.radii = s.radii.data(); a.means2d = s.m2.data(); a.depths = s.dep.data(); a.conics = s.con.data(); a.opacities = s.op.data();
  return a;
}

struct Lists { std::vector<int> offsets, ids; };

// sort the filled keys over the bits in use (as the glue), then the offsets
Lists sort_and_offsets(rg::IsectArgs a, std::vector<int>& keys, std::vector<int>& ids) {
  const long long n_total = (long long)C * TW * TH, M = (long long)keys.size();
  int bits = 0; while ((1ll << bits) < n_total) ++bits;
  std::vector<int> skeys(M); Lists out; out.ids.resize(M);
  rg::SortArgs t; t.n = M; t.end_bit = bits; t.keys_in = keys.data(); t.keys_out = skeys.data(); t.values_in = ids.data(); t.values_out = out.ids.data();
  std::vector<unsigned char> temp(radix_sort_temp_bytes(t)); t.temp = temp.data(); t.temp_bytes = (long long)temp.size();
  radix_sort(t);
  out.offsets.assign(n_total, -7); a.sorted_keys = skeys.data(); a.offsets = out.offsets.data(); a.n_isects = M;
  isect_offsets(a);
  return out;
}

std::vector<float> render(Scene& s, const Lists& l) {
  std::vector<float> rc(C * H * W * 3), ra(C * H * W); std::vector<int> last(C * H * W);
  rg::RasterArgs r; r.C = C; r.N = N; r.CH = 3; r.width = W; r.height = H; r.tile_size = TS; r.tile_w = TW; r.tile_h = TH;
  r.n_isects = (long long)l.ids.size(); r.means2d = s.m2.data(); r.conics = s.con.data(); r.colors = s.col.data(); r.opacities = s.op.data();
  r.offsets = l.offsets.data(); r.flatten_ids = l.ids.data(); r.render_colors = rc.data(); r.render_alphas = ra.data(); r.last_ids = last.data();
  rasterize_to_pixels_fwd(r);
  std::vector<float> gm(2 * C * N), gc(3 * C * N), gcol(3 * C * N), gop(C * N), wc(rc.size(), 0.37f);
  rg::RasterGrads g; g.v_render_colors = wc.data(); g.v_means2d = gm.data(); g.v_conics = gc.data(); g.v_colors = gcol.data(); g.v_opacities = gop.data();
  rasterize_to_pixels_bwd(r, g);  // pads must not be dereferenced here either (ASan)
  rc.insert(rc.end(), ra.begin(), ra.end());
  return rc;
}

// the same lists without the pads (and their offsets shifted)
Lists without_pads(const Lists& l) {
  Lists o; o.offsets = l.offsets;
  std::vector<int> kept_before(l.ids.size() + 1, 0);
  for (size_t i = 0; i < l.ids.size(); ++i) {
    kept_before[i + 1] = kept_before[i] + (l.ids[i] != rg::kIsectPadId);
    if (l.ids[i] != rg::kIsectPadId) o.ids.push_back(l.ids[i]);
  }
  for (auto& v : o.offsets) v = kept_before[v];
  return o;
}

void debug_mode() {
  printf("debug mode (RG_CUDA_DEBUG=1 -> Exec::sync_debug)\n");
  Scene s = make_scene();
  rg::IsectArgs a = isect_args(s);
  std::vector<int> counts(C * N);
  a.counts = counts.data();
  const int syncs = emu::syncs;
  isect_count(a);
  expect(emu::syncs == syncs, "without sync_debug an op never synchronises");
  a.sync_debug = true;
  emu::sync_error = cudaErrorIllegalAddress;  // a fault inside the next kernel
  std::string msg;
  try { isect_count(a); } catch (const std::runtime_error& e) { msg = e.what(); }
  expect(emu::syncs == syncs + 1, "with sync_debug the op waits for its stream once");
  expect(msg == "rigged_gaussians: CUDA error in isect_count: an illegal memory access was encountered (emulated)",
         "a fault is raised by the op that ran it, named");
  // a kernel launched through launch() (the rasterizer) names its op too
  Lists l; l.offsets.assign(C * TW * TH, 0);
  rg::RasterArgs r; r.C = C; r.N = N; r.CH = 3; r.width = W; r.height = H; r.tile_size = 32; r.tile_w = 2; r.tile_h = 2;
  std::vector<float> rc(C * H * W * 3), ra(C * H * W); std::vector<int> last(C * H * W);
  r.means2d = s.m2.data(); r.conics = s.con.data(); r.colors = s.col.data(); r.opacities = s.op.data(); r.offsets = l.offsets.data();
  r.render_colors = rc.data(); r.render_alphas = ra.data(); r.last_ids = last.data(); r.sync_debug = true;
  emu::sync_error = cudaErrorIllegalAddress;
  msg.clear();
  try { rasterize_to_pixels_fwd(r); } catch (const std::runtime_error& e) { msg = e.what(); }
  expect(msg.rfind("rigged_gaussians: CUDA error in rasterize_to_pixels_fwd: an illegal memory access", 0) == 0,
         "the rasterizer's fault names rasterize_to_pixels_fwd");
}

void mismatch() {
  printf("count/fill mismatch (counts corrupted after the count pass)\n");
  Scene s = make_scene();
  rg::IsectArgs a = isect_args(s);
  std::vector<int> counts(C * N);
  a.counts = counts.data();
  isect_count(a);
  // element s0 counted 3 more than it fills (3 pads), s1 one fewer (the fill is truncated)
  int s0 = -1, s1 = -1;
  for (int i = 0; i < C * N; ++i) {
    if (counts[i] > 0 && s0 < 0) s0 = i;
    else if (counts[i] > 1 && s1 < 0) s1 = i;
  }
  const int s1_count = counts[s1];
  counts[s0] += 3;
  counts[s1] -= 1;
  std::vector<long long> cum(C * N); long long sum = 0;
  for (int i = 0; i < C * N; ++i) cum[i] = sum += counts[i];
  // torch.empty: whatever was there (0x5A5A5A5A: neither a tile key nor a Gaussian id)
  std::vector<int> keys(sum, 0x5A5A5A5A), ids(sum, 0x5A5A5A5A), errors(rg::kErrorSlots, 0);
  a.cum = cum.data(); a.n_isects = sum; a.keys = keys.data(); a.ids = ids.data();
  isect_fill(a);  // no error array: pads, no flag, no throw
  a.errors = errors.data();
  isect_fill(a);
  bool no_garbage = true, pads_ok = true;
  for (long long i = 0; i < sum; ++i) no_garbage &= keys[i] != 0x5A5A5A5A && ids[i] != 0x5A5A5A5A;
  for (long long i = cum[s0] - 3; i < cum[s0]; ++i) pads_ok &= keys[i] == rg::kIsectPadKey && ids[i] == rg::kIsectPadId;
  long long n_pads = 0;
  for (long long i = 0; i < sum; ++i) n_pads += ids[i] == rg::kIsectPadId;
  expect(no_garbage, "every slot of the fill's buffers is written (no torch.empty garbage left)");
  expect(pads_ok && n_pads == 3, "the 3 slots the fill could not fill are padded, nothing else");
  bool truncated = true;
  for (long long i = cum[s1 - 1]; i < cum[s1]; ++i) truncated &= ids[i] != rg::kIsectPadId;
  expect(truncated && cum[s1] - cum[s1 - 1] == s1_count - 1, "the over-full element is truncated at its range");
  expect(errors[rg::kErrIsectFill] == 1 && errors[rg::kErrFaces] == 0, "kErrIsectFill is flagged");
  a.sync_debug = true;
  std::string msg;
  try { isect_fill(a); } catch (const std::runtime_error& e) { msg = e.what(); }
  expect(msg.rfind("rigged_gaussians: CUDA error in isect_fill: the fill pass emitted another number", 0) == 0,
         "under sync_debug the mismatch is raised, naming isect_fill");
  a.sync_debug = false;
  const Lists l = sort_and_offsets(a, keys, ids);
  bool pads_last = true;  // the pads sort after every real intersection
  for (long long i = sum - 3; i < sum; ++i) pads_last &= l.ids[i] == rg::kIsectPadId;
  expect(pads_last, "the pads sort after every tile's intersections");
  const std::vector<float> img = render(s, l), clean = render(s, without_pads(l));
  expect(img == clean, "the rasterizer skips the pads: the image of the lists without them, bit for bit");
  // a count that agrees: no flag
  isect_count(a);
  sum = 0; for (int i = 0; i < C * N; ++i) cum[i] = sum += counts[i];
  keys.assign(sum, 0); ids.assign(sum, 0); errors.assign(rg::kErrorSlots, 0);
  a.n_isects = sum; a.keys = keys.data(); a.ids = ids.data(); a.errors = errors.data(); a.sync_debug = true;
  bool threw = false;
  try { isect_fill(a); } catch (const std::runtime_error&) { threw = true; }
  expect(!threw && errors[rg::kErrIsectFill] == 0, "count and fill of one kernel agree: no flag");
}

void nonfinite_opacity() {
  printf("non-finite opacity (check_finite=False) is culled by the projection\n");
  const int n = 6;
  std::vector<float> means, quats, scales, op = {0.8f, NAN, 0.5f, INFINITY, -INFINITY, 0.9f};
  for (int i = 0; i < n; ++i) {
    means.insert(means.end(), {rnd(-0.3f, 0.3f), rnd(-0.3f, 0.3f), rnd(-0.2f, 0.2f)});
    quats.insert(quats.end(), {1.f, 0.f, 0.f, 0.f});
    scales.insert(scales.end(), {0.05f, 0.07f, 0.04f});
  }
  std::vector<float> vm = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 0, 0, 1};
  std::vector<float> K = {60, 0, 32, 0, 60, 24, 0, 0, 1};
  for (bool tight : {true, false}) {
    std::vector<int> radii(2 * n, -5); std::vector<float> m2(2 * n), d(n), co(3 * n);
    rg::ProjArgs a; a.C = 1; a.N = n; a.means = means.data(); a.quats = quats.data(); a.scales = scales.data();
    a.opacities = op.data(); a.viewmats = vm.data(); a.Ks = K.data(); a.width = 64; a.height = 48; a.tight_tiles = tight;
    a.radii = radii.data(); a.means2d = m2.data(); a.depths = d.data(); a.conics = co.data();
    projection_fwd(a);
    bool ok = true;
    for (int i = 0; i < n; ++i) {
      const bool culled = radii[2 * i] == 0 && radii[2 * i + 1] == 0;
      ok &= std::isfinite(op[i]) ? !culled : culled;
    }
    expect(ok, tight ? "NaN and +-inf opacities culled, the finite ones kept (tight tiles)"
                     : "NaN and +-inf opacities culled, the finite ones kept (tight_tiles=False)");
  }
}

int main() {
  debug_mode();
  mismatch();
  nonfinite_opacity();
  printf("robustness: fails=%d\n", fails);
  return fails;
}
