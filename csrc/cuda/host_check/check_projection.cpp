#include "rg/projection.h"
#include <cstdio>
#include <random>
#include <vector>
#include <functional>
using namespace rg;
std::mt19937 rng(3);
float rnd(float a=-1,float b=1){ return std::uniform_real_distribution<float>(a,b)(rng); }
int fails=0;
struct Scene { std::vector<float> means, quats, scales, sh, cent, rot, sa, vm, K; std::vector<int> fid; };
int C=2,N=5,F=3,Bp=2, deg=3, KK=16;
std::vector<float> W2,Wd,Wc,Wcol;
ProjArgs mk(Scene& s, bool rigged, std::vector<int>& radii, std::vector<float>& m2, std::vector<float>& d, std::vector<float>& co, std::vector<float>& col){
  ProjArgs a; a.C=C; a.N=N; a.means=s.means.data(); a.quats=s.quats.data(); a.scales=s.scales.data();
  if(rigged){ a.face_ids=s.fid.data(); a.centroids=s.cent.data(); a.rotations=s.rot.data(); a.sqrt_areas=s.sa.data(); a.F=F; a.cams_per_pose=C/Bp; }
  a.viewmats=s.vm.data(); a.Ks=s.K.data(); a.width=64; a.height=48; a.sh_degree=deg; a.K=KK; a.sh=s.sh.data();
  radii.assign(C*N*2,0); m2.assign(C*N*2,0); d.assign(C*N,0); co.assign(C*N*3,0); col.assign(C*N*3,0);
  a.radii=radii.data(); a.means2d=m2.data(); a.depths=d.data(); a.conics=co.data(); a.colors=col.data(); return a;
}
double loss(Scene& s, bool rigged, std::vector<int>* rout=nullptr){
  std::vector<int> r; std::vector<float> m2,d,co,col; ProjArgs a=mk(s,rigged,r,m2,d,co,col);
  for(long long i=0;i<C*N;++i){ if(rigged) projection_fwd_one<true>(a,i); else projection_fwd_one<false>(a,i);}
  double L=0; for(long long i=0;i<C*N;++i){ if(r[2*i]<=0) continue; L+=W2[2*i]*m2[2*i]+W2[2*i+1]*m2[2*i+1]+Wd[i]*d[i];
    for(int k=0;k<3;++k) L+=Wc[3*i+k]*co[3*i+k]+Wcol[3*i+k]*col[3*i+k]; }
  if(rout) *rout=r; return L;
}
void run(bool rigged){
  Scene s;
  for(int n=0;n<N;++n){ for(int k=0;k<3;++k) s.means.push_back(rigged? rnd()*0.3f : rnd()*0.5f); for(int k=0;k<4;++k) s.quats.push_back(rnd()); for(int k=0;k<3;++k) s.scales.push_back(rigged? rnd(-2.5f,-1.5f): rnd(0.05f,0.15f)); s.fid.push_back(n%F);
    for(int k=0;k<KK*3;++k) s.sh.push_back(rnd()*0.3f); }
  for(int b=0;b<Bp;++b) for(int f=0;f<F;++f){ V3 v0{rnd(),rnd(),rnd()*0.2f}, v1{rnd(),rnd(),rnd()*0.2f}, v2{rnd(),rnd(),rnd()*0.2f}; V3 T; M3 R; float sa; triangle_frame(v0,v1,v2,T,R,sa);
    s.cent.push_back(T.x*0.3f); s.cent.push_back(T.y*0.3f); s.cent.push_back(T.z*0.3f); for(int k=0;k<9;++k) s.rot.push_back(R.m[k]); s.sa.push_back(sa+0.3f); }
  for(int c=0;c<C;++c){ float a=0.3f*c; float vm[16]={cosf(a),0,-sinf(a),0.1f, 0,1,0,-0.05f, sinf(a),0,cosf(a),3.f, 0,0,0,1}; s.vm.insert(s.vm.end(),vm,vm+16);
    float K[9]={80,0,32.3f, 0,85,23.7f, 0,0,1}; s.K.insert(s.K.end(),K,K+9); }
  W2.clear();Wd.clear();Wc.clear();Wcol.clear();
  for(int i=0;i<C*N;++i){ W2.push_back(rnd()); W2.push_back(rnd()); Wd.push_back(rnd()); for(int k=0;k<3;++k){ Wc.push_back(rnd()*10); Wcol.push_back(rnd()); } }
  std::vector<int> r; double L0=loss(s,rigged,&r); int vis=0; for(int i=0;i<C*N;++i) vis+= r[2*i]>0; printf("%s: visible %d/%d L=%.4f\n", rigged?"rigged":"plain", vis, C*N, L0);
  // analytic
  std::vector<int> rr; std::vector<float> m2,d,co,col; ProjArgs a=mk(s,rigged,rr,m2,d,co,col);
  for(long long i=0;i<C*N;++i){ if(rigged) projection_fwd_one<true>(a,i); else projection_fwd_one<false>(a,i);}
  std::vector<float> gm(s.means.size()), gq(s.quats.size()), gs(s.scales.size()), gsh(s.sh.size()), gc(s.cent.size()), gr(s.rot.size()), gsa(s.sa.size());
  ProjGrads g; g.v_means2d=W2.data(); g.v_depths=Wd.data(); g.v_conics=Wc.data(); g.v_colors=Wcol.data(); g.v_means=gm.data(); g.v_quats=gq.data(); g.v_scales=gs.data(); g.v_sh=gsh.data(); g.v_centroids=gc.data(); g.v_rotations=gr.data(); g.v_sqrt_areas=gsa.data();
  for(long long i=0;i<C*N;++i){ if(rigged) projection_bwd_one<true>(a,g,i); else projection_bwd_one<false>(a,g,i);}
  auto chk=[&](const char* nm, std::vector<float>& x, std::vector<float>& ga){ float maxe=0, sc=1e-6; for(size_t i=0;i<x.size();++i){ float o=x[i]; float e=1e-3f*std::max(1.f,std::fabs(o)); x[i]=o+e; double lp=loss(s,rigged); x[i]=o-e; double lm=loss(s,rigged); x[i]=o; double fd=(lp-lm)/(2*e); maxe=std::max(maxe,(float)std::fabs(fd-ga[i])); sc=std::max(sc,(float)std::fabs(fd)); }
    bool ok=maxe<=3e-2*sc+1e-3; if(!ok) fails++; printf("  %-12s maxerr %.3e scale %.3e %s\n",nm,maxe,sc,ok?"ok":"FAIL"); };
  chk("means",s.means,gm); chk("quats",s.quats,gq); chk("scales",s.scales,gs); chk("sh",s.sh,gsh);
  if(rigged){ chk("centroids",s.cent,gc); chk("rotations",s.rot,gr); chk("sqrt_areas",s.sa,gsa); }
}
// Opacity-aware radii (tight_tiles): max(1, ceil(min(3.33, sqrt(2 ln(255 o))) sigma)), o < 1/255
// culled, the 3.33 sigma radii without opacities; the rest of the projection unchanged.
void tight_radii(){
  Scene s;
  for(int n=0;n<N;++n){ for(int k=0;k<3;++k) s.means.push_back(rnd()*0.5f); for(int k=0;k<4;++k) s.quats.push_back(rnd()); for(int k=0;k<3;++k) s.scales.push_back(rnd(0.05f,0.15f)); for(int k=0;k<KK*3;++k) s.sh.push_back(0.f); }
  for(int c=0;c<C;++c){ float vm[16]={1,0,0,0, 0,1,0,0, 0,0,1,3.f, 0,0,0,1}; s.vm.insert(s.vm.end(),vm,vm+16); float K[9]={80,0,32.3f, 0,85,23.7f, 0,0,1}; s.K.insert(s.K.end(),K,K+9); }
  std::vector<float> op={0.9f, 0.2f, 0.003f, 1.f/255.f, 0.5f};
  std::vector<int> r0, r1; std::vector<float> m2,d,co,col;
  ProjArgs a=mk(s,false,r0,m2,d,co,col); a.sh_degree=-1;
  for(long long i=0;i<C*N;++i) projection_fwd_one<false>(a,i);
  std::vector<float> co0=co;
  ProjArgs b=mk(s,false,r1,m2,d,co,col); b.sh_degree=-1; b.opacities=op.data(); b.tight_tiles=true;
  for(long long i=0;i<C*N;++i) projection_fwd_one<false>(b,i);
  bool ok=true;
  for(long long i=0;i<C*N;++i){ const float o=op[i%N];
    if(o<kAlphaMin){ ok&= r1[2*i]==0 && r1[2*i+1]==0; continue; }
    if(r0[2*i]<=0){ ok&= r1[2*i]==0; continue; }
    const double A=co0[3*i], B=co0[3*i+1], Cc=co0[3*i+2], det=A*Cc-B*B;
    const double e=std::min(3.33, std::sqrt(2.0*std::log(o/(double)kAlphaMin)));
    for(int k=0;k<2;++k){ const double var=(k==0?Cc:A)/det; const double want=std::max(1.0, std::ceil(e*std::sqrt(var)));
      ok&= std::fabs(r1[2*i+k]-want)<=1 && r1[2*i+k]<=r0[2*i+k]; }
    for(int k=0;k<3;++k) ok&= co[3*i+k]==co0[3*i+k]; }
  if(!ok) fails++;
  printf("opacity-aware radii %s\n", ok?"ok":"FAIL");
}
int main(){ run(false); run(true); tight_radii(); printf("fails=%d\n",fails); return fails!=0; }
