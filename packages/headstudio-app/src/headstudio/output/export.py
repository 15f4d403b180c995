"""Export an avatar for other tools and for people: posed PLYs, PLY sequences, a web folder.

* :func:`export_posed` (``--format ply``): the world-space Gaussians at any FLAME expression /
  jaw pose / motion frame, through ``rigged_gaussians.ply.save_ply``, so the result opens in
  common viewers (SuperSplat, antimatter15/splat, ...). The avatar file itself is the neutral pose.
* :func:`export_ply_sequence` (``--format ply-sequence``): one such PLY per motion frame, for
  tools that import sequences.
* :func:`export_web` (``--format web``): a self-contained folder with the browser viewer, the
  avatar, the motion baked to 16-bit vertices and the audio; it plays from ``file://`` or any
  static host, with no server and no network.

The folders are written beside the output and swapped in whole
(:func:`headstudio._atomic.atomic_folder`): a killed export leaves the previous complete folder,
and the next export of it sweeps what the killed one left. A non-empty folder that is not an
earlier export of the same format is refused.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from flame_core import FlameParams
from flame_core.motion import MotionSequence
from rigged_gaussians.ply import save_ply
from tqdm.auto import tqdm

from .._atomic import atomic_folder, atomic_output
from ..avatar import Avatar
from ..errors import HeadStudioError
from ..head_motion import as_motion, default_motion, fit_flame_params
from .viewer.assets import build_viewer_data, pack_arrays
from .viewer.bake import bake_motion, head_model_arrays
from .viewer.bundle import static_files

__all__ = [
    "parse_expression_args",
    "posed_flame_params",
    "export_posed",
    "export_ply_sequence",
    "export_web",
]

log = logging.getLogger(__name__)


def parse_expression_args(items: Sequence[str], num_expression: int) -> dict[int, float]:
    """Parse ``["0=1.5", "3=-0.5"]`` into ``{component index: value}``.

    Raises:
        HeadStudioError: malformed item, non-numeric or non-finite value, or index outside
            ``0..num_expression-1``.
    """
    out: dict[int, float] = {}
    for item in items:
        key, sep, val = item.partition("=")
        try:
            if not sep:
                raise ValueError
            i, v = int(key), float(val)
        except ValueError:
            raise HeadStudioError(
                f"«expression» '{item}' is not INDEX=VALUE; e.g. «expression» 0=1.5 sets component 0 to 1.5."
            ) from None
        if not 0 <= i < num_expression:
            raise HeadStudioError(
                f"«expression» index {i} is out of range; this head has components 0..{num_expression - 1}."
            )
        if not math.isfinite(v):
            raise HeadStudioError(f"«expression» '{item}': the value must be a finite number, e.g. 1.5.")
        out[i] = v
    return out


def posed_flame_params(
    num_expression: int,
    expression: dict[int, float] | None = None,
    jaw: float | None = None,
    motion: MotionSequence | str | Path | None = None,
    motion_frame: int = 0,
) -> FlameParams:
    """FLAME parameters for one pose (``B = 1``): a motion frame, then explicit overrides.

    Args:
        num_expression: the head's expression dimension E.
        expression: ``{index: value}`` set on top of the motion frame (or zeros).
        jaw: jaw opening in radians (rotation about the x axis; positive opens the mouth).
        motion: a ``MotionSequence`` or motion file; ``None`` starts from the neutral pose.
        motion_frame: which frame of ``motion``.

    Returns:
        the pose for ``Avatar.pose`` / ``Avatar.world_gaussians``: ``expression [1, E]``,
        ``jaw_pose [1, 3]`` and, from a motion, the other poses ``[1, ·]``.
    """
    params = FlameParams()
    if motion is not None:
        seq = as_motion(motion)
        if not 0 <= motion_frame < len(seq):
            raise HeadStudioError(
                f"«motion_frame» {motion_frame} is out of range; the motion has frames 0..{len(seq) - 1}."
            )
        params = seq.params([motion_frame]).to(torch.float32)
    params = fit_flame_params(params, num_expression)
    if expression:
        expr = (
            params.expression if params.expression is not None else torch.zeros(1, num_expression)
        ).clone()
        for i, v in expression.items():
            expr[0, i] = v
        params = replace(params, expression=expr)
    if jaw is not None:
        jp = (params.jaw_pose if params.jaw_pose is not None else torch.zeros(1, 3)).clone()
        jp[0, 0] = float(jaw)
        params = replace(params, jaw_pose=jp)
    return params


def export_posed(avatar: Avatar, out_path: str | Path, params: FlameParams | None = None) -> Path:
    """Write the avatar's world-space Gaussians at one pose to a PLY (atomically).

    Args:
        avatar: the avatar (its ``world_gaussians(params) -> dict(means [N,3], quats [N,4],
            scales [N,3] linear, opacities [N] in 0..1, sh [N,K,3])`` and ``metadata``).
        out_path: the ``.ply`` to write.
        params: the pose (``B = 1`` tensors); ``None`` is the neutral pose.

    Returns:
        ``out_path`` as a ``Path``.
    """
    out = Path(out_path)
    if out.suffix.lower() != ".ply":
        raise HeadStudioError(f"output '{out}' must end in .ply.")
    params = params if params is not None else FlameParams()
    try:
        params = params.to(next(avatar.parameters()).device)
    except (AttributeError, StopIteration):
        pass
    with torch.no_grad():
        g = avatar.world_gaussians(params)
    pose = {k: v.detach().cpu().reshape(-1).tolist() for k, v in params.kwargs().items()}
    metadata = {
        "posed": True,
        "pose": pose,
        "source_avatar": dict(avatar.metadata or {}),
    }

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    with atomic_output(out) as tmp:
        save_ply(
            tmp, arr(g["means"]), arr(g["quats"]), arr(g["scales"]), arr(g["opacities"]), arr(g["sh"]),
            extra={}, metadata=metadata,
        )  # fmt: skip
    log.info("exported %d Gaussians to %s", g["means"].shape[0], out)
    return out


def _motion_or_default(
    avatar: Avatar, motion: MotionSequence | str | Path | None, audio: str | Path | None
) -> MotionSequence:
    return default_motion(avatar.head, audio) if motion is None else as_motion(motion)


def export_ply_sequence(
    avatar: Avatar,
    out_dir: str | Path,
    motion: MotionSequence | str | Path | None = None,
    progress: bool = True,
) -> list[Path]:
    """One world-space 3DGS PLY per motion frame: ``out_dir/frame_00000.ply`` ...

    Args:
        avatar: the ``Avatar``.
        out_dir: the folder (created; an earlier sequence there is replaced).
        motion: a ``MotionSequence`` or motion file; ``None``: the procedural talking motion.
        progress: show a tqdm bar.

    Returns:
        The paths written, in frame order.
    """
    seq = _motion_or_default(avatar, motion, None)
    num_expr = int(getattr(avatar.head, "num_expression", 100))
    out = Path(out_dir)
    names = [f"frame_{i:05d}.ply" for i in range(len(seq))]

    def owned(d: Path) -> bool:
        return all(p.name.startswith("frame_") and p.suffix == ".ply" for p in d.iterdir())

    with (
        atomic_folder(out, owned) as tmp,
        tqdm(total=len(seq), desc="ply-sequence", unit="frame", disable=not progress) as bar,
    ):
        for i, name in enumerate(names):
            export_posed(avatar, tmp / name, fit_flame_params(seq.params([i]).to(torch.float32), num_expr))
            bar.update(1)
    log.info("exported %d frames to %s", len(names), out)
    return [out / n for n in names]


#: Files of an exported web folder besides the bundle (how :func:`export_web` recognises its own).
WEB_DATA_FILE = "data.js"


def export_web(
    avatar: Avatar,
    out_dir: str | Path,
    motion: MotionSequence | str | Path | None = None,
    audio: str | Path | None = None,
    include_head_model: bool = False,
    presets: dict[str, dict[str, torch.Tensor]] | None = None,
    progress: bool = True,
) -> Path:
    """A self-contained viewer folder: ``index.html``, ``viewer.js``, ``data.js`` (+ the audio).

    ``data.js`` holds the avatar, the motion baked to 16-bit vertices and, for the open
    procedural head (or a FLAME head with ``include_head_model``), the head model the sliders
    and presets need; a licensed FLAME head's model stays out by default (the FLAME licence does
    not allow passing it on), so such a folder plays its baked motion only.

    Args:
        avatar: the ``Avatar``.
        out_dir: the folder (created; an earlier web export there is replaced).
        motion: a ``MotionSequence`` or motion file; ``None``: the procedural talking motion.
        audio: an audio file copied beside the page and played with the motion.
        include_head_model: ship a FLAME head's model too (always shipped for the procedural head).
        presets: fitted presets (``viewer.presets.fit_presets``); used only with a head model.
        progress: show tqdm bars.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    out = Path(out_dir)
    seq = _motion_or_default(avatar, motion, audio)
    procedural = str(getattr(avatar.head, "source", "")) == "procedural"
    with_model = procedural or include_head_model
    presets = presets if with_model else None
    data = build_viewer_data(avatar, presets, audio=audio)
    num_sliders = len(data.manifest["head"]["sliders"])
    m = data.manifest
    arrays, spec = bake_motion(avatar, seq, progress=progress)
    data.blobs["motion.bin"], m["buffers"]["motion.bin"] = pack_arrays(arrays)
    m["motion"] = {**spec, "file": "motion.bin"}
    if with_model:
        arrays, spec = head_model_arrays(avatar, presets or {}, num_sliders)
        data.blobs["head.bin"], m["buffers"]["head.bin"] = pack_arrays(arrays)
        m["head_model"] = {**spec, "file": "head.bin"}
    payload = {
        "manifest": m,
        "blobs": {name: base64.b64encode(blob).decode("ascii") for name, blob in data.blobs.items()},
    }

    def owned(d: Path) -> bool:
        return (d / WEB_DATA_FILE).is_file() and (d / "viewer.js").is_file()

    with atomic_folder(out, owned) as tmp:
        for name, path in static_files().items():
            body = path.read_bytes()
            if name == "index.html":
                body = body.replace(
                    b"<!-- headstudio:data -->", f'<script src="{WEB_DATA_FILE}"></script>'.encode()
                )
            (tmp / name).write_bytes(body)
        js = "window.HEADSTUDIO_DATA = " + json.dumps(payload, separators=(",", ":"), allow_nan=False) + ";\n"
        with open(tmp / WEB_DATA_FILE, "w", encoding="ascii") as fh:
            fh.write(js)
        if audio is not None:
            shutil.copyfile(audio, tmp / m["audio"])
    log.info("exported the web viewer (%d Gaussians, %d frames) to %s", avatar.num_gaussians, len(seq), out)
    return out
