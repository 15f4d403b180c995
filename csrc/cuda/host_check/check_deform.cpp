// Triangle frames and the unfused deformation through their real launch wrappers: gradients vs
// finite differences, and indices out of range flagged, never dereferenced (run under ASan).
#define RG_EMULATE 1
#include "cuda_runtime.h"
#include "../frames_deform.cu"
#include <cstdio>
#include <random>
using namespace rg::gpu;
std::mt19937 rng(4);
float rnd(float a=-1,float b=1){ return std::uniform_real_distribution<float>(a,b)(rng); }
const int B=2,V=6,F=4,N=7;
std::vector<float> verts(B*V*3), means(N*3), quats(N*4), ls(N*3); std::vector<int> faces={0,1,2, 1,3,2, 2,3,4, 3,5,4}, fid(N);
std::vector<float> wm(B*N*3), wq(B*N*4), ws(B*N*3), wsa(B*F);
rg::FramesArgs frames(std::vector<float>& cent, std::vector<float>& rot, std::vector<float>& sa){
  rg::FramesArgs a; a.B=B; a.V=V; a.F=F; a.vertices=verts.data(); a.faces=faces.data(); a.centroids=cent.data(); a.rotations=rot.data(); a.sqrt_areas=sa.data(); return a; }
rg::DeformArgs deform(std::vector<float>& cent, std::vector<float>& rot, std::vector<float>& sa, std::vector<float>& om, std::vector<float>& oq, std::vector<float>& os){
  rg::DeformArgs d; d.B=B; d.N=N; d.F=F; d.means=means.data(); d.quats=quats.data(); d.log_scales=ls.data(); d.face_ids=fid.data(); d.centroids=cent.data(); d.rotations=rot.data(); d.sqrt_areas=sa.data();
  d.out_means=om.data(); d.out_quats=oq.data(); d.out_scales=os.data(); return d; }
double loss(std::vector<float>* cent_o=nullptr, std::vector<float>* rot_o=nullptr, std::vector<float>* sa_o=nullptr){
  std::vector<float> cent(B*F*3), rot(B*F*9), sa(B*F), om(B*N*3), oq(B*N*4), os(B*N*3);
  triangle_frames_fwd(frames(cent, rot, sa));
  deform_fwd(deform(cent, rot, sa, om, oq, os));
  double L=0; for(int i=0;i<B*N*3;++i) L+=wm[i]*om[i]+ws[i]*os[i]; for(int i=0;i<B*N*4;++i) L+=wq[i]*oq[i]; for(int i=0;i<B*F;++i) L+=wsa[i]*sa[i];
  if(cent_o){*cent_o=cent; *rot_o=rot; *sa_o=sa;} return L; }
int main(){ for(auto& v:verts) v=rnd(); for(auto& v:means) v=rnd(); for(auto& v:quats) v=rnd(); for(auto& v:ls) v=rnd(-2,0); for(int n=0;n<N;++n) fid[n]=n%F;
  for(auto& v:wm) v=rnd(); for(auto& v:wq) v=rnd(); for(auto& v:ws) v=rnd(); for(auto& v:wsa) v=rnd();
  std::vector<float> cent, rot, sa; loss(&cent,&rot,&sa);
  std::vector<float> gm(N*3), gq(N*4), gls(N*3), gc(B*F*3), gr(B*F*9), gsa(B*F), gv(B*V*3), om(B*N*3), oq(B*N*4), os(B*N*3);
  rg::DeformArgs d = deform(cent, rot, sa, om, oq, os);
  d.v_out_means=wm.data(); d.v_out_quats=wq.data(); d.v_out_scales=ws.data(); d.v_means=gm.data(); d.v_quats=gq.data(); d.v_log_scales=gls.data(); d.v_centroids=gc.data(); d.v_rotations=gr.data(); d.v_sqrt_areas=gsa.data();
  deform_bwd(d);
  for(int i=0;i<B*F;++i) gsa[i]+=wsa[i];
  rg::FramesArgs fa = frames(cent, rot, sa); fa.v_centroids=gc.data(); fa.v_rotations=gr.data(); fa.v_sqrt_areas=gsa.data(); fa.v_vertices=gv.data();
  triangle_frames_bwd(fa);
  int fails=0;
  auto chk=[&](const char* nm, std::vector<float>& x, std::vector<float>& g){ float me=0, sc=1e-6; for(size_t i=0;i<x.size();++i){ float o=x[i]; x[i]=o+1e-3f; double lp=loss(); x[i]=o-1e-3f; double lm=loss(); x[i]=o; double fd=(lp-lm)/2e-3; me=std::max(me,(float)std::fabs(fd-g[i])); sc=std::max(sc,(float)std::fabs(fd)); }
    bool ok=me<=2e-2*sc+1e-3; if(!ok) fails++; printf("  %-10s maxerr %.3e scale %.3e %s\n",nm,me,sc,ok?"ok":"FAIL"); };
  chk("vertices",verts,gv); chk("means",means,gm); chk("quats",quats,gq); chk("log_scales",ls,gls);
  // indices out of range: flagged, the element NaN, the others untouched; never read (ASan)
  int errors[rg::kErrorSlots] = {0, 0};
  faces[4] = 1 << 28;  // face 1
  fid[2] = -5;         // Gaussian 2 (face 2's frame is fine)
  std::vector<float> c2(B*F*3), r2(B*F*9), s2(B*F), om2(B*N*3), oq2(B*N*4), os2(B*N*3);
  rg::FramesArgs fb = frames(c2, r2, s2); fb.errors = errors;
  triangle_frames_fwd(fb);
  rg::DeformArgs db = deform(cent, rot, sa, om2, oq2, os2); db.errors = errors;
  deform_fwd(db);
  const bool flagged = errors[rg::kErrFaces] == 1 && errors[rg::kErrFaceIds] == 1;
  const bool nan_out = std::isnan(s2[1]) && std::isnan(s2[F + 1]) && std::isnan(om2[3 * 2]) && std::isnan(om2[3 * (N + 2)]);
  const bool others = std::isfinite(s2[0]) && std::isfinite(s2[2]) && std::isfinite(om2[0]) && std::isfinite(om2[3 * 3]);
  std::vector<float> gv2(B*V*3, 0.f); fb.v_centroids=gc.data(); fb.v_rotations=gr.data(); fb.v_sqrt_areas=gsa.data(); fb.v_vertices=gv2.data();
  triangle_frames_bwd(fb);  // the bad face passes no gradient and reads nothing out of range
  bool finite_grads = true; for (float g : gv2) finite_grads &= std::isfinite(g);
  const bool guard_ok = flagged && nan_out && others && finite_grads;
  if (!guard_ok) fails++;
  printf("  index guards (flag, NaN element, others intact, no OOB read) %s\n", guard_ok ? "ok" : "FAIL");
  printf("fails=%d\n",fails); return fails; }
