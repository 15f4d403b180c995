// Loading the avatar: from the headstudio server (fetch + websocket) or, in an exported folder,
// from window.HEADSTUDIO_DATA (a <script> beside index.html, so file:// works without fetch).

const DTYPES = { f32: Float32Array, u32: Uint32Array, u16: Uint16Array };

/** The access token of the page's own URL (servers bound beyond loopback require it). */
export function pageToken() {
  return new URLSearchParams(window.location.search).get("token");
}

function withToken(url) {
  const token = pageToken();
  return token ? `${url}?token=${encodeURIComponent(token)}` : url;
}

function base64ToBytes(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

/** Named typed arrays of one blob, laid out as the manifest's buffers[file] says. */
export function viewArrays(buffer, layout) {
  const out = {};
  for (const [name, spec] of Object.entries(layout)) {
    const Type = DTYPES[spec.dtype];
    const count = spec.shape.reduce((a, b) => a * b, 1);
    out[name] = new Type(buffer, spec.offset, count);
  }
  return out;
}

/**
 * The manifest and every blob it lists: {manifest, arrays: {file: {name: TypedArray}}, static}.
 */
export async function loadAvatar() {
  const embedded = window.HEADSTUDIO_DATA;
  if (embedded) {
    const arrays = {};
    for (const [file, layout] of Object.entries(embedded.manifest.buffers)) {
      arrays[file] = viewArrays(base64ToBytes(embedded.blobs[file]), layout);
    }
    return { manifest: embedded.manifest, arrays, static: true };
  }
  const res = await fetch(withToken("avatar.json"));
  if (!res.ok) throw new Error(`avatar.json: HTTP ${res.status}`);
  const manifest = await res.json();
  const arrays = {};
  for (const [file, layout] of Object.entries(manifest.buffers)) {
    const r = await fetch(withToken(file));
    if (!r.ok) throw new Error(`${file}: HTTP ${r.status}`);
    arrays[file] = viewArrays(await r.arrayBuffer(), layout);
  }
  return { manifest, arrays, static: false };
}

/** URL of a file beside the page (audio), with the token when the page has one. */
export function assetUrl(name) {
  return withToken(name);
}

/**
 * The websocket to the server's head model: send pose / frame requests, receive vertices.
 *
 * Replies are binary: u32 magic "HSV1", u32 request sequence number, i32 motion frame (-1 for a
 * slider pose), then V*3 float32 vertices.
 */
export class HeadSocket {
  constructor(onVertices) {
    this.onVertices = onVertices;
    this.seq = 0;
    this.open = new Promise((resolve, reject) => {
      const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
      this.ws = new WebSocket(withToken(`${proto}//${window.location.host}/ws`));
      this.ws.binaryType = "arraybuffer";
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error("websocket to the headstudio server failed"));
      this.ws.onmessage = (ev) => this.receive(ev.data);
      this.ws.onclose = () => this.onClose && this.onClose();
    });
  }

  receive(data) {
    if (!(data instanceof ArrayBuffer) || data.byteLength < 12) return;
    const head = new DataView(data, 0, 12);
    if (head.getUint32(0, true) !== 0x31565348) return; // "HSV1"
    const seq = head.getUint32(4, true);
    const frame = head.getInt32(8, true);
    this.onVertices(new Float32Array(data, 12), seq, frame);
  }

  send(message) {
    this.seq += 1;
    this.ws.send(JSON.stringify({ ...message, seq: this.seq }));
    return this.seq;
  }
}
