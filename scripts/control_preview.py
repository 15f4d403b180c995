"""Offline end-to-end preview: procedural head -> MediaPipe landmarks -> ControlNet control maps.

Builds the open procedural head (flame_core), embeds its 478 MediaPipe landmarks, views it from
a ring of cameras, keeps only the landmarks each camera can see (mesh normals) and draws the
ControlNetMediaPipeFace condition images (fsds_guidance). Writes one PNG grid.

    python scripts/control_preview.py --output outputs/control_preview.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from flame_core.procedural import build_procedural_head
from fsds_guidance.control import draw_control_map, embedded_normals, landmark_visibility, vertex_normals
from PIL import Image


def look_at(azimuth_deg: float, distance: float, target: torch.Tensor) -> torch.Tensor:
    """World->camera [4,4] (OpenCV) for a camera on a horizontal circle; azimuth 0 faces +z."""
    a = math.radians(azimuth_deg)
    eye = target + distance * torch.tensor([math.sin(a), 0.0, math.cos(a)])
    forward = (target - eye) / (target - eye).norm()
    up = torch.tensor([0.0, 1.0, 0.0])
    right = torch.linalg.cross(forward, up)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward])  # rows: camera axes in world
    view = torch.eye(4)
    view[:3, :3] = rot
    view[:3, 3] = -rot @ eye
    return view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="outputs/control_preview.png")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    head = build_procedural_head()
    verts = torch.from_numpy(head.model_dict["v_template"]).float()[None]
    faces = torch.from_numpy(head.model_dict["f"]).long()
    emb = head.embedding
    lmk = emb(verts, faces)[0]  # [L,3]
    nrm = embedded_normals(vertex_normals(verts, faces), faces, emb.face_idx, emb.bary_coords)[0]
    target = lmk.mean(0)
    fx = args.size / (2 * math.tan(math.radians(20)))
    K = torch.tensor([[fx, 0, args.size / 2], [0, fx, args.size / 2], [0, 0, 1.0]])

    tiles = []
    for az in (-90, -45, 0, 45, 90):
        view = look_at(az, 0.45, target)
        pc = lmk @ view[:3, :3].T + view[:3, 3]
        nc = nrm @ view[:3, :3].T
        px = (pc @ K.T)[:, :2] / pc[:, 2:3]
        vis = landmark_visibility(pc[None], nc[None])
        img = draw_control_map(px[None], vis, emb.landmark_indices, size=args.size)[0]
        tiles.append((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, axis=1)).save(out)
    print(f"wrote {out} ({len(tiles)} views, {len(lmk)} landmarks)")


if __name__ == "__main__":
    main()
