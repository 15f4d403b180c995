// The rigged avatar as a Spark splat generator: every Gaussian is rebuilt on the GPU, each frame
// the mesh moves, from its triangle-local parameters and the posed vertices.
//
// The math is rigged_gaussians' (docs/CONTRACTS.md, csrc/include/rg/frames.h), per Gaussian n
// bound to face f = (v0, v1, v2):
//   T = (v0 + v1 + v2) / 3;  e = v1 - v0;  c = e x (v2 - v0);  t = e/|e|;  n = c/|c|;  b = t x n
//   R = [t | n | b] (columns);  sqrt(S) = sqrt(max(|c|/2, 1e-12));  |x| = sqrt(max(x.x, 1e-24))
//   mu' = sqrt(S) R mu + T;   q' = quat(R) q;   s' = sqrt(S) exp(log s)
// and the colour is gsplat's SH, max(sum_k c_k Y_k(d) + 0.5, 0) with d = mu' - camera position,
// evaluated after the deformation (world-space directions, as rigged_gaussians.render_rigged).

import * as THREE from "three";
import { SplatGenerator, dyno } from "@sparkjsdev/spark";

/** Texels per row of every data texture (a power of two: index -> (i & mask, i >> shift)). */
export const TEX_WIDTH = 2048;
const TEX_SHIFT = 11;

function floatTexture(data, texels) {
  const height = Math.max(1, Math.ceil(texels / TEX_WIDTH));
  const buf = new Float32Array(TEX_WIDTH * height * 4);
  buf.set(data.subarray(0, Math.min(data.length, buf.length)));
  const tex = new THREE.DataTexture(buf, TEX_WIDTH, height, THREE.RGBAFormat, THREE.FloatType);
  tex.internalFormat = "RGBA32F";
  tex.needsUpdate = true;
  return tex;
}

function uintTexture(data, texels) {
  const height = Math.max(1, Math.ceil(texels / TEX_WIDTH));
  const buf = new Uint32Array(TEX_WIDTH * height * 4);
  buf.set(data);
  const tex = new THREE.DataTexture(buf, TEX_WIDTH, height, THREE.RGBAIntegerFormat, THREE.UnsignedIntType);
  tex.internalFormat = "RGBA32UI";
  tex.needsUpdate = true;
  return tex;
}

const GLSL = /* glsl */ `
ivec2 hsTexel(int i) { return ivec2(i & ${TEX_WIDTH - 1}, i >> ${TEX_SHIFT}); }

float hsNorm(vec3 x) { return sqrt(max(dot(x, x), 1e-24)); }

// quaternion (x, y, z, w) of a rotation matrix (columns m[0..2])
vec4 hsMatToQuat(mat3 m) {
  float r00 = m[0][0], r11 = m[1][1], r22 = m[2][2];
  float r01 = m[1][0], r10 = m[0][1], r02 = m[2][0], r20 = m[0][2], r12 = m[2][1], r21 = m[1][2];
  float tr = r00 + r11 + r22;
  vec4 q;
  if (tr > 0.0) {
    float s = 2.0 * sqrt(tr + 1.0);
    q = vec4((r21 - r12) / s, (r02 - r20) / s, (r10 - r01) / s, 0.25 * s);
  } else if (r00 > r11 && r00 > r22) {
    float s = 2.0 * sqrt(1.0 + r00 - r11 - r22);
    q = vec4(0.25 * s, (r01 + r10) / s, (r02 + r20) / s, (r21 - r12) / s);
  } else if (r11 > r22) {
    float s = 2.0 * sqrt(1.0 + r11 - r00 - r22);
    q = vec4((r01 + r10) / s, 0.25 * s, (r12 + r21) / s, (r02 - r20) / s);
  } else {
    float s = 2.0 * sqrt(1.0 + r22 - r00 - r11);
    q = vec4((r02 + r20) / s, (r12 + r21) / s, 0.25 * s, (r10 - r01) / s);
  }
  return q;
}

vec4 hsQuatMul(vec4 a, vec4 b) {
  return vec4(
    a.w * b.x + a.x * b.w + a.y * b.z - a.z * b.y,
    a.w * b.y - a.x * b.z + a.y * b.w + a.z * b.x,
    a.w * b.z + a.x * b.y - a.y * b.x + a.z * b.w,
    a.w * b.w - a.x * b.x - a.y * b.y - a.z * b.z);
}

vec3 hsVertex(sampler2D verts, uint i) { return texelFetch(verts, hsTexel(int(i)), 0).xyz; }

// gsplat's real SH basis (constants and signs) of the unit direction d, coefficients from texels
// base .. base + numSh - 1 of the sh texture.
vec3 hsShColor(sampler2D sh, int base, int numSh, vec3 d) {
  vec3 c = 0.28209479177387814 * texelFetch(sh, hsTexel(base), 0).xyz;
  if (numSh > 1) {
    float x = d.x, y = d.y, z = d.z;
    c += -0.4886025119029199 * y * texelFetch(sh, hsTexel(base + 1), 0).xyz;
    c += 0.4886025119029199 * z * texelFetch(sh, hsTexel(base + 2), 0).xyz;
    c += -0.4886025119029199 * x * texelFetch(sh, hsTexel(base + 3), 0).xyz;
    if (numSh > 4) {
      float z2 = z * z, fc1 = x * x - y * y, fs1 = 2.0 * x * y;
      c += 0.5462742152960395 * fs1 * texelFetch(sh, hsTexel(base + 4), 0).xyz;
      c += -1.092548430592079 * z * y * texelFetch(sh, hsTexel(base + 5), 0).xyz;
      c += (0.9461746957575601 * z2 - 0.3153915652525201) * texelFetch(sh, hsTexel(base + 6), 0).xyz;
      c += -1.092548430592079 * z * x * texelFetch(sh, hsTexel(base + 7), 0).xyz;
      c += 0.5462742152960395 * fc1 * texelFetch(sh, hsTexel(base + 8), 0).xyz;
      if (numSh > 9) {
        float t0 = -2.285228997322329 * z2 + 0.4570457994644658, t1 = 1.445305721320277 * z;
        float fc2 = x * fc1 - y * fs1, fs2 = x * fs1 + y * fc1;
        c += -0.5900435899266435 * fs2 * texelFetch(sh, hsTexel(base + 9), 0).xyz;
        c += t1 * fs1 * texelFetch(sh, hsTexel(base + 10), 0).xyz;
        c += t0 * y * texelFetch(sh, hsTexel(base + 11), 0).xyz;
        c += z * (1.865881662950577 * z2 - 1.119528997770346) * texelFetch(sh, hsTexel(base + 12), 0).xyz;
        c += t0 * x * texelFetch(sh, hsTexel(base + 13), 0).xyz;
        c += t1 * fc1 * texelFetch(sh, hsTexel(base + 14), 0).xyz;
        c += -0.5900435899266435 * fc2 * texelFetch(sh, hsTexel(base + 15), 0).xyz;
      }
    }
  }
  return max(c + 0.5, 0.0);
}
`;

/**
 * The avatar's Gaussians as a Spark SplatGenerator.
 *
 * @param {object} g  arrays of the avatar: means [N*3], quats [N*4] (wxyz), logScales [N*3],
 *   opacities [N] (0..1), faceIds [N], sh [N*K*3], shDegree, faces [F*3], vertices [V*3].
 */
export class RiggedSplats {
  constructor(g) {
    const N = g.opacities.length;
    const K = (g.shDegree + 1) * (g.shDegree + 1);
    this.numSplats = N;
    this.numVertices = g.vertices.length / 3;
    this.shDegree = g.shDegree;

    const splat = new Float32Array(N * 12);
    for (let i = 0; i < N; i++) {
      const o = 12 * i;
      splat[o] = g.means[3 * i];
      splat[o + 1] = g.means[3 * i + 1];
      splat[o + 2] = g.means[3 * i + 2];
      splat[o + 3] = g.faceIds[i]; // exact as a float below 2^24 faces
      const w = g.quats[4 * i], x = g.quats[4 * i + 1], y = g.quats[4 * i + 2], z = g.quats[4 * i + 3];
      const inv = 1 / Math.max(Math.hypot(w, x, y, z), 1e-12);
      splat[o + 4] = x * inv;
      splat[o + 5] = y * inv;
      splat[o + 6] = z * inv;
      splat[o + 7] = w * inv;
      splat[o + 8] = g.logScales[3 * i];
      splat[o + 9] = g.logScales[3 * i + 1];
      splat[o + 10] = g.logScales[3 * i + 2];
      splat[o + 11] = g.opacities[i];
    }
    const sh = new Float32Array(N * K * 4);
    for (let i = 0; i < N * K; i++) {
      sh[4 * i] = g.sh[3 * i];
      sh[4 * i + 1] = g.sh[3 * i + 1];
      sh[4 * i + 2] = g.sh[3 * i + 2];
    }
    const faces = new Uint32Array(g.faces.length / 3 * 4);
    for (let f = 0; f < g.faces.length / 3; f++) {
      faces[4 * f] = g.faces[3 * f];
      faces[4 * f + 1] = g.faces[3 * f + 1];
      faces[4 * f + 2] = g.faces[3 * f + 2];
    }
    this.vertexData = new Float32Array(Math.ceil(this.numVertices / TEX_WIDTH) * TEX_WIDTH * 4);
    this.verts = floatTexture(this.vertexData, this.numVertices);
    this.vertexData = this.verts.image.data;

    this.uVerts = dyno.dynoSampler2D(this.verts);
    this.uFaces = dyno.dynoUsampler2D(uintTexture(faces, faces.length / 4));
    this.uSplat = dyno.dynoSampler2D(floatTexture(splat, 3 * N));
    this.uSh = dyno.dynoSampler2D(floatTexture(sh, N * K));
    this.uCamera = dyno.dynoVec3(new THREE.Vector3());
    this.setVertices(g.vertices);

    const generator = new dyno.Dyno({
      inTypes: {
        index: "int", verts: "sampler2D", faces: "usampler2D", splat: "sampler2D", sh: "sampler2D",
        camera: "vec3",
      },
      outTypes: { gsplat: dyno.Gsplat },
      inputs: {
        verts: this.uVerts, faces: this.uFaces, splat: this.uSplat, sh: this.uSh, camera: this.uCamera,
      },
      globals: () => [dyno.defineGsplat, GLSL],
      statements: ({ inputs: i, outputs: o }) => [
        `{`,
        `  int n = ${i.index};`,
        `  vec4 s0 = texelFetch(${i.splat}, hsTexel(3 * n), 0);`,
        `  vec4 s1 = texelFetch(${i.splat}, hsTexel(3 * n + 1), 0);`,
        `  vec4 s2 = texelFetch(${i.splat}, hsTexel(3 * n + 2), 0);`,
        `  uvec4 f = texelFetch(${i.faces}, hsTexel(int(s0.w)), 0);`,
        `  vec3 v0 = hsVertex(${i.verts}, f.x), v1 = hsVertex(${i.verts}, f.y), v2 = hsVertex(${i.verts}, f.z);`,
        `  vec3 e = v1 - v0;`,
        `  vec3 c = cross(e, v2 - v0);`,
        `  vec3 t = e / hsNorm(e);`,
        `  float nc = hsNorm(c);`,
        `  vec3 nrm = c / nc;`,
        `  mat3 R = mat3(t, nrm, cross(t, nrm));`,
        `  float sa = sqrt(max(0.5 * nc, 1e-12));`,
        `  vec3 mu = (v0 + v1 + v2) * (1.0 / 3.0) + sa * (R * s0.xyz);`,
        `  ${o.gsplat}.center = mu;`,
        `  ${o.gsplat}.scales = sa * exp(s2.xyz);`,
        `  ${o.gsplat}.quaternion = normalize(hsQuatMul(hsMatToQuat(R), s1));`,
        `  vec3 dir = mu - ${i.camera};`,
        `  vec3 rgb = hsShColor(${i.sh}, n * ${K}, ${K}, dir / hsNorm(dir));`,
        `  ${o.gsplat}.rgba = vec4(rgb, s2.w);`,
        `  ${o.gsplat}.index = n;`,
        `  ${o.gsplat}.flags = GSPLAT_FLAG_ACTIVE;`,
        `}`,
      ],
    });

    const camPos = new THREE.Vector3();
    this.object = new SplatGenerator({
      numSplats: N,
      generator,
      update: ({ camera }) => {
        if (!camera || this.shDegree === 0) return;
        camera.getWorldPosition(camPos);
        if (!camPos.equals(this.uCamera.value)) {
          this.uCamera.value.copy(camPos);
          this.object.updateVersion();
        }
      },
    });
  }

  /** Upload posed vertices ``[V*3]`` (Float32Array); the Gaussians follow on the next frame. */
  setVertices(vertices) {
    const d = this.vertexData;
    for (let v = 0; v < this.numVertices; v++) {
      d[4 * v] = vertices[3 * v];
      d[4 * v + 1] = vertices[3 * v + 1];
      d[4 * v + 2] = vertices[3 * v + 2];
    }
    this.verts.needsUpdate = true;
    if (this.object) this.object.updateVersion();
  }
}
