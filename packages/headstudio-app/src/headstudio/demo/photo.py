"""The demo's photo part: an avatar of the person in a photograph, offline.

``headstudio demo --photo`` builds the avatar of scikit-image's astronaut photograph (Eileen
Collins, a NASA portrait in the public domain) or of a given photo with the offline photo pipeline
(:mod:`headstudio.train.photo`), then writes a picture grid (the photo, the avatar at the photo's
view, from the front, turned 30 deg either way, smiling, talking and from the back) and a
turntable video.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flame_core import FlameParams
from PIL import Image

from .._atomic import atomic_output
from ..avatar import Avatar
from ..errors import HeadStudioError
from ..output.rendering import render_turntable
from ..train.photo import orbit, square_on

__all__ = [
    "astronaut_photo",
    "photo_stills",
    "STILLS",
    "write_photo_outputs",
    "DEMO_PHOTO_SIZE",
    "DEMO_PHOTO_STEPS",
]

log = logging.getLogger(__name__)

#: the photo part's training resolution and steps (``--quick``: 96 px, 20 steps)
DEMO_PHOTO_SIZE = 256
DEMO_PHOTO_STEPS = 200
#: the stills of :func:`photo_stills`, in grid order
STILLS = ("photo view", "front", "+30", "-30", "smile", "talking", "back")


def astronaut_photo(folder: Path) -> Path:
    """scikit-image's astronaut photograph written to ``folder/astronaut.png``."""
    try:
        from skimage import data
    except ImportError as err:
        raise HeadStudioError(
            "the demo's photo is scikit-image's astronaut: `pip install scikit-image`, or give a photo of "
            "your own to «photo»."
        ) from err
    path = folder / "astronaut.png"
    with atomic_output(path) as tmp:
        Image.fromarray(data.astronaut()).save(tmp, format="PNG")
    return path


@torch.no_grad()
def photo_stills(
    avatar: Avatar, viewmat: torch.Tensor, K: torch.Tensor, size: int, view_pose: FlameParams
) -> dict[str, torch.Tensor]:
    """``{name: [size, size, 3]}`` renders on white: at the photo's view and expression
    (``viewmat``, ``K``, ``view_pose``), and with the photo's camera moved square in front of the
    neutral head: front, turned +-30 deg, smiling and talking (the viewer's presets, retargeted to
    the head) and the back."""
    from flame_core.retarget import expression_presets, fit_targets

    presets = expression_presets()
    fitted = fit_targets(avatar.head, presets)
    names = list(presets.names)

    def preset(name: str) -> FlameParams:
        i = names.index(name)
        return FlameParams.from_kwargs(
            {k: fitted[k][i : i + 1] for k in ("expression", "jaw_pose", "eye_pose") if k in fitted}
        )

    front = square_on(viewmat)

    def render(vm: torch.Tensor, pose: FlameParams | None = None) -> torch.Tensor:
        dev = avatar.means.device
        pose = (pose if pose is not None else FlameParams()).to(dev)
        out = avatar.render(vm[None].to(dev), K[None].to(dev), size, size, pose, background=(1.0, 1.0, 1.0))
        return out.rgb[0, 0].clamp(0, 1).cpu()

    return {
        "photo view": render(viewmat, view_pose),
        "front": render(front),
        "+30": render(orbit(front, 30.0)),
        "-30": render(orbit(front, -30.0)),
        "smile": render(front, preset("smile")),
        "talking": render(front, preset("open_mouth")),
        "back": render(orbit(front, 180.0)),
    }


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def write_photo_outputs(
    out: Path, run_dir: Path, avatar_path: Path, seconds: float, progress: bool = True, video_frames: int = 60
) -> dict[str, Any]:
    """For the photo avatar trained in ``run_dir``: ``out/photo_grid.png`` (the photo's crop, then
    :data:`STILLS`), ``out/photo_turntable.mp4`` and ``out/photo_demo.json``; returns the figures."""
    from ..train.photo import load_photo_record, restore_photo

    avatar = Avatar.load(avatar_path).eval()
    record = load_photo_record(run_dir)
    if record is None:
        raise HeadStudioError(f"'{run_dir}' holds no photo run (no photo.json).")
    setup = restore_photo(record, avatar.head)
    view = setup.view
    size = view.size[0]
    stills = photo_stills(avatar, view.viewmat, view.K, size, view.params())
    grid = np.concatenate([_u8(view.image)] + [_u8(stills[k]) for k in STILLS], 1)
    grid_path = out / "photo_grid.png"
    with atomic_output(grid_path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    turntable = out / "photo_turntable.mp4"
    render_turntable(
        avatar, turntable, num_frames=video_frames, fps=30.0, size=max(256, size), progress=progress
    )
    result = {
        "photo_sha256": record["sha256"],
        "reprojection_error_px": record["report"]["reprojection_error_px"],
        "fov_deg": record["report"]["fov_deg"],
        "size": int(size),
        "num_gaussians": avatar.num_gaussians,
        "seconds": round(seconds, 1),
        "avatar": str(avatar_path),
        "grid": str(grid_path),
        "turntable": str(turntable),
    }
    with atomic_output(out / "photo_demo.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    log.info(
        "photo demo: %d Gaussians in %.0f s (fit %.2f px)",
        avatar.num_gaussians,
        seconds,
        result["reprojection_error_px"],
    )
    return result
