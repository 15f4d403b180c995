// The whole view state lives in the URL hash, so a link reproduces the view:
//   #az=20&el=5&d=0.61&t=0,0.02,0.01&jaw=0.2&neck=0,0,0&eyes=0,0&e=0.5,0,...&preset=smile&f=12&play=0
// az/el: camera azimuth/elevation in degrees (headstudio's orbit: az 0 looks at the face from +z,
// az 90 from +x; el > 0 from above); d: distance to the target t (metres, FLAME's world);
// jaw: opening in radians; neck: x, y, z axis-angle; eyes: pitch, yaw of both eyes (radians);
// e: the expression sliders; preset: the named expression under the sliders; f: the motion frame
// on screen (-1: the sliders pose the head); play: 1 while the motion plays.

/** A fresh state from the manifest's defaults. */
export function defaultState(manifest) {
  const cam = manifest.camera;
  return {
    az: 0,
    el: cam.elevation || 0,
    d: cam.distance,
    t: cam.target.slice(),
    jaw: 0,
    neck: [0, 0, 0],
    eyes: [0, 0],
    e: new Array(manifest.head.sliders.length).fill(0),
    preset: "",
    f: -1,
    play: 0,
  };
}

function parseNumbers(text, count) {
  const parts = text.split(",").map(Number);
  if (parts.length !== count || parts.some((x) => !Number.isFinite(x))) return null;
  return parts;
}

/** Apply a hash (with or without '#') to a copy of ``base``; unknown or malformed keys are skipped. */
export function parseHash(hash, base) {
  const state = structuredClone(base);
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  for (const key of ["az", "el", "d", "jaw", "f", "play"]) {
    if (!params.has(key)) continue;
    const v = Number(params.get(key));
    if (Number.isFinite(v)) state[key] = v;
  }
  if (!(state.d > 0)) state.d = base.d;
  state.f = Math.max(-1, Math.round(state.f));
  state.play = state.play ? 1 : 0;
  for (const [key, count] of [["t", 3], ["neck", 3], ["eyes", 2], ["e", base.e.length]]) {
    if (!params.has(key)) continue;
    const v = parseNumbers(params.get(key), count);
    if (v) state[key] = v;
  }
  if (params.has("preset")) state.preset = params.get("preset");
  return state;
}

function fmt(x, digits) {
  return String(Number(x.toFixed(digits)));
}

/** The hash of a state (numbers rounded: 0.01 degree, 0.1 mm, 1e-4 rad / expression unit). */
export function formatHash(s) {
  const parts = [
    `az=${fmt(s.az, 2)}`,
    `el=${fmt(s.el, 2)}`,
    `d=${fmt(s.d, 4)}`,
    `t=${s.t.map((x) => fmt(x, 4)).join(",")}`,
    `jaw=${fmt(s.jaw, 4)}`,
    `neck=${s.neck.map((x) => fmt(x, 4)).join(",")}`,
    `eyes=${s.eyes.map((x) => fmt(x, 4)).join(",")}`,
    `e=${s.e.map((x) => fmt(x, 4)).join(",")}`,
  ];
  if (s.preset) parts.push(`preset=${encodeURIComponent(s.preset)}`);
  parts.push(`f=${s.f}`, `play=${s.play ? 1 : 0}`);
  return "#" + parts.join("&");
}
