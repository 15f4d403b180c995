"""Export a posed avatar as a standard 3DGS PLY for splat viewers.

The avatar file itself is the neutral pose; :func:`export_posed` writes the world-space Gaussians
at any FLAME expression / jaw pose / motion frame, through ``rigged_gaussians.ply.save_ply``, so
the result opens in common viewers (SuperSplat, antimatter15/splat, ...).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from flame_core.motion import MotionSequence
from rigged_gaussians.ply import save_ply

from ._atomic import atomic_output
from .avatar import Avatar
from .errors import HeadStudioError
from .motion import as_motion, fit_flame_kwargs

__all__ = ["parse_expression_args", "posed_flame_kwargs", "export_posed"]

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
                f"--expression '{item}' is not INDEX=VALUE; e.g. --expression 0=1.5 sets component 0 to 1.5."
            ) from None
        if not 0 <= i < num_expression:
            raise HeadStudioError(
                f"--expression index {i} is out of range; this head has components 0..{num_expression - 1}."
            )
        if not math.isfinite(v):
            raise HeadStudioError(f"--expression '{item}': the value must be a finite number, e.g. 1.5.")
        out[i] = v
    return out


def posed_flame_kwargs(
    num_expression: int,
    expression: dict[int, float] | None = None,
    jaw: float | None = None,
    motion: MotionSequence | str | Path | None = None,
    motion_frame: int = 0,
) -> dict[str, torch.Tensor]:
    """FLAME parameters for one pose (``B = 1``): a motion frame, then explicit overrides.

    Args:
        num_expression: the head's expression dimension E.
        expression: ``{index: value}`` set on top of the motion frame (or zeros).
        jaw: jaw opening in radians (rotation about the x axis; positive opens the mouth).
        motion: a ``MotionSequence`` or motion file; ``None`` starts from the neutral pose.
        motion_frame: which frame of ``motion``.

    Returns:
        kwargs for ``Avatar.pose`` / ``Avatar.world_gaussians``: ``expression [1, E]``,
        ``jaw_pose [1, 3]`` and, from a motion, the other poses ``[1, ·]``.
    """
    kw: dict[str, torch.Tensor] = {}
    if motion is not None:
        seq = as_motion(motion)
        if not 0 <= motion_frame < len(seq):
            raise HeadStudioError(
                f"--motion-frame {motion_frame} is out of range; the motion has frames 0..{len(seq) - 1}."
            )
        kw = {k: v.float() for k, v in seq.flame_kwargs([motion_frame]).items()}
    kw = fit_flame_kwargs(kw, num_expression)
    if expression:
        expr = kw.get("expression", torch.zeros(1, num_expression)).clone()
        for i, v in expression.items():
            expr[0, i] = v
        kw["expression"] = expr
    if jaw is not None:
        jp = kw.get("jaw_pose", torch.zeros(1, 3)).clone()
        jp[0, 0] = float(jaw)
        kw["jaw_pose"] = jp
    return kw


def export_posed(
    avatar: Avatar, out_path: str | Path, flame_kwargs: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write the avatar's world-space Gaussians at one pose to a PLY (atomically).

    Args:
        avatar: the avatar (its ``world_gaussians(**flame) -> dict(means [N,3], quats [N,4],
            scales [N,3] linear, opacities [N] in 0..1, sh [N,K,3])`` and ``metadata``).
        out_path: the ``.ply`` to write.
        flame_kwargs: the pose (``B = 1`` tensors); ``None`` is the neutral pose.

    Returns:
        ``out_path`` as a ``Path``.
    """
    out = Path(out_path)
    if out.suffix.lower() != ".ply":
        raise HeadStudioError(f"output '{out}' must end in .ply.")
    kw = flame_kwargs or {}
    try:
        dev = next(avatar.parameters()).device
        kw = {k: v.to(dev) for k, v in kw.items()}
    except (AttributeError, StopIteration):
        pass
    with torch.no_grad():
        g = avatar.world_gaussians(**kw)
    pose = {k: v.detach().cpu().reshape(-1).tolist() for k, v in kw.items()}
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
