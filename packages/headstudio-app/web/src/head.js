// The head model in the page, for exported folders that ship one (the open procedural head, or a
// FLAME head exported with --include-head-model): FLAME's linear blend skinning, as flame_core.lbs.
//   v = v_rest + sum_r c_r B_r + sum_i p_i P_i        (p: R_j - I of joints 1..J-1, row-major)
//   J = j_rest + sum_r c_r JB_r
//   A_0 = [R_0 | J_0 - R_0 J_0],  A_k = A_parent(k) o [R_k | J_k - R_k J_k]
//   v' = sum_j w_vj A_j(v) + translation
// v_rest and j_rest already carry the avatar's shape; the rows B_r are the slider expression
// components followed by one row per preset (its components beyond the sliders).

/**
 * 3x3 rotation (row-major Float64Array(9)) of an axis-angle vector r, as flame_core.rotations:
 * R = I + a K + b K^2 with K the cross-product matrix of r, a = sin(t)/t, b = (1 - cos t)/t^2.
 */
export function rodrigues(x, y, z) {
  const t2 = x * x + y * y + z * z;
  let a, b;
  if (t2 < 1e-8) {
    a = 1 - t2 / 6;
    b = 0.5 - t2 / 24;
  } else {
    const t = Math.sqrt(t2);
    a = Math.sin(t) / t;
    b = (1 - Math.cos(t)) / t2;
  }
  return Float64Array.of(
    1 + b * (x * x - t2), -a * z + b * x * y, a * y + b * x * z,
    a * z + b * x * y, 1 + b * (y * y - t2), -a * x + b * y * z,
    -a * y + b * x * z, a * x + b * y * z, 1 + b * (z * z - t2),
  );
}

export class HeadModel {
  /** @param {object} a arrays of head.bin; @param {object} spec the manifest's head_model entry. */
  constructor(a, spec) {
    this.vRest = a.v_rest;
    this.basis = a.basis;
    this.jRest = a.j_rest;
    this.jBasis = a.j_basis;
    this.weights = a.weights;
    this.posedirs = a.posedirs || null;
    this.parents = spec.parents;
    this.rows = spec.rows;
    this.numVertices = this.vRest.length / 3;
    this.numJoints = this.parents.length;
    this.out = new Float32Array(this.vRest.length);
    this.shaped = new Float32Array(this.vRest.length);
  }

  /**
   * Posed vertices [V*3] (a Float32Array reused between calls).
   * @param {Float32Array|number[]} coeffs one per row
   * @param {number[][]} poses axis-angle per joint (root, neck, jaw, left eye, right eye)
   * @param {number[]} translation
   */
  evaluate(coeffs, poses, translation = [0, 0, 0]) {
    const V = this.numVertices, J = this.numJoints, R = this.rows.length;
    const v = this.shaped;
    v.set(this.vRest);
    for (let r = 0; r < R; r++) {
      const c = coeffs[r];
      if (!c) continue;
      const b = this.basis.subarray(r * V * 3, (r + 1) * V * 3);
      for (let i = 0; i < 3 * V; i++) v[i] += c * b[i];
    }
    const joints = Float64Array.from(this.jRest);
    for (let r = 0; r < R; r++) {
      const c = coeffs[r];
      if (!c) continue;
      for (let i = 0; i < 3 * J; i++) joints[i] += c * this.jBasis[r * 3 * J + i];
    }
    const rots = poses.map((p) => rodrigues(p[0], p[1], p[2]));
    if (this.posedirs) {
      for (let j = 1; j < J; j++) {
        for (let k = 0; k < 9; k++) {
          const p = rots[j][k] - (k % 4 === 0 ? 1 : 0);
          if (!p) continue;
          const row = this.posedirs.subarray(((j - 1) * 9 + k) * V * 3, ((j - 1) * 9 + k + 1) * V * 3);
          for (let i = 0; i < 3 * V; i++) v[i] += p * row[i];
        }
      }
    }
    // world affines A_j = [M | t] (row-major 3x4) along the kinematic chain
    const A = [];
    for (let j = 0; j < J; j++) {
      const Rj = rots[j];
      const jx = joints[3 * j], jy = joints[3 * j + 1], jz = joints[3 * j + 2];
      const local = Float64Array.of(
        Rj[0], Rj[1], Rj[2], jx - (Rj[0] * jx + Rj[1] * jy + Rj[2] * jz),
        Rj[3], Rj[4], Rj[5], jy - (Rj[3] * jx + Rj[4] * jy + Rj[5] * jz),
        Rj[6], Rj[7], Rj[8], jz - (Rj[6] * jx + Rj[7] * jy + Rj[8] * jz),
      );
      const p = this.parents[j];
      if (p < 0) {
        A.push(local);
        continue;
      }
      const P = A[p], out = new Float64Array(12);
      for (let r = 0; r < 3; r++) {
        for (let c = 0; c < 4; c++) {
          let s = P[4 * r] * local[c] + P[4 * r + 1] * local[4 + c] + P[4 * r + 2] * local[8 + c];
          if (c === 3) s += P[4 * r + 3];
          out[4 * r + c] = s;
        }
      }
      A.push(out);
    }
    const o = this.out, w = this.weights, M = new Float64Array(12);
    for (let i = 0; i < V; i++) {
      M.fill(0);
      for (let j = 0; j < J; j++) {
        const wj = w[i * J + j];
        if (!wj) continue;
        const Aj = A[j];
        for (let k = 0; k < 12; k++) M[k] += wj * Aj[k];
      }
      const x = v[3 * i], y = v[3 * i + 1], z = v[3 * i + 2];
      o[3 * i] = M[0] * x + M[1] * y + M[2] * z + M[3] + translation[0];
      o[3 * i + 1] = M[4] * x + M[5] * y + M[6] * z + M[7] + translation[1];
      o[3 * i + 2] = M[8] * x + M[9] * y + M[10] * z + M[11] + translation[2];
    }
    return o;
  }
}
