#define RG_EMULATE 1
#include "cuda_runtime.h"
#include "../rasterize.cu"
#include <cstdio>
#include <random>
using namespace rgc;
std::mt19937 rng(5);
float rnd(float a=-1,float b=1){ return std::uniform_real_distribution<float>(a,b)(rng); }
const int C=2, N=NN, CH=4, W=21, H=18, TS=8, TW=3, TH=3;
std::vector<float> m2(C*N*2), con(C*N*3), col(C*N*CH), op(C*N), bg(C*CH), dep(C*N);
std::vector<int> offs, fids;
std::vector<float> rc(C*H*W*CH), ra(C*H*W); std::vector<int> last(C*H*W);
std::vector<float> wc(C*H*W*CH), wa(C*H*W);
RasterArgs args(){ RasterArgs a; a.C=C; a.N=N; a.CH=CH; a.width=W; a.height=H; a.tile_size=TS; a.tile_w=TW; a.tile_h=TH; a.n_isects=fids.size();
  a.means2d=m2.data(); a.conics=con.data(); a.colors=col.data(); a.opacities=op.data(); a.backgrounds=bg.data(); a.offsets=offs.data(); a.flatten_ids=fids.data();
  a.render_colors=rc.data(); a.render_alphas=ra.data(); a.last_ids=last.data(); return a; }
double fwd(){ RasterArgs a=args(); emu::launch(dim3(TW,TH,C), dim3(TS,TS), sizeof(SharedG)*TS*TS, [a]{ rasterize_fwd_kernel<CH>(a); });
  double L=0; for(size_t i=0;i<rc.size();++i) L+=wc[i]*rc[i]; for(size_t i=0;i<ra.size();++i) L+=wa[i]*ra[i]; return L; }
int main(){
  std::vector<float> cov(C*N*3);
  for(int i=0;i<C*N;++i){ m2[2*i]=rnd(0,W); m2[2*i+1]=rnd(0,H); float a=rnd(2,12), c=rnd(2,12), b=rnd(-1,1)*0.6f*sqrtf(a*c); float det=a*c-b*b; con[3*i]=c/det; con[3*i+1]=-b/det; con[3*i+2]=a/det; cov[3*i]=a; cov[3*i+2]=c;
    for(int k=0;k<CH;++k) col[CH*i+k]=rnd(0,1); op[i]=rnd(0.3f,0.98f); dep[i]=rnd(1,5); }
  for(auto& v:bg) v=rnd(0,1); for(auto& v:wc) v=rnd(); for(auto& v:wa) v=rnd();
  // isect (gsplat tile rule), sorted by camera, tile, depth
  struct E{long long key; float d; int id;}; std::vector<E> es;
  for(int c=0;c<C;++c) for(int n=0;n<N;++n){ int i=c*N+n; int rx=(int)ceilf(3.33f*sqrtf(cov[3*i])), ry=(int)ceilf(3.33f*sqrtf(cov[3*i+2]));
    int x0=std::min(std::max(0,(int)floorf((m2[2*i]-rx)/TS)),TW), x1=std::min(std::max(0,(int)ceilf((m2[2*i]+rx)/TS)),TW);
    int y0=std::min(std::max(0,(int)floorf((m2[2*i+1]-ry)/TS)),TH), y1=std::min(std::max(0,(int)ceilf((m2[2*i+1]+ry)/TS)),TH);
    for(int ty=y0;ty<y1;++ty) for(int tx=x0;tx<x1;++tx) es.push_back({(long long)c*TW*TH+ty*TW+tx, dep[i], i}); }
  std::sort(es.begin(),es.end(),[](const E&a,const E&b){ return a.key!=b.key? a.key<b.key : a.d<b.d; });
  offs.assign(C*TW*TH,0); for(int t=0;t<C*TW*TH;++t){ int k=0; while(k<(int)es.size() && es[k].key<t) ++k; offs[t]=k; }
  for(auto& e:es) fids.push_back(e.id);
  printf("n_isects %zu\n", fids.size());
  // forward sanity: naive per-pixel blend over the tile's list
  double L0=fwd(); double maxdiff=0;
  for(int c=0;c<C;++c) for(int y=0;y<H;++y) for(int x=0;x<W;++x){ int t=c*TW*TH+(y/TS)*TW+(x/TS); int s=offs[t], e=(t+1<C*TW*TH)?offs[t+1]:fids.size();
    float T=1, acc[CH]={0}; for(int k=s;k<e;++k){ int g=fids[k]; float dx=m2[2*g]-(x+.5f), dy=m2[2*g+1]-(y+.5f); float sg=0.5f*(con[3*g]*dx*dx+con[3*g+2]*dy*dy)+con[3*g+1]*dx*dy; float al=std::min(0.999f, op[g]*expf(-sg)); if(sg<0||al<1.f/255) continue; float nT=T*(1-al); if(nT<=1e-4f) break; for(int q=0;q<CH;++q) acc[q]+=col[CH*g+q]*al*T; T=nT; }
    long long p=((long long)c*H+y)*W+x; for(int q=0;q<CH;++q) maxdiff=std::max(maxdiff,(double)std::fabs(acc[q]+T*bg[c*CH+q]-rc[p*CH+q])); maxdiff=std::max(maxdiff,(double)std::fabs(1-T-ra[p])); }
  printf("forward vs naive blend: max diff %.3e\n", maxdiff);
  // backward
  std::vector<float> vm(m2.size()), vabs(m2.size()), vc(con.size()), vcol(col.size()), vop(op.size());
  RasterGrads g; g.v_render_colors=wc.data(); g.v_render_alphas=wa.data(); g.v_means2d=vm.data(); g.v_means2d_abs=vabs.data(); g.v_conics=vc.data(); g.v_colors=vcol.data(); g.v_opacities=vop.data();
  RasterArgs a=args(); emu::launch(dim3(TW,TH,C), dim3(TS,TS), (sizeof(SharedG)+sizeof(float)*CH)*TS*TS, [a,g]{ rasterize_bwd_kernel<CH>(a,g); });
  int fails=0, fd_bad=0;  // FD outliers come from alpha-threshold jumps: informative only

  // naive per-pixel backward (no batching / warps / shared memory)
  { std::vector<double> nm(m2.size()), nc(con.size()), ncol(col.size()), nop(op.size());
    for(int c=0;c<C;++c) for(int y=0;y<H;++y) for(int x=0;x<W;++x){ int t=c*TW*TH+(y/TS)*TW+(x/TS); int s=offs[t], e=(t+1<C*TW*TH)?offs[t+1]:fids.size();
      long long p=((long long)c*H+y)*W+x; std::vector<int> used; float T=1; for(int k=s;k<e;++k){ int gg=fids[k]; float dx=m2[2*gg]-(x+.5f), dy=m2[2*gg+1]-(y+.5f); float sg=0.5f*(con[3*gg]*dx*dx+con[3*gg+2]*dy*dy)+con[3*gg+1]*dx*dy; float al=std::min(0.999f, op[gg]*expf(-sg)); if(sg<0||al<1.f/255) continue; float nT=T*(1-al); if(nT<=1e-4f) break; used.push_back(gg); T=nT; }
      // reverse: dL/dalpha_i = sum_q w_q (c_iq T_i - S_iq/(1-a_i)) + ... where S = contribution behind incl. background
      double Tf=T; double Ti=Tf; std::vector<double> buf(CH,0.0);
      for(int u=(int)used.size()-1;u>=0;--u){ int gg=used[u]; double dx=m2[2*gg]-(x+.5), dy=m2[2*gg+1]-(y+.5); double sg=0.5*(con[3*gg]*dx*dx+con[3*gg+2]*dy*dy)+con[3*gg+1]*dx*dy; double vis=exp(-sg); double al=std::min(0.999, op[gg]*vis);
        Ti/= (1-al); double va=0; for(int q=0;q<CH;++q){ ncol[CH*gg+q]+=al*Ti*wc[p*CH+q]; va+=(col[CH*gg+q]*Ti - buf[q]/(1-al))*wc[p*CH+q]; va-= Tf/(1-al)*bg[c*CH+q]*wc[p*CH+q]; }
        va+= Tf/(1-al)*wa[p];
        if(op[gg]*vis<=0.999){ double vs=-op[gg]*vis*va; nc[3*gg]+=0.5*vs*dx*dx; nc[3*gg+1]+=vs*dx*dy; nc[3*gg+2]+=0.5*vs*dy*dy; nm[2*gg]+=vs*(con[3*gg]*dx+con[3*gg+1]*dy); nm[2*gg+1]+=vs*(con[3*gg+1]*dx+con[3*gg+2]*dy); nop[gg]+=vis*va; }
        for(int q=0;q<CH;++q) buf[q]+=col[CH*gg+q]*al*Ti; } }
    auto cmp=[&](const char* nmx, std::vector<double>& ref, std::vector<float>& got){ double me=0, sc=1e-9; for(size_t i=0;i<ref.size();++i){ me=std::max(me,std::fabs(ref[i]-got[i])); sc=std::max(sc,std::fabs(ref[i])); } bool ok=me<=1e-3*sc; if(!ok) fails++; printf("  naive %-10s maxerr %.3e scale %.3e %s\n", nmx, me, sc, ok?"ok":"FAIL"); };
    cmp("means2d",nm,vm); cmp("conics",nc,vc); cmp("colors",ncol,vcol); cmp("opacities",nop,vop);
    // abs grad >= |grad|
    bool absok=true; for(size_t i=0;i<vm.size();++i) if(vabs[i]+1e-5<std::fabs(vm[i])) absok=false; printf("  abs grad bound %s\n", absok?"ok":"FAIL"); if(!absok) fails++; }
  auto chk=[&](const char* nm, std::vector<float>& x, std::vector<float>& ga, float eps){ float maxe=0, sc=1e-6; int bad=0; for(size_t i0=0;i0<30;++i0){ size_t i=(i0*7919)%x.size(); float o=x[i]; x[i]=o+eps; double lp=fwd(); x[i]=o-eps; double lm=fwd(); x[i]=o; double fd=(lp-lm)/(2*eps); float e=std::fabs(fd-ga[i]); if(e>maxe) maxe=e; if(e>3e-2*std::fabs(fd)+2e-3) { bad++; if(bad<=6) printf("    %s[%zu] fd %.5f an %.5f\n",nm,i,fd,ga[i]); } sc=std::max(sc,(float)std::fabs(fd)); }
    bool ok=bad<=2; printf("    bad %d/%zu\n",bad,x.size()); if(!ok) fd_bad++; printf("  %-10s maxerr %.3e scale %.3e %s\n",nm,maxe,sc,ok?"ok":"FAIL"); };
  chk("means2d", m2, vm, 1e-3f); chk("conics", con, vc, 3e-4f); chk("colors", col, vcol, 1e-2f); chk("opacities", op, vop, 1e-3f);
  fwd(); printf("fails=%d (finite-difference outlier groups: %d)\n", fails, fd_bad); return fails; }
