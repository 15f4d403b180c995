#define RG_EMULATE 1
#include "cuda_runtime.h"
#include "../frames_deform.cu"
#include <cstdio>
#include <random>
using namespace rgc;
std::mt19937 rng(4);
float rnd(float a=-1,float b=1){ return std::uniform_real_distribution<float>(a,b)(rng); }
const int B=2,V=6,F=4,N=7;
std::vector<float> verts(B*V*3), means(N*3), quats(N*4), ls(N*3); std::vector<int> faces={0,1,2, 1,3,2, 2,3,4, 3,5,4}, fid(N);
std::vector<float> wm(B*N*3), wq(B*N*4), ws(B*N*3), wsa(B*F);
double loss(std::vector<float>* cent_o=nullptr, std::vector<float>* rot_o=nullptr, std::vector<float>* sa_o=nullptr){
  std::vector<float> cent(B*F*3), rot(B*F*9), sa(B*F), om(B*N*3), oq(B*N*4), os(B*N*3);
  emu::launch(dim3(1),dim3(32),0,[&]{ long long i=threadIdx.x; (void)i; frames_fwd_kernel(verts.data(), faces.data(), B, V, F, cent.data(), rot.data(), sa.data()); });
  emu::launch(dim3(1),dim3(32),0,[&]{ deform_fwd_kernel(means.data(), quats.data(), ls.data(), fid.data(), cent.data(), rot.data(), sa.data(), B, N, F, om.data(), oq.data(), os.data()); });
  double L=0; for(int i=0;i<B*N*3;++i) L+=wm[i]*om[i]+ws[i]*os[i]; for(int i=0;i<B*N*4;++i) L+=wq[i]*oq[i]; for(int i=0;i<B*F;++i) L+=wsa[i]*sa[i];
  if(cent_o){*cent_o=cent; *rot_o=rot; *sa_o=sa;} return L; }
int main(){ for(auto& v:verts) v=rnd(); for(auto& v:means) v=rnd(); for(auto& v:quats) v=rnd(); for(auto& v:ls) v=rnd(-2,0); for(int n=0;n<N;++n) fid[n]=n%F;
  for(auto& v:wm) v=rnd(); for(auto& v:wq) v=rnd(); for(auto& v:ws) v=rnd(); for(auto& v:wsa) v=rnd();
  std::vector<float> cent, rot, sa; loss(&cent,&rot,&sa);
  std::vector<float> gm(N*3), gq(N*4), gls(N*3), gc(B*F*3), gr(B*F*9), gsa(B*F), gv(B*V*3);
  emu::launch(dim3(1),dim3(32),0,[&]{ deform_bwd_kernel(means.data(), quats.data(), ls.data(), fid.data(), cent.data(), rot.data(), sa.data(), B, N, F, wm.data(), wq.data(), ws.data(), gm.data(), gq.data(), gls.data(), gc.data(), gr.data(), gsa.data()); });
  for(int i=0;i<B*F;++i) gsa[i]+=wsa[i];
  emu::launch(dim3(1),dim3(32),0,[&]{ frames_bwd_kernel(verts.data(), faces.data(), B, V, F, gc.data(), gr.data(), gsa.data(), gv.data()); });
  int fails=0;
  auto chk=[&](const char* nm, std::vector<float>& x, std::vector<float>& g){ float me=0, sc=1e-6; for(size_t i=0;i<x.size();++i){ float o=x[i]; x[i]=o+1e-3f; double lp=loss(); x[i]=o-1e-3f; double lm=loss(); x[i]=o; double fd=(lp-lm)/2e-3; me=std::max(me,(float)std::fabs(fd-g[i])); sc=std::max(sc,(float)std::fabs(fd)); }
    bool ok=me<=2e-2*sc+1e-3; if(!ok) fails++; printf("  %-10s maxerr %.3e scale %.3e %s\n",nm,me,sc,ok?"ok":"FAIL"); };
  chk("vertices",verts,gv); chk("means",means,gm); chk("quats",quats,gq); chk("log_scales",ls,gls);
  printf("fails=%d\n",fails); return fails; }
