#include "rg/math.h"
#include <cstdio>
#include <random>
#include <functional>
#include <vector>
using namespace rg;
std::mt19937 rng(1);
float rnd(float a=-1,float b=1){ return std::uniform_real_distribution<float>(a,b)(rng); }
int fails=0;
// check: analytic grad vs fd for scalar L(x) over vector x
void check(const char* name, std::vector<float> x, std::function<float(const std::vector<float>&)> L, std::vector<float> g, float eps=1e-3f, float tol=2e-2f){
  float maxerr=0, maxg=1e-6;
  for(size_t i=0;i<x.size();++i){ auto xp=x, xm=x; xp[i]+=eps; xm[i]-=eps; double fd=(double(L(xp))-double(L(xm)))/(2*eps);
    maxerr=std::max(maxerr,(float)std::fabs(fd-g[i])); maxg=std::max(maxg,(float)std::fabs(fd)); }
  bool ok = maxerr <= tol*maxg + 1e-3f;
  if(!ok) fails++;
  printf("%-28s maxerr %.3e scale %.3e %s\n", name, maxerr, maxg, ok?"ok":"FAIL");
}
int main(){
  for(int trial=0;trial<3;++trial){
  // triangle frame
  std::vector<float> x(9); for(auto&v:x) v=rnd();
  float wT[3],wR[9],ws; for(auto&v:wT)v=rnd(); for(auto&v:wR)v=rnd(); ws=rnd();
  auto Lf=[&](const std::vector<float>& p){ V3 T; M3 R; float s; triangle_frame(load3(&p[0]),load3(&p[3]),load3(&p[6]),T,R,s);
    float l=wT[0]*T.x+wT[1]*T.y+wT[2]*T.z+ws*s; for(int k=0;k<9;++k) l+=wR[k]*R.m[k]; return l; };
  V3 g0,g1,g2; triangle_frame_vjp(load3(&x[0]),load3(&x[3]),load3(&x[6]),{wT[0],wT[1],wT[2]},load33(wR),ws,g0,g1,g2);
  check("triangle_frame", x, Lf, {g0.x,g0.y,g0.z,g1.x,g1.y,g1.z,g2.x,g2.y,g2.z});
  // rotmat_to_quat, over rotation from a random frame, perturbing R directly (any matrix)
  { V3 T; M3 R; float s; triangle_frame(load3(&x[0]),load3(&x[3]),load3(&x[6]),T,R,s);
    std::vector<float> r(R.m,R.m+9); float wq[4]; for(auto&v:wq)v=rnd();
    auto Lq=[&](const std::vector<float>& p){ Q4 q=rotmat_to_quat(load33(p.data())); return wq[0]*q.w+wq[1]*q.x+wq[2]*q.y+wq[3]*q.z; };
    M3 gq=rotmat_to_quat_vjp(R,{wq[0],wq[1],wq[2],wq[3]}); check("rotmat_to_quat", r, Lq, std::vector<float>(gq.m,gq.m+9), 1e-4f);
    // R(quat(R)) == R
    M3 R2=quat_to_rotmat(rotmat_to_quat(R)); float e=0; for(int k=0;k<9;++k) e=std::max(e,std::fabs(R2.m[k]-R.m[k])); printf("quat roundtrip err %.2e\n", e); if(e>1e-5) fails++;
  }
  // quat normalize + to rotmat
  { std::vector<float> q(4); for(auto&v:q)v=rnd(); float w[9]; for(auto&v:w)v=rnd();
    auto L=[&](const std::vector<float>& p){ M3 R=quat_to_rotmat(quat_normalize({p[0],p[1],p[2],p[3]})); float l=0; for(int k=0;k<9;++k) l+=w[k]*R.m[k]; return l;};
    Q4 qq{q[0],q[1],q[2],q[3]}; Q4 g=quat_normalize_vjp(qq, quat_to_rotmat_vjp(quat_normalize(qq), load33(w)));
    check("quat->rotmat", q, L, {g.w,g.x,g.y,g.z}); }
  // quat mul
  { std::vector<float> pq(8); for(auto&v:pq)v=rnd(); float w[4]; for(auto&v:w)v=rnd();
    auto L=[&](const std::vector<float>& p){ Q4 r=quat_mul({p[0],p[1],p[2],p[3]},{p[4],p[5],p[6],p[7]}); return w[0]*r.w+w[1]*r.x+w[2]*r.y+w[3]*r.z;};
    Q4 vp,vq; quat_mul_vjp({pq[0],pq[1],pq[2],pq[3]},{pq[4],pq[5],pq[6],pq[7]},{w[0],w[1],w[2],w[3]},vp,vq);
    check("quat_mul", pq, L, {vp.w,vp.x,vp.y,vp.z,vq.w,vq.x,vq.y,vq.z});
    // R(p*q) = R(p)R(q)
    Q4 p=quat_normalize({pq[0],pq[1],pq[2],pq[3]}), q=quat_normalize({pq[4],pq[5],pq[6],pq[7]});
    M3 A=quat_to_rotmat(quat_mul(p,q)), B=mul(quat_to_rotmat(p),quat_to_rotmat(q)); float e=0; for(int k=0;k<9;++k) e=std::max(e,std::fabs(A.m[k]-B.m[k])); printf("quat mul composition err %.2e\n",e); if(e>1e-5) fails++; }
  // covariance
  { std::vector<float> p(12); for(auto&v:p)v=rnd(); float w[9]; for(auto&v:w)v=rnd();
    auto L=[&](const std::vector<float>& a){ M3 S=covariance(load33(a.data()),{a[9],a[10],a[11]}); float l=0; for(int k=0;k<9;++k) l+=w[k]*S.m[k]; return l;};
    M3 gR; V3 gs; covariance_vjp(load33(p.data()),{p[9],p[10],p[11]},load33(w),gR,gs);
    std::vector<float> g(gR.m,gR.m+9); g.push_back(gs.x); g.push_back(gs.y); g.push_back(gs.z); check("covariance", p, L, g); }
  // persp proj (unclipped and clipped)
  for(int clip=0;clip<2;++clip){ Cam c; c.fx=300; c.fy=320; c.cx=130; c.cy=110; c.width=256; c.height=240;
    std::vector<float> p={rnd()*0.5f + (clip?3.f:0.f), rnd()*0.5f, 2.f+rnd(0,1)};
    for(int k=0;k<6;++k) p.push_back(rnd()*0.01f);
    auto symC=[&](const std::vector<float>& a){ M3 C; C(0,0)=a[3]+0.02f; C(1,1)=a[4]+0.02f; C(2,2)=a[5]+0.02f; C(0,1)=C(1,0)=a[6]; C(0,2)=C(2,0)=a[7]; C(1,2)=C(2,1)=a[8]; return C; };
    float w[5]; for(auto&v:w)v=rnd(); w[2]*=1e-3f; w[3]*=1e-3f; w[4]*=1e-3f;
    auto L=[&](const std::vector<float>& a){ float mx,my,ca,cb,cc; persp_proj({a[0],a[1],a[2]},symC(a),c,mx,my,ca,cb,cc); return w[0]*mx+w[1]*my+w[2]*ca+w[3]*cb+w[4]*cc;};
    V3 gp; M3 gc; persp_proj_vjp({p[0],p[1],p[2]},symC(p),c,w[0],w[1],w[2],w[3],w[4],gp,gc);
    std::vector<float> g={gp.x,gp.y,gp.z, gc(0,0),gc(1,1),gc(2,2), gc(0,1)+gc(1,0), gc(0,2)+gc(2,0), gc(1,2)+gc(2,1)};
    check(clip?"persp_proj (clipped)":"persp_proj", p, L, g, 1e-4f, 3e-2f); }
  // SH dir
  for(int deg=0;deg<=3;++deg){ std::vector<float> d={rnd(),rnd(),rnd()}; float w[16]; for(auto&v:w)v=rnd();
    auto L=[&](const std::vector<float>& a){ V3 dd=(1.f/safe_norm3({a[0],a[1],a[2]}))*V3{a[0],a[1],a[2]}; float Y[16]; sh_basis(deg,dd,Y); float l=0; for(int k=0;k<(deg+1)*(deg+1);++k) l+=w[k]*Y[k]; return l;};
    V3 dir{d[0],d[1],d[2]}; V3 u=(1.f/safe_norm3(dir))*dir; V3 g=normalize_vjp(dir, sh_basis_dir_vjp(deg,u,w));
    char nm[32]; snprintf(nm,32,"sh dir deg %d",deg); check(nm, d, L, {g.x,g.y,g.z}); }
  }
  printf("fails=%d\n", fails); return fails!=0;
}
