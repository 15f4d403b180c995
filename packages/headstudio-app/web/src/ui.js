// The control panel (lil-gui): camera, face sliders and presets, motion, screenshot and clip.

import GUI from "lil-gui";

/**
 * @param {object} app the viewer: state, manifest, canPose, setState(partial, source),
 *   resetView(), screenshot(), toggleRecording(), hasMotion
 */
export function buildPanel(app) {
  const gui = new GUI({ title: "HeadStudio" });
  if (window.innerWidth < 600) gui.close(); // small screens: the panel opens on demand
  const m = app.manifest;
  const s = app.state;
  const controllers = [];
  const track = (c) => {
    controllers.push(c);
    if (typeof c.decimals === "function" && typeof c.getValue() === "number") c.decimals(c._step >= 1 ? 0 : 3);
    return c;
  };

  const cam = gui.addFolder("Camera");
  track(cam.add(s, "az", -180, 180, 0.1).name("azimuth °")).onChange(() => app.setState({ az: s.az }, "panel"));
  track(cam.add(s, "el", -89, 89, 0.1).name("elevation °")).onChange(() => app.setState({ el: s.el }, "panel"));
  track(cam.add(s, "d", m.camera.distance * 0.2, m.camera.distance * 4, 0.001).name("distance m"))
    .onChange(() => app.setState({ d: s.d }, "panel"));
  cam.add({ reset: () => app.resetView() }, "reset").name("reset view");

  const face = gui.addFolder("Face");
  if (!app.canPose) {
    face.add({ note: "baked motion only" }, "note").name("sliders off").disable();
    face.title("Face (needs the head model: export with --include-head-model)");
  } else {
    const names = ["", ...m.presets.map((p) => p.name)];
    track(face.add(s, "preset", names).name("preset")).onChange((v) => app.applyPreset(v));
    track(face.add(s, "jaw", -0.1, 0.6, 0.001).name("jaw open")).onChange(() => app.setState({ jaw: s.jaw }, "panel"));
    const neck = face.addFolder("neck").close();
    ["pitch", "yaw", "roll"].forEach((label, i) => {
      const o = { v: s.neck[i] };
      track(neck.add(o, "v", -0.8, 0.8, 0.001).name(label)).onChange((v) => {
        const n = app.state.neck.slice();
        n[i] = v;
        app.setState({ neck: n }, "panel");
      }).__hs = () => (o.v = app.state.neck[i]);
    });
    const eyes = face.addFolder("eyes").close();
    ["pitch", "yaw"].forEach((label, i) => {
      const o = { v: s.eyes[i] };
      track(eyes.add(o, "v", -0.6, 0.6, 0.001).name(label)).onChange((v) => {
        const e = app.state.eyes.slice();
        e[i] = v;
        app.setState({ eyes: e }, "panel");
      }).__hs = () => (o.v = app.state.eyes[i]);
    });
    const expr = face.addFolder("expression");
    m.head.sliders.forEach((label, i) => {
      const o = { v: s.e[i] };
      track(expr.add(o, "v", -3, 3, 0.01).name(label)).onChange((v) => {
        const e = app.state.e.slice();
        e[i] = v;
        app.setState({ e }, "panel");
      }).__hs = () => (o.v = app.state.e[i]);
    });
  }

  if (app.hasMotion) {
    const mot = gui.addFolder("Motion");
    const o = { frame: Math.max(0, s.f), toggle: () => app.togglePlay() };
    mot.add(o, "toggle").name("play / pause");
    track(mot.add(o, "frame", 0, m.motion.frames - 1, 1).name("frame")).onChange((v) => app.scrub(v)).__hs =
      () => (o.frame = Math.max(0, app.state.f));
  }

  cam.close(); // the mouse orbits: left drag turns, wheel zooms, right drag pans
  const out = gui.addFolder("Share");
  out.add({ shot: () => app.screenshot(true) }, "shot").name("screenshot (PNG)");
  const rec = { toggle: () => app.toggleRecording() };
  out.add(rec, "toggle").name("record clip / stop");
  out.add({ link: () => navigator.clipboard && navigator.clipboard.writeText(window.location.href) }, "link")
    .name("copy link to this view");

  /** Refresh the widgets after the state changed elsewhere (orbit, hash, playback). */
  return function refresh() {
    for (const c of controllers) {
      if (c.__hs) c.__hs();
      c.updateDisplay();
    }
  };
}
