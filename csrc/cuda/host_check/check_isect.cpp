#define RG_EMULATE 1
#include "cuda_runtime.h"
#include "../isect.cu"
#include <cstdio>
#include <random>
#include <map>
using namespace rgc;
std::mt19937 rng(9);
float rnd(float a,float b){ return std::uniform_real_distribution<float>(a,b)(rng); }
int main(){ int fails=0;
 for(int trial=0;trial<3;++trial){
  const int C=3, N=40, W=70, H=45, TS=16, TW=(W+TS-1)/TS, TH=(H+TS-1)/TS; long long total=(long long)C*N;
  std::vector<int> radii(total*2); std::vector<float> m2(total*2), dep(total);
  for(long long i=0;i<total;++i){ bool vis = rnd(0,1)<0.8f; radii[2*i]= vis? (int)rnd(1,30):0; radii[2*i+1]= vis? (int)rnd(1,30):0; m2[2*i]=rnd(-20,W+20); m2[2*i+1]=rnd(-20,H+20); dep[i]=rnd(0.1f,10); }
  if(trial==2) for(auto& r:radii) r=0;  // nothing visible
  std::vector<int> cnt(total);
  int bs=256; unsigned nb=(total+bs-1)/bs;
  emu::launch(dim3(nb),dim3(bs),0,[&]{ isect_count_kernel(radii.data(), m2.data(), total, TS, TW, TH, cnt.data()); });
  std::vector<long long> cum(total); long long s=0; for(long long i=0;i<total;++i){ s+=cnt[i]; cum[i]=s; }
  long long n=s; std::vector<long long> keys(n); std::vector<int> fids(n); int bits=tile_id_bits(TW,TH);
  if(n) emu::launch(dim3(nb),dim3(bs),0,[&]{ isect_fill_kernel(radii.data(), m2.data(), dep.data(), cum.data(), total, N, TS, TW, TH, bits, keys.data(), fids.data()); });
  std::vector<size_t> ord(n); for(size_t i=0;i<(size_t)n;++i) ord[i]=i; std::stable_sort(ord.begin(),ord.end(),[&](size_t a,size_t b){return keys[a]<keys[b];});
  std::vector<long long> sk(n); std::vector<int> sf(n); for(long long i=0;i<n;++i){ sk[i]=keys[ord[i]]; sf[i]=fids[ord[i]]; }
  long long ntot=(long long)C*TW*TH; std::vector<int> offs(ntot,-7);
  if(n) emu::launch(dim3((n+bs-1)/bs),dim3(bs),0,[&]{ isect_offset_kernel_cam(sk.data(), n, bits, (long long)TW*TH, ntot, offs.data()); }); else std::fill(offs.begin(),offs.end(),0);
  // brute force: for each camera/tile, the list of gaussians overlapping (gsplat rule), depth-sorted
  for(int c=0;c<C;++c) for(int t=0;t<TW*TH;++t){ int tx=t%TW, ty=t/TW; std::vector<std::pair<float,int>> ref;
    for(int k=0;k<N;++k){ long long i=(long long)c*N+k; if(radii[2*i]<=0&&radii[2*i+1]<=0) continue; float mx=m2[2*i], my=m2[2*i+1]; int rx=radii[2*i], ry=radii[2*i+1];
      int x0=std::min(std::max(0,(int)floorf((mx-rx)/TS)),TW), x1=std::min(std::max(0,(int)ceilf((mx+rx)/TS)),TW), y0=std::min(std::max(0,(int)floorf((my-ry)/TS)),TH), y1=std::min(std::max(0,(int)ceilf((my+ry)/TS)),TH);
      if(tx>=x0&&tx<x1&&ty>=y0&&ty<y1) ref.push_back({dep[i],(int)i}); }
    std::sort(ref.begin(),ref.end());
    long long tl=(long long)c*TW*TH+t; int st=offs[tl], en= tl+1<ntot? offs[tl+1] : (int)n;
    bool ok = (en-st)==(int)ref.size(); for(int k=0; ok && k<(int)ref.size(); ++k) ok = sf[st+k]==ref[k].second;
    if(!ok){ fails++; if(fails<5) printf("mismatch cam %d tile %d: got %d entries, want %zu\n",c,t,en-st,ref.size()); } }
  printf("trial %d: n_isects %lld tile_bits %d\n", trial, n, bits);
 }
 printf("fails=%d\n",fails); return fails; }
