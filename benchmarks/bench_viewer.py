"""Frame time of the browser viewer in headless Chromium (software WebGL2: SwiftShader on the CPU).

For each size (Gaussians × canvas) the page times frames that each move the camera and upload new
vertices (the whole animated path: vertex upload, GPU deformation of every Gaussian from its
triangle, Spark's sort, the draw; the GPU is waited for every frame), against the baseline
measured in the same page: the same Gaussians in world space as a plain static Spark
``SplatMesh`` (what a common splat viewer draws), with the same moving camera. The ratio is the
cost of animating the avatar on the GPU.

SwiftShader runs the GPU's work on the CPU cores, so these are software numbers for the record,
not what a laptop GPU does.

Usage: ``python benchmarks/bench_viewer.py [--frames N] [--sizes 11636x256x256 104724x1280x720]``.
Needs Debian's chromium (``HEADSTUDIO_CHROMIUM`` overrides the path) and Playwright's Python package.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import sys

import torch
from flame_core import FlameModel
from headstudio.demo.teacher import build_teacher_avatar
from headstudio.output.viewer import ViewerServer, build_viewer_data

ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-background-networking"]
DECODE = """(w) => {
  const f = (s) => new Float32Array(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer);
  return Object.fromEntries(Object.entries(w).map(([k, v]) => [k, f(v)]));
}"""


def _world(avatar) -> dict[str, str]:
    with torch.no_grad():
        g = avatar.world_gaussians()
    colors = (g["sh"][:, 0] * 0.28209479177387814 + 0.5).clamp_min(0)
    arrays = {"means": g["means"], "quats": g["quats"], "scales": g["scales"], "opacities": g["opacities"],
              "colors": colors}  # fmt: skip
    raw = {k: v.detach().float().contiguous().numpy().tobytes() for k, v in arrays.items()}
    return {k: base64.b64encode(b).decode() for k, b in raw.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternating baseline/ours rounds (medians)")
    ap.add_argument("--sizes", nargs="+", default=["11636x256x256", "104724x1280x720"], metavar="NxWxH")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("HEADSTUDIO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    head = FlameModel.procedural()
    rounds = f"medians of {args.rounds} rounds of {args.frames} frames"
    print(f"chromium {chromium}, SwiftShader, {os.cpu_count()} CPUs, {rounds}")
    print("| Gaussians | canvas | static SplatMesh (baseline) | animated (ours) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        for spec in args.sizes:
            n, w, h = (int(x) for x in spec.split("x"))
            per_face = max(1, round(n / head.num_faces))
            avatar = build_teacher_avatar(head, points_per_face=per_face)
            srv = ViewerServer(avatar, build_viewer_data(avatar), port=0)
            srv.start()
            try:
                page = browser.new_page(viewport={"width": w, "height": h}, device_scale_factor=1)
                page.goto(srv.url)
                page.wait_for_function("window.headstudioReady === true", timeout=600_000)
                page.evaluate("window.headstudio.settled()")
                world = page.evaluate_handle(DECODE, _world(avatar))
                base_ms, ours_ms = [], []
                for _ in range(args.rounds):  # alternate, so background load hits both alike
                    static = "([w, n]) => window.headstudio.benchmarkStatic(w, n)"
                    r = page.evaluate(static, [world, args.frames])
                    base_ms.append(r["ms_per_frame"])
                    r = page.evaluate("(n) => window.headstudio.benchmark(n, true)", args.frames)
                    ours_ms.append(r["ms_per_frame"])
                page.close()
            finally:
                srv.stop()
            base, ours = statistics.median(base_ms), statistics.median(ours_ms)
            cells = [f"{avatar.num_gaussians:,}", f"{w}×{h}"]
            cells += [f"{ms:.0f} ms ({1000 / ms:.2f} fps)" for ms in (base, ours)]
            print("| " + " | ".join(cells) + f" | {ours / base:.2f}× the baseline's time |", flush=True)
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
