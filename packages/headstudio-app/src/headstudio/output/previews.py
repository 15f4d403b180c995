"""Training previews: a grid of views × expressions of the avatar, written as a PNG.

Rows are expressions (neutral, a smile, an open jaw), columns are views (front, 45°, side,
back) on a white background. Rendering a preview consumes no random numbers, so previews never
change a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from flame_core import FlameParams
from PIL import Image

from .._atomic import atomic_output
from ..avatar import Avatar
from .rendering import ViewSettings, frame_avatar, orbit_views

__all__ = ["PREVIEW_AZIMUTHS", "preview_size", "preview_grid", "save_preview"]

PREVIEW_AZIMUTHS = (0.0, 45.0, 90.0, 180.0)
PREVIEW_MIN_SIZE = 64
PREVIEW_MAX_SIZE = 128


def preview_size(resolution: int) -> int:
    """Cell size of the grid for a run at ``resolution`` pixels (64 to 128)."""
    return int(max(PREVIEW_MIN_SIZE, min(resolution, PREVIEW_MAX_SIZE)))


def preview_grid(avatar: Avatar, size: int) -> np.ndarray:
    """``[3·S, 4·S, 3]`` uint8 grid of ``avatar`` (module docstring), ``S = size``."""
    s = int(size)
    dev = avatar.means.device
    e = int(avatar.head.num_expression)
    expr = torch.zeros(3, e)
    if e > 0:
        expr[1, 0] = 1.5
    jaw = torch.zeros(3, 3)
    jaw[2, 0] = 0.3
    settings = ViewSettings(fovy_deg=30.0)
    was_training = avatar.training
    avatar.eval()
    with torch.no_grad():
        target, dist = frame_avatar(avatar, settings)
        vms, ks = orbit_views(PREVIEW_AZIMUTHS, 0.0, dist, settings.fovy_deg, s, s, target.cpu())
        c = len(PREVIEW_AZIMUTHS)
        vms = vms[None].expand(3, c, 4, 4).to(dev)
        ks = ks[None].expand(3, c, 3, 3).to(dev)
        pose = FlameParams(expression=expr, jaw_pose=jaw).to(dev)
        out = avatar.render(vms, ks, s, s, pose, background=(1.0, 1.0, 1.0))
    avatar.train(was_training)
    rgb = out.rgb.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu()  # [3, C, S, S, 3]
    return rgb.permute(0, 2, 1, 3, 4).reshape(3 * s, c * s, 3).numpy()


def save_preview(avatar: Avatar, path: str | Path, size: int) -> Path:
    """Write :func:`preview_grid` to the PNG ``path`` (atomically); returns it."""
    p = Path(path)
    with atomic_output(p) as tmp:
        Image.fromarray(preview_grid(avatar, size)).save(tmp, format="PNG")
    return p
