"""The avatar's small parts: its constants, the DC colour of an SH coefficient, the result of a
render (:class:`AvatarRender`) and the checks of its Gaussians' shapes, apart from the
:class:`headstudio.avatar.Avatar` module that uses them (which exports them too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import rigged_gaussians as rg
import torch
from flame_core import FlameModel
from flame_core.params import FlameParams

from .errors import HeadStudioError

__all__ = [
    "SH_C0",
    "GAUSSIAN_PARAMS",
    "rgb_to_sh",
    "AvatarRender",
    "batch_size",
    "check_flame_params",
    "check_gaussians",
]

SH_C0 = 0.28209479177387814
#: Names of the Gaussian parameters (the dict ``rigged_gaussians.strategy`` grows and prunes).
GAUSSIAN_PARAMS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def rgb_to_sh(rgb: torch.Tensor | float) -> torch.Tensor | float:
    """DC SH coefficient whose rendered colour is ``rgb`` (0..1)."""
    return (rgb - 0.5) / SH_C0


@dataclass
class AvatarRender:
    """Output of :meth:`Avatar.render`.

    Attributes:
        rgb: ``[B, C, H, W, 3]`` colours (background composited).
        alpha: ``[B, C, H, W, 1]`` accumulated opacity.
        depth: ``[B, C, H, W, 1]`` expected depth, or ``None`` unless ``render(depth=True)``.
        meta: per-camera entries flattened over ``B*C`` (``rigged_gaussians.strategy``'s
            ``step_pre_backward`` keeps ``meta.means2d``'s gradient for densification).
        vertices: ``[B, V, 3]`` the posed mesh.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor | None
    meta: rg.RasterMeta
    vertices: torch.Tensor


def batch_size(params: FlameParams) -> int:
    """The one batch size ``B`` of the ``[B, ·]`` tensors of ``params`` (1 when none are given)."""
    sizes = {int(v.shape[0]) for v in params.kwargs().values()}
    if len(sizes) > 1:
        raise HeadStudioError(
            f"FLAME parameters have different batch sizes {sorted(sizes)}; give [B, ·] tensors with one B."
        )
    return sizes.pop() if sizes else 1


def check_flame_params(method: str, params: object, old_keywords: dict[str, object]) -> FlameParams:
    """``params`` of ``Avatar.<method>`` (``None``: the neutral pose), after refusing the keyword
    arguments the method took before :class:`FlameParams` (``jaw_pose=...``) in one line that
    names the fix.

    Raises:
        TypeError: FLAME keywords were given, or ``params`` is not a ``FlameParams``.
    """
    if old_keywords:
        names = sorted(old_keywords)
        given = ", ".join(f"{n}=..." for n in names if n in FlameParams.names()) or "..."
        raise TypeError(
            f"Avatar.{method}() takes the pose as one flame_core.FlameParams, not keyword arguments "
            f"{names}; pass params=FlameParams({given})"
        )
    if params is None:
        return FlameParams()
    if not isinstance(params, FlameParams):
        raise TypeError(
            f"Avatar.{method}(): params must be a flame_core.FlameParams, got {type(params).__name__}; "
            "wrap a dict of FLAME tensors with FlameParams.from_kwargs(d)"
        )
    return params


def check_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacity_logits: torch.Tensor,
    sh: torch.Tensor,
    face_ids: torch.Tensor,
    head: FlameModel | None = None,
) -> None:
    """The shapes of an avatar's Gaussians (``N`` rows each, ``sh [N, (d+1)², 3]``) and their
    triangle ids within ``head``'s faces; one :class:`HeadStudioError` line otherwise."""
    n = means.shape[0] if means.dim() == 2 else -1
    expected = {
        "means": (means, (n, 3)),
        "quats": (quats, (n, 4)),
        "log_scales": (log_scales, (n, 3)),
        "opacity_logits": (opacity_logits, (n,)),
        "face_ids": (face_ids, (n,)),
    }
    for name, (t, shp) in expected.items():
        if tuple(t.shape) != shp:
            raise HeadStudioError(f"Avatar: {name} must be {list(shp)} (N = {n}), got {list(t.shape)}.")
    if (
        sh.dim() != 3
        or sh.shape[0] != n
        or sh.shape[2] != 3
        or sh.shape[1] < 1
        or math.isqrt(sh.shape[1]) ** 2 != sh.shape[1]
    ):
        raise HeadStudioError(f"Avatar: sh must be [N, (d+1)², 3] with N = {n}, got {list(sh.shape)}.")
    if head is not None and n > 0:
        F = int(head.faces.shape[0])
        lo, hi = int(face_ids.min()), int(face_ids.max())
        if lo < 0 or hi >= F:
            raise HeadStudioError(
                f"Avatar: face_ids must be in 0..{F - 1} (the head's faces), got {lo}..{hi}."
            )
