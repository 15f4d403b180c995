"""Fidelity of the glb export (issue 24): the glTF skin against the head's LBS, the baked texture
against the Gaussian render.

``python benchmarks/bench_engine_export.py [--avatar A.ply] [--frames 60] [--size 256]``: without
an avatar, the procedural teacher. Prints one table; numbers go to docs/ENGINE_EXPORT.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from flame_core import FlameModel
from flame_core.motion import procedural_talking_motion
from headstudio.avatar import Avatar
from headstudio.demo.teacher import build_teacher_avatar
from headstudio.output.gltf.fidelity import gltf_skinned_vertices, psnr, read_head_mesh, render_textured_mesh
from headstudio.output.gltf.mesh import head_mesh
from headstudio.output.gltf.writer import export_glb
from headstudio.output.rendering import ViewSettings, frame_avatar, orbit_views
from scipy.ndimage import binary_erosion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", type=Path)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    av = Avatar.load(args.avatar) if args.avatar else build_teacher_avatar(FlameModel.procedural())
    E = int(av.head.num_expression)
    motion = procedural_talking_motion(num_frames=args.frames, fps=30.0, num_expression=E, seed=0)
    with tempfile.TemporaryDirectory() as d:
        glb = Path(d) / "a.glb"
        export_glb(av, glb, motion=motion)
        vmap = head_mesh(av).vmap
        errs = []
        for f in range(len(motion)):
            with torch.no_grad():
                ref = av.pose(motion.params([f]).to(torch.float32))[0].numpy()[vmap]
            errs.append(np.linalg.norm(gltf_skinned_vertices(glb, frame=f) - ref, axis=1))
        e = np.stack(errs) * 1e3
        pose_rows = av.head.dirs[av.head.num_shape + E :]
        print(
            f"skin+morph vs LBS over {len(motion)} frames: max {e.max():.4f} mm, mean {e.mean():.5f} mm "
            f"(pose-corrective rows: {pose_rows.shape[0]}, largest entry {float(pose_rows.abs().max()):.2e})"
        )
        m = read_head_mesh(glb)
        vs = ViewSettings()
        target, dist = frame_avatar(av, vs)
        W = args.size
        print("view   PSNR frame   PSNR inside the mesh")
        for az in (0.0, 45.0, -45.0):
            vm, K = orbit_views([az], 0.0, dist, vs.fovy_deg, W, W, target)
            with torch.no_grad():
                g = av.render(vm, K, W, W).rgb[0, 0].numpy()
            r, hit = render_textured_mesh(m["positions"], m["uvs"], m["indices"], m["texture"],
                                          vm[0].double().numpy(), K[0].double().numpy(), W, W)  # fmt: skip
            inner = binary_erosion(hit, iterations=2)
            print(f"{az:+5.0f}° {psnr(g, r):8.2f} dB {psnr(g, r, inner):10.2f} dB")


if __name__ == "__main__":
    main()
