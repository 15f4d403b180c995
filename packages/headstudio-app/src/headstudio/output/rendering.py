"""Rendering an avatar to videos and still images.

* :func:`render_turntable` renders a full orbit around the neutral avatar to an MP4.
* :func:`render_motion` animates the avatar with a FLAME motion (TalkSHOW / SHOW / ``.npz`` via
  :func:`headstudio.head_motion.load_motion`, or the procedural talking motion) to an MP4, optionally
  with audio.
* :func:`render_stills` renders N views around the avatar to one PNG grid or a directory of PNGs.

They use the avatar's ``head.num_expression``, ``pose(params)`` → ``[B, V, 3]`` and
``render(viewmats [B, C, 4, 4], Ks [B, C, 3, 3], width, height, params, background=...)`` →
``rgb [B, C, H, W, 3]`` (:class:`headstudio.avatar.Avatar`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from flame_core import FlameParams
from flame_core.motion import MotionSequence
from PIL import Image
from tqdm.auto import tqdm

from .._atomic import atomic_output
from ..avatar import Avatar
from ..cameras import orbit_camera
from ..errors import HeadStudioError
from ..head_motion import as_motion, default_motion, fit_flame_params
from ..video import VideoWriter

__all__ = [
    "ViewSettings",
    "frame_avatar",
    "orbit_views",
    "render_views",
    "render_turntable",
    "render_motion",
    "motion_frames",
    "render_stills",
    "check_size",
]

log = logging.getLogger(__name__)

MAX_SIZE = 4096


def check_size(width: int, height: int | None = None) -> tuple[int, int]:
    """Validate an output resolution; returns ``(width, height)``.

    Raises:
        HeadStudioError: non-positive or larger than 4096 pixels.
    """
    height = width if height is None else height
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or v < 8 or v > MAX_SIZE:
            raise HeadStudioError(
                f"impossible resolution: {name} = {v}; give a size between 8 and {MAX_SIZE} pixels."
            )
    return int(width), int(height)


@dataclass(frozen=True)
class ViewSettings:
    """Camera framing for videos and stills.

    Attributes:
        fovy_deg: vertical field of view.
        elevation_deg: camera elevation above the horizontal plane.
        distance: camera distance to the target; ``None`` frames the head automatically.
        margin: with automatic distance, how much larger than the head's bounding sphere the view is.
        background: RGB in 0..1.
    """

    fovy_deg: float = 30.0
    elevation_deg: float = 0.0
    distance: float | None = None
    margin: float = 1.1
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)


def frame_avatar(avatar: Avatar, settings: ViewSettings) -> tuple[torch.Tensor, float]:
    """Target point (head centre, ``[3]``) and camera distance that frame the neutral head."""
    with torch.no_grad():
        verts = avatar.pose()[0]  # [V, 3]
    lo, hi = verts.min(0).values, verts.max(0).values
    centre = (lo + hi) / 2
    if settings.distance is not None:
        return centre, float(settings.distance)
    radius = float((verts - centre).norm(dim=-1).max())
    return centre, settings.margin * radius / math.sin(math.radians(settings.fovy_deg) / 2)


def orbit_views(
    azimuths_deg: Sequence[float],
    elevation_deg: float | Sequence[float],
    distance: float,
    fovy_deg: float,
    width: int,
    height: int,
    target: torch.Tensor | Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras on an orbit (``headstudio.cameras.orbit_camera``): ``(viewmats [C, 4, 4], Ks [C, 3, 3])``."""
    elevs = [elevation_deg] * len(azimuths_deg) if isinstance(elevation_deg, (int, float)) else elevation_deg
    vms, ks = [], []
    for az, el in zip(azimuths_deg, elevs):
        vm, k = orbit_camera(float(az), float(el), float(distance), float(fovy_deg), width, height, target)
        vms.append(torch.as_tensor(vm, dtype=torch.float32))
        ks.append(torch.as_tensor(k, dtype=torch.float32))
    return torch.stack(vms), torch.stack(ks)


def _device(avatar: Avatar) -> torch.device:
    try:
        return next(avatar.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _to_device(avatar: Avatar, *ts: torch.Tensor) -> list[torch.Tensor]:
    dev = _device(avatar)
    return [t.to(dev) for t in ts]


def render_views(
    avatar: Avatar,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    chunk: int = 8,
    params: FlameParams | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 images ``[H, W, 3]`` of one pose (``params``, ``[1, ·]`` tensors; ``None``:
    neutral) seen by cameras ``viewmats [C, 4, 4]``."""
    for i in range(0, viewmats.shape[0], chunk):
        vm, k = _to_device(avatar, viewmats[i : i + chunk][None], Ks[i : i + chunk][None])
        with torch.no_grad():
            out = avatar.render(vm, k, width, height, params, background=tuple(background))
        rgb = out.rgb[0].clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu().numpy()  # [c, H, W, 3]
        yield from rgb


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


def render_turntable(
    avatar: Avatar,
    out_path: str | Path,
    num_frames: int = 120,
    fps: float = 30.0,
    size: int | tuple[int, int] = 512,
    settings: ViewSettings = ViewSettings(),
    progress: bool = True,
) -> int:
    """Render a 360° orbit around the neutral avatar (azimuth from 0 = front) to an MP4.

    Returns:
        The number of frames written.
    """
    if num_frames < 1:
        raise HeadStudioError(f"a turntable needs at least 1 frame, got {num_frames}.")
    w, h = check_size(*size) if isinstance(size, tuple) else check_size(size)
    target, dist = frame_avatar(avatar, settings)
    az = np.linspace(0.0, 360.0, num_frames, endpoint=False)
    vms, ks = orbit_views(az, settings.elevation_deg, dist, settings.fovy_deg, w, h, target)
    with VideoWriter(out_path, fps) as vw, _progress(num_frames, "turntable", progress) as bar:
        for img in render_views(avatar, vms, ks, w, h, settings.background):
            vw.write(img)
            bar.update(1)
    return vw.num_frames


def render_motion(
    avatar: Avatar,
    motion: MotionSequence | str | Path | None,
    out_path: str | Path,
    audio: str | Path | None = None,
    fps: float | None = None,
    size: int | tuple[int, int] = 512,
    settings: ViewSettings = ViewSettings(),
    num_frames: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> int:
    """Animate the avatar with a FLAME motion and write an MP4 (front view).

    Args:
        avatar: the avatar (see module docstring).
        motion: a ``MotionSequence``, a motion file path, or ``None`` for
            :func:`~headstudio.head_motion.default_motion` (as long as ``audio`` when given, else
            ``num_frames`` or 4 s).
        out_path: the ``.mp4`` to write (atomically).
        audio: optional audio muxed into the video (padded with silence or cut to its length).
        fps: video frame rate; the motion is resampled to it. Default: the motion's own rate.
        size: output size (square int or ``(width, height)``).
        settings: camera framing.
        num_frames: optional cap on the number of frames.
        batch_size: poses rendered per call.
        progress: show a tqdm bar.

    Returns:
        The number of frames written.
    """
    w, h = check_size(*size) if isinstance(size, tuple) else check_size(size)
    if fps is not None and not (0 < fps <= 240):
        raise HeadStudioError(f"fps = {fps} is out of range; give a frame rate between 1 and 240.")
    if motion is None:
        motion = default_motion(avatar.head, audio, float(fps or 30.0), num_frames)
    else:
        motion = as_motion(motion)
    if fps is not None and abs(float(motion.fps) - fps) > 1e-6:
        motion = motion.resample(fps)
    total = len(motion) if num_frames is None else min(len(motion), num_frames)
    if total < 1:
        raise HeadStudioError("the motion has no frames; nothing to render.")
    writer = VideoWriter(out_path, float(motion.fps), audio=audio)
    with writer as vw, _progress(total, "animate", progress) as bar:
        for img in motion_frames(avatar, motion, (w, h), settings, total, batch_size):
            vw.write(img)
            bar.update(1)
    return vw.num_frames


def motion_frames(
    avatar: Avatar,
    motion: MotionSequence,
    size: tuple[int, int],
    settings: ViewSettings = ViewSettings(),
    num_frames: int | None = None,
    batch_size: int = 8,
) -> Iterator[np.ndarray]:
    """Yield the uint8 frames ``[H, W, 3]`` of :func:`render_motion` (front view, ``settings``'
    framing) of the first ``num_frames`` (default all) frames of ``motion``, without writing them."""
    w, h = size
    total = len(motion) if num_frames is None else min(len(motion), num_frames)
    target, dist = frame_avatar(avatar, settings)
    vms, ks = orbit_views([0.0], settings.elevation_deg, dist, settings.fovy_deg, w, h, target)
    num_expr = int(avatar.head.num_expression)
    for start in range(0, total, batch_size):
        idx = list(range(start, min(start + batch_size, total)))
        params = fit_flame_params(motion.params(idx), num_expr).to(_device(avatar))
        b = len(idx)
        vm, k = _to_device(avatar, vms[None].expand(b, -1, -1, -1), ks[None].expand(b, -1, -1, -1))
        with torch.no_grad():
            out = avatar.render(vm, k, w, h, params, background=settings.background)
        yield from out.rgb[:, 0].clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu().numpy()


def _grid(images: Sequence[np.ndarray], cols: int) -> np.ndarray:
    h, w = images[0].shape[:2]
    rows = math.ceil(len(images) / cols)
    grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
    return grid


def _save_png(img: np.ndarray, path: Path) -> None:
    with atomic_output(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def render_stills(
    avatar: Avatar,
    out_path: str | Path,
    num_views: int = 4,
    size: int | tuple[int, int] = 512,
    settings: ViewSettings = ViewSettings(),
    params: FlameParams | None = None,
) -> list[Path]:
    """Render ``num_views`` views evenly spaced in azimuth (0 = front), of the pose ``params``
    (``[1, ·]`` tensors; ``None``: neutral).

    ``out_path`` ending in ``.png`` gets one grid image (views side by side, up to 4 per row);
    any other path is a directory that receives ``view_000.png`` ... .

    Returns:
        The paths written.
    """
    if not 1 <= num_views <= 360:
        raise HeadStudioError(f"«views» {num_views} is out of range; give between 1 and 360 views.")
    w, h = check_size(*size) if isinstance(size, tuple) else check_size(size)
    out = Path(out_path)
    if out.suffix and out.suffix.lower() != ".png":
        raise HeadStudioError(f"output '{out}' must be a .png file or a directory.")
    target, dist = frame_avatar(avatar, settings)
    az = np.linspace(0.0, 360.0, num_views, endpoint=False)
    vms, ks = orbit_views(az, settings.elevation_deg, dist, settings.fovy_deg, w, h, target)
    images = list(render_views(avatar, vms, ks, w, h, settings.background, params=params))
    if out.suffix.lower() == ".png":
        _save_png(_grid(images, min(4, num_views)), out)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = out / f"view_{i:03d}.png"
        _save_png(img, p)
        paths.append(p)
    return paths
