// Where the posed vertices come from: the headstudio server (FLAME LBS in Python, over the
// websocket), or, in an exported folder, the baked motion and the shipped head model.

import { HeadModel } from "./head.js";
import { HeadSocket } from "./data.js";

/** The preset entry named ``name`` (or undefined). */
export function findPreset(manifest, name) {
  return manifest.presets.find((p) => p.name === name);
}

/**
 * Full head-model inputs of a slider state, as the server builds them (headstudio.viewer.protocol):
 * the preset's pose under the sliders; the sliders replace the first expression components, the
 * jaw's x rotation, the neck, and the x/y rotations (pitch, yaw) of both eyes.
 */
export function sliderPose(state, manifest) {
  const preset = findPreset(manifest, state.preset);
  const jaw = preset ? preset.jaw.slice() : [0, 0, 0];
  jaw[0] = state.jaw;
  const eyes = preset ? preset.eyes.slice() : [0, 0, 0, 0, 0, 0];
  eyes[0] = eyes[3] = state.eyes[0];
  eyes[1] = eyes[4] = state.eyes[1];
  return { preset, expression: state.e, jaw, neck: state.neck.slice(), eyes };
}

class MotionFrames {
  /** Dequantised frames of motion.bin: v = lo + q * scale per axis. */
  constructor(a, numVertices) {
    this.q = a.frames;
    this.lo = a.lo;
    this.scale = a.scale;
    this.size = numVertices * 3;
    this.out = new Float32Array(this.size);
  }

  frame(k) {
    const q = this.q.subarray(k * this.size, (k + 1) * this.size), o = this.out;
    const lo = this.lo, sc = this.scale;
    for (let i = 0; i < this.size; i += 3) {
      o[i] = lo[0] + q[i] * sc[0];
      o[i + 1] = lo[1] + q[i + 1] * sc[1];
      o[i + 2] = lo[2] + q[i + 2] * sc[2];
    }
    return o;
  }
}

/**
 * Turns view states into vertices and hands them to ``apply(vertices, frame)``.
 * ``pending`` is true while an answer for the latest request is outstanding.
 */
export class PoseSource {
  constructor(data, apply) {
    this.manifest = data.manifest;
    this.apply = apply;
    this.static = data.static;
    this.pending = false;
    this.since = 0; // when the pending request was sent (performance.now())
    this.cache = new Map(); // motion frame -> vertices (server mode)
    this.requested = new Set();
    this.latest = 0;
    this.wantFrame = null;
    const m = this.manifest;
    if (this.static) {
      this.head = m.head_model ? new HeadModel(data.arrays[m.head_model.file], m.head_model) : null;
      this.motion = m.motion ? new MotionFrames(data.arrays[m.motion.file], m.num_vertices) : null;
      this.ready = Promise.resolve();
    } else {
      this.socket = new HeadSocket((v, seq, frame) => this.receive(v, seq, frame));
      this.socket.onClose = () => {
        this.pending = false;
        if (this.onLost) this.onLost();
      };
      this.ready = this.socket.open;
    }
  }

  /** Whether the sliders can pose the head here (a server, or a shipped head model). */
  get canPose() {
    return !this.static || this.head !== null;
  }

  receive(vertices, seq, frame) {
    if (frame >= 0) {
      this.cache.set(frame, vertices);
      this.requested.delete(frame);
      if (this.cache.size > 256) this.cache.delete(this.cache.keys().next().value);
      if (frame === this.wantFrame) {
        this.pending = false;
        this.apply(vertices, frame);
      }
      return;
    }
    if (seq < this.latest) return; // a newer slider request is on its way
    this.pending = false;
    this.apply(vertices, -1);
  }

  /** Show the slider pose of ``state``. */
  showSliders(state) {
    this.wantFrame = null;
    const p = sliderPose(state, this.manifest);
    if (this.static) {
      if (!this.head) return;
      const rows = this.head.rows.length, K = state.e.length;
      const coeffs = new Float32Array(rows);
      coeffs.set(state.e.slice(0, K));
      if (p.preset) coeffs[this.head.rows.indexOf(`preset:${p.preset.name}`)] = 1;
      const eyes = p.eyes;
      const v = this.head.evaluate(
        coeffs, [[0, 0, 0], p.neck, p.jaw, eyes.slice(0, 3), eyes.slice(3, 6)], [0, 0, 0],
      );
      this.apply(v, -1);
      return;
    }
    this.pending = true;
    this.since = performance.now();
    this.latest = this.socket.send({
      type: "pose", preset: state.preset || null, expression: state.e, jaw: state.jaw,
      neck: state.neck, eyes: state.eyes,
    });
  }

  /** Show motion frame ``k``; ``ahead`` more frames are fetched in advance (server mode). */
  showFrame(k, ahead = 0) {
    this.wantFrame = k;
    if (this.static) {
      if (this.motion) this.apply(this.motion.frame(k), k);
      return;
    }
    const T = this.manifest.motion.frames;
    for (let i = k; i <= Math.min(T - 1, k + ahead); i++) {
      if (!this.cache.has(i) && !this.requested.has(i)) {
        this.requested.add(i);
        this.socket.send({ type: "frame", index: i });
      }
    }
    if (this.cache.has(k)) {
      this.pending = false;
      this.apply(this.cache.get(k), k);
    } else if (!this.pending) {
      this.pending = true;
      this.since = performance.now();
    }
  }
}
