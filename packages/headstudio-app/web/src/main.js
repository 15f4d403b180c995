// headstudio's browser viewer: a rigged Gaussian head rendered with Spark (three.js, WebGL2).
//
// Image conventions follow headstudio's renderer (gsplat's): the camera is headstudio's orbit
// (cameras.orbit_camera) with a vertical field of view, the 2D covariance gets +0.3 px² without
// opacity compensation (gsplat's eps2d), splats are cut where alpha < 1/255 (so at 3.33 sigma),
// sorted by view depth and blended back to front over an opaque background (the same sum as
// gsplat's front-to-back compositing); colours are the SH values as they are (no colour-space
// conversion anywhere: ColorManagement is off).

import * as THREE from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";

import { assetUrl, loadAvatar } from "./data.js";
import { RiggedSplats } from "./rig.js";
import { PoseSource, findPreset } from "./pose.js";
import { Player } from "./player.js";
import { defaultState, formatHash, parseHash } from "./state.js";
import { buildPanel } from "./ui.js";

const DEG = Math.PI / 180;
/** The part of the free width the head's bounding sphere may fill when the view zooms out. */
const FRAME_FILL = 0.92;
/** The least part of the canvas width the panel must leave free for the head to move into it. */
const MIN_FREE = 0.4;

/** Largest distance of the vertices ``[V*3]`` from ``target [3]``. */
function boundingRadius(vertices, target) {
  let r2 = 0;
  for (let i = 0; i < vertices.length; i += 3) {
    const dx = vertices[i] - target[0], dy = vertices[i + 1] - target[1], dz = vertices[i + 2] - target[2];
    r2 = Math.max(r2, dx * dx + dy * dy + dz * dz);
  }
  return Math.sqrt(r2);
}

/**
 * The columns of the canvas that the open settings panel leaves free: ``{left, right}`` in CSS
 * pixels of the canvas (the wider side of the panel), or ``null`` when the panel is closed, not
 * over the canvas, or leaves less than ``MIN_FREE`` of its width (a panel over most of a narrow
 * canvas: the head stays where the renderer puts it).
 */
function freeColumns(canvas, gui) {
  if (!gui || gui._closed) return null;
  const c = canvas.getBoundingClientRect(), p = gui.domElement.getBoundingClientRect();
  if (p.width <= 0 || p.right <= c.left || p.left >= c.right) return null;
  const leftSide = p.left - c.left, rightSide = c.right - p.right;
  if (Math.max(leftSide, rightSide) < MIN_FREE * c.width) return null;
  return leftSide >= rightSide ? { left: 0, right: leftSide } : { left: c.width - rightSide, right: c.width };
}

THREE.ColorManagement.enabled = false;

class Viewer {
  constructor(data) {
    this.data = data;
    this.manifest = data.manifest;
    const m = this.manifest;
    this.defaults = defaultState(m);
    this.state = parseHash(window.location.hash, this.defaults);
    if (!m.motion) {
      this.state.f = -1;
      this.state.play = 0;
    }
    this.hasMotion = !!m.motion;
    this.needsRender = true;
    this.lastRender = 0;
    this.frameTimes = [];
    this.shownFrame = -1;
    this.playLog = []; // [clock seconds, frame on screen] at each render while playing

    const canvas = document.getElementById("view");
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({
      canvas, antialias: false, alpha: false, preserveDrawingBuffer: true, powerPreference: "high-performance",
    });
    this.renderer.setPixelRatio(window.devicePixelRatio || 1);
    const bg = m.camera.background;
    this.renderer.setClearColor(new THREE.Color(bg[0], bg[1], bg[2]), 1);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(m.camera.fovy, 1, 0.01, 100);
    this.spark = new SparkRenderer({
      renderer: this.renderer,
      onDirty: () => (this.needsRender = true),
      accumExtSplats: true, // float32 centres: no quantisation of the deformed Gaussians
      maxStdDev: Math.sqrt(2 * Math.log(255)), // where an opaque splat's alpha drops below 1/255
      minAlpha: 1 / 255,
      preBlurAmount: 0.3,
      blurAmount: 0,
      sortRadial: false,
      enableLod: false,
    });
    this.scene.add(this.spark);

    const a = data.arrays["avatar.bin"];
    this.rig = new RiggedSplats({
      means: a.means, quats: a.quats, logScales: a.log_scales, opacities: a.opacities, faceIds: a.face_ids,
      sh: a.sh, shDegree: m.sh_degree, faces: a.faces, vertices: a.vertices,
    });
    this.scene.add(this.rig.object);

    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.enableDamping = false;
    this.controls.minDistance = m.camera.distance * 0.1;
    this.controls.maxDistance = m.camera.distance * 10;
    this.controls.addEventListener("change", () => this.onOrbit());

    this.audio = null;
    if (m.audio) {
      this.audio = new Audio(assetUrl(m.audio));
      this.audio.preload = "auto";
    }
    this.player = new Player(m.motion, this.audio);
    this.poses = new PoseSource(data, (v, frame) => this.setVertices(v, frame));
    this.canPose = this.poses.canPose;
    this.poses.onLost = () => {
      document.getElementById("status").textContent = "disconnected: the headstudio server stopped";
      this.lostServer = true;
    };

    const vertices = data.arrays["avatar.bin"].vertices;
    this.headRadius = boundingRadius(vertices, m.camera.target);
    this.framing = { offsetX: 0, zoom: 1, free: null };
    const panel = buildPanel(this);
    this.gui = panel.gui;
    this.refreshPanel = panel.refresh;
    window.addEventListener("resize", () => this.resize());
    window.addEventListener("hashchange", () => this.onHashChange());
    this.resize();
  }

  async start() {
    await this.poses.ready;
    this.applyCamera();
    this.applyPose();
    if (this.state.play && this.hasMotion) await this.player.play(Math.max(0, this.state.f));
    this.writeHash();
    const loop = () => {
      this.tick();
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  }

  resize() {
    const w = this.canvas.clientWidth || window.innerWidth, h = this.canvas.clientHeight || window.innerHeight;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.frame();
  }

  /**
   * Frame the head in the part of the canvas that the settings panel leaves free: the projection
   * centre moves to the middle of the free part (a view offset: the orbit, the hash and the
   * head's pose are unchanged), and where the head (its bounding sphere at the default distance)
   * is wider than that part, the view zooms out to fit it. With the panel closed, or not over
   * the canvas, the view is the renderer's own (no offset, no zoom).
   */
  frame() {
    const w = this.canvas.clientWidth || window.innerWidth, h = this.canvas.clientHeight || window.innerHeight;
    const free = freeColumns(this.canvas, this.gui);
    let offsetX = 0, zoom = 1;
    if (free) {
      const width = free.right - free.left;
      offsetX = w / 2 - (free.left + free.right) / 2; // the target appears at w / 2 - offsetX
      const f = h / 2 / Math.tan((this.manifest.camera.fovy * DEG) / 2);
      const d = this.manifest.camera.distance, r = Math.min(this.headRadius, 0.99 * d);
      const diameter = (2 * f * r) / Math.sqrt(d * d - r * r); // the sphere's width in pixels
      zoom = Math.min(1, (FRAME_FILL * width) / diameter);
    }
    this.framing = { offsetX, zoom, free };
    this.camera.zoom = zoom;
    if (offsetX !== 0) this.camera.setViewOffset(w, h, offsetX, 0, w, h);
    else this.camera.clearViewOffset();
    this.camera.updateProjectionMatrix();
    this.needsRender = true;
  }

  // ------------------------------------------------------------------ state <-> scene

  /** Merge ``partial`` into the state and apply it; ``source`` says who changed it. */
  setState(partial, source = "api") {
    const s = this.state;
    const poseKeys = ["jaw", "neck", "eyes", "e", "preset"];
    Object.assign(s, structuredClone(partial));
    if (["az", "el", "d", "t"].some((k) => k in partial) && source !== "orbit") this.applyCamera();
    if (poseKeys.some((k) => k in partial)) {
      if (!("f" in partial)) {
        s.f = -1; // the sliders take over from the motion
        s.play = 0;
        this.player.pause();
      }
      this.applyPose();
    }
    if ("f" in partial || "play" in partial) {
      if (s.play && this.hasMotion) this.player.play(Math.max(0, s.f));
      else {
        this.player.pause();
        if (s.f >= 0 && this.hasMotion) this.player.seek(s.f);
      }
      this.applyPose();
    }
    if (source !== "panel") this.refreshPanel();
    this.writeHash();
  }

  applyPreset(name) {
    const p = findPreset(this.manifest, name);
    const K = this.state.e.length;
    if (!p) {
      this.setState({ preset: "", e: new Array(K).fill(0), jaw: 0, eyes: [0, 0] }, "api");
      return;
    }
    this.setState({ preset: name, e: p.expression.slice(0, K), jaw: p.jaw[0], eyes: [p.eyes[0], p.eyes[1]] }, "api");
  }

  applyCamera() {
    const s = this.state;
    const el = Math.max(-89.9, Math.min(89.9, s.el)) * DEG, az = s.az * DEG;
    const t = new THREE.Vector3(...s.t);
    this.camera.position.set(
      t.x + s.d * Math.cos(el) * Math.sin(az), t.y + s.d * Math.sin(el), t.z + s.d * Math.cos(el) * Math.cos(az),
    );
    this.camera.up.set(0, 1, 0);
    this.controls.target.copy(t);
    this.camera.lookAt(t);
    this.applyingCamera = true;
    this.controls.update();
    this.applyingCamera = false;
    this.needsRender = true;
  }

  onOrbit() {
    this.needsRender = true;
    if (this.applyingCamera) return;
    const off = this.camera.position.clone().sub(this.controls.target);
    const d = off.length();
    this.setState(
      {
        az: Math.atan2(off.x, off.z) / DEG, el: Math.asin(Math.max(-1, Math.min(1, off.y / d))) / DEG, d,
        t: this.controls.target.toArray(),
      },
      "orbit",
    );
  }

  applyPose() {
    const s = this.state;
    if (s.f >= 0 && this.hasMotion) this.poses.showFrame(Math.min(s.f, this.manifest.motion.frames - 1), this.prefetchFrames());
    else if (this.canPose) this.poses.showSliders(s);
  }

  setVertices(v, frame) {
    this.rig.setVertices(v);
    this.lastVertices = v;
    this.shownFrame = frame;
    this.needsRender = true;
  }

  onHashChange() {
    if (window.location.hash === this.lastHash) return;
    const next = parseHash(window.location.hash, this.defaults);
    this.setState(next, "hash");
  }

  writeHash() {
    if (this.hashTimer) return;
    this.hashTimer = setTimeout(() => {
      this.hashTimer = null;
      this.lastHash = formatHash(this.state);
      if (window.location.hash !== this.lastHash) history.replaceState(null, "", this.lastHash);
    }, 100);
  }

  resetView() {
    const d = this.defaults;
    this.setState({ az: d.az, el: d.el, d: d.d, t: d.t.slice() }, "api");
  }

  // ------------------------------------------------------------------ motion

  togglePlay() {
    if (this.state.play) this.setState({ play: 0 }, "api");
    else this.setState({ play: 1, f: Math.max(0, this.state.f) }, "api");
  }

  scrub(frame) {
    this.setState({ f: Math.round(frame), play: this.state.play }, "panel");
  }

  tick() {
    const playing = this.state.play && this.hasMotion;
    if (playing) {
      const f = this.player.tick();
      if (f !== this.state.f) {
        this.state.f = f;
        this.poses.showFrame(f, this.prefetchFrames());
        this.refreshPanel();
        this.writeHash();
      }
    }
    if (this.recorder) this.needsRender = true; // a recording takes a frame per redraw
    if (!this.needsRender) return;
    const now = performance.now();
    // while playing, wait (up to a second) for the frame's vertices rather than draw a stale pose
    if (playing && this.poses.pending && now - this.poses.since < 1000) return;
    this.needsRender = false;
    if (playing) {
      const t = this.player.time();
      this.playLog.push([t, this.shownFrame]);
      if (this.playLog.length > 1000) this.playLog.shift();
    }
    this.renderer.render(this.scene, this.camera);
    this.frameTimes.push(now - this.lastRender);
    if (this.frameTimes.length > 60) this.frameTimes.shift();
    this.lastRender = now;
    if (now - (this.statusTime || 0) > 500) {
      this.statusTime = now;
      const recent = this.frameTimes.slice(-10), ms = recent.reduce((a, b) => a + b, 0) / recent.length;
      const fps = ms > 0 && ms < 5000 ? ` · ${(1000 / ms).toFixed(1)} fps while changing` : "";
      this.status(`${this.rig.numSplats} Gaussians${fps}`);
    }
  }

  status(text) {
    if (!this.lostServer) document.getElementById("status").textContent = text;
  }

  /** Motion frames to fetch ahead: two frame intervals' worth of playback (at least 8). */
  prefetchFrames() {
    const n = this.frameTimes.length;
    const ms = n ? this.frameTimes.reduce((a, b) => a + b, 0) / n : 16;
    return Math.min(120, Math.max(8, Math.ceil((2 * ms * this.manifest.motion.fps) / 1000)));
  }

  // ------------------------------------------------------------------ sharing

  screenshot(download = false) {
    this.renderer.render(this.scene, this.camera);
    const url = this.canvas.toDataURL("image/png");
    if (download) {
      const a = document.createElement("a");
      a.href = url;
      a.download = "headstudio.png";
      a.click();
    }
    return url;
  }

  toggleRecording() {
    if (this.recorder) {
      this.recorder.stop();
      return;
    }
    this.startRecording((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "headstudio.webm";
      a.click();
    });
  }

  startRecording(onDone) {
    const stream = this.canvas.captureStream(30);
    if (this.audio && this.audio.captureStream) {
      for (const track of this.audio.captureStream().getAudioTracks()) stream.addTrack(track);
    }
    const chunks = [];
    this.recorder = new MediaRecorder(stream, { mimeType: "video/webm" });
    this.recorder.ondataavailable = (ev) => ev.data.size && chunks.push(ev.data);
    this.recorder.onstop = () => {
      this.recorder = null;
      onDone(new Blob(chunks, { type: "video/webm" }));
    };
    this.recorder.start(100);
  }

  // ------------------------------------------------------------------ for tests and benchmarks

  /** Resolves once the latest state is on screen: vertices in, splats generated, sorted, drawn. */
  settled() {
    return new Promise((resolve) => {
      let quiet = 0;
      const check = () => {
        const sp = this.spark;
        if (this.state.play && this.hasMotion) {
          // a playing motion never rests: one drawn frame is as settled as it gets
          if (!this.needsRender) return resolve();
          return requestAnimationFrame(check);
        }
        const busy = this.poses.pending || sp.sorting || sp.sortDirty || this.needsRender;
        quiet = busy ? 0 : quiet + 1;
        if (quiet >= 3) resolve();
        else requestAnimationFrame(check);
      };
      requestAnimationFrame(check);
    });
  }

  /**
   * Average wall time per frame over ``frames`` frames, each with a new camera and (``moveMesh``)
   * new vertices: upload, GPU deformation, sort, draw; the GPU is waited for every frame.
   */
  async benchmark(frames = 30, moveMesh = true) {
    const v0 = Float32Array.from(this.data.arrays["avatar.bin"].vertices);
    const v = new Float32Array(v0.length);
    const result = await this.timeFrames(frames, (i) => {
      if (!moveMesh) return;
      const s = 1 + 0.02 * Math.sin(i);
      for (let k = 0; k < v.length; k++) v[k] = v0[k] * s;
      this.rig.setVertices(v);
    });
    this.applyPose();
    return result;
  }

  /**
   * The baseline: the same Gaussians as a plain static Spark SplatMesh (world space, what a
   * common splat viewer draws), timed like ``benchmark`` with a moving camera.
   * @param {object} w world-space arrays: means [N*3], quats [N*4] (wxyz), scales [N*3],
   *   opacities [N], colors [N*3]
   */
  async benchmarkStatic(w, frames = 30) {
    const N = w.opacities.length;
    const mesh = new SplatMesh({
      constructSplats: (splats) => {
        const c = new THREE.Vector3(), s = new THREE.Vector3(), q = new THREE.Quaternion(), col = new THREE.Color();
        for (let i = 0; i < N; i++) {
          c.fromArray(w.means, 3 * i);
          s.fromArray(w.scales, 3 * i);
          q.set(w.quats[4 * i + 1], w.quats[4 * i + 2], w.quats[4 * i + 3], w.quats[4 * i]);
          col.setRGB(w.colors[3 * i], w.colors[3 * i + 1], w.colors[3 * i + 2]);
          splats.pushSplat(c, s, q, w.opacities[i], col);
        }
      },
    });
    await mesh.initialized;
    this.scene.remove(this.rig.object);
    this.scene.add(mesh);
    try {
      return await this.timeFrames(frames, () => {});
    } finally {
      this.scene.remove(mesh);
      mesh.dispose();
      this.scene.add(this.rig.object);
      this.needsRender = true;
    }
  }

  async timeFrames(frames, perFrame) {
    const gl = this.renderer.getContext();
    const px = new Uint8Array(4);
    const az0 = this.state.az;
    const run = async (i) => {
      this.state.az = az0 + 2 * (i + 1);
      this.applyCamera();
      perFrame(i);
      await this.spark.update({ scene: this.scene, camera: this.camera });
      this.renderer.render(this.scene, this.camera);
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px); // wait for the GPU
    };
    await run(-1); // warm-up: shader compilation, first sort
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) await run(i);
    const ms = (performance.now() - t0) / frames;
    this.state.az = az0;
    this.applyCamera();
    return { ms_per_frame: ms, fps: 1000 / ms, width: this.canvas.width, height: this.canvas.height };
  }
}

async function boot() {
  const status = document.getElementById("status");
  try {
    const data = await loadAvatar();
    const viewer = new Viewer(data);
    window.headstudio = {
      viewer,
      manifest: data.manifest,
      getState: () => structuredClone(viewer.state),
      setState: (p) => viewer.setState(p, "api"),
      applyPreset: (name) => viewer.applyPreset(name),
      settled: () => viewer.settled(),
      screenshot: () => viewer.screenshot(false),
      benchmark: (n, moveMesh) => viewer.benchmark(n, moveMesh),
      benchmarkStatic: (world, n) => viewer.benchmarkStatic(world, n),
      shownFrame: () => viewer.shownFrame,
      framing: () => ({ ...viewer.framing }),
      playLog: () => viewer.playLog.slice(),
      vertices: () => Array.from(viewer.lastVertices || []),
      audioTime: () => (viewer.audio ? viewer.audio.currentTime : null),
      record: (ms) =>
        new Promise((resolve) => {
          viewer.startRecording((blob) => resolve({ size: blob.size, type: blob.type }));
          setTimeout(() => viewer.recorder.stop(), ms);
        }),
    };
    await viewer.start();
    status.textContent = `${data.manifest.num_gaussians} Gaussians`;
    window.headstudioReady = true;
  } catch (err) {
    status.textContent = `error: ${err.message}`;
    console.error(err);
    window.headstudioError = String(err);
  }
}

boot();
