// The control panel (lil-gui): camera, face sliders and presets, motion, screenshot and clip.

import GUI from "lil-gui";

/**
 * @param {object} app the viewer: state, manifest, canPose, setState(partial, source),
 *   resetView(), screenshot(), toggleRecording(), hasMotion, frame()
 * @returns {{gui: GUI, refresh: function}} the panel and the function that refreshes its widgets
 */
export function buildPanel(app) {
  const gui = new GUI({ title: "HeadStudio" });
  if (window.innerWidth < 600) gui.close(); // small screens: the panel opens on demand
  gui.onOpenClose(() => app.frame()); // the free part of the canvas changed
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
    // one slider per component of the state's array ``key``
    const vector = (folder, key, labels, lo, hi, step) =>
      labels.forEach((label, i) => {
        const o = { v: s[key][i] };
        track(folder.add(o, "v", lo, hi, step).name(label)).onChange((v) => {
          const next = app.state[key].slice();
          next[i] = v;
          app.setState({ [key]: next }, "panel");
        }).__hs = () => (o.v = app.state[key][i]);
      });
    vector(face.addFolder("neck").close(), "neck", ["pitch", "yaw", "roll"], -0.8, 0.8, 0.001);
    vector(face.addFolder("eyes").close(), "eyes", ["pitch", "yaw"], -0.6, 0.6, 0.001);
    vector(face.addFolder("expression"), "e", m.head.sliders, -3, 3, 0.01);
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
  const refresh = () => {
    for (const c of controllers) {
      if (c.__hs) c.__hs();
      c.updateDisplay();
    }
  };
  return { gui, refresh };
}
