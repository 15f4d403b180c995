"""The avatar: a head model, its learnable FLAME shape, and Gaussians rigged to its triangles.

Each Gaussian lives in the local frame of one triangle (``face_ids``); posing the head with any
FLAME parameters moves it (docs/METHOD.md, "Rigged Gaussians"): ``μ' = √S·R·μ + T``,
``R(q') = R·R(q)``, ``s' = √S·exp(log s)``. Opacities are stored as logits, colours as SH
coefficients ``[N, K, 3]`` (``K = (sh_degree + 1)²``; the DC term of colour ``c`` is
``(c − 0.5) / 0.28209479``).

The file format is one standard 3DGS PLY (:mod:`headstudio.avatar_io`): world space at the neutral
pose, the rigging in extra properties, the head's identity in the metadata. Loading checks the
head model's identity hash, so an avatar is never posed on another head.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import rigged_gaussians as rg
import torch
from flame_core import FlameModel, FlameParams
from rigged_gaussians.ply import save_ply
from torch import nn

from ._atomic import atomic_output
from .avatar_head import check_face_ids, head_record, resolve_head, shape_for_head
from .avatar_init import uniform_superresolution_init
from .avatar_io import FORMAT, FORMAT_VERSION, AvatarFile, read_avatar_file, rigging_extras
from .avatar_types import (
    GAUSSIAN_PARAMS,
    SH_C0,
    AvatarRender,
    batch_size,
    check_flame_params,
    check_gaussians,
    rgb_to_sh,
)
from .config import InitConfig, TrainConfig
from .errors import HeadStudioError

__all__ = ["Avatar", "AvatarRender", "SH_C0", "GAUSSIAN_PARAMS", "rgb_to_sh"]

log = logging.getLogger(__name__)


class Avatar(nn.Module):
    """A rigged Gaussian head avatar.

    Args:
        head: the head model the Gaussians are rigged to.
        means: ``[N, 3]`` local means.
        quats: ``[N, 4]`` local rotations (wxyz, not necessarily normalised).
        log_scales: ``[N, 3]`` local log-scales.
        opacity_logits: ``[N]`` opacity logits (opacity = sigmoid).
        sh: ``[N, K, 3]`` SH coefficients, ``K = (sh_degree + 1)²``.
        face_ids: ``[N]`` triangle of each Gaussian.
        shape: ``[1, S]`` FLAME shape β (``None``: zeros of ``head.num_shape``).
        metadata: free-form JSON-serialisable information kept in the file; a loaded avatar's
            also holds the ``prompt`` and ``config`` it was saved with.
    """

    def __init__(
        self,
        head: FlameModel,
        means: torch.Tensor,
        quats: torch.Tensor,
        log_scales: torch.Tensor,
        opacity_logits: torch.Tensor,
        sh: torch.Tensor,
        face_ids: torch.Tensor,
        shape: torch.Tensor | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_gaussians(means, quats, log_scales, opacity_logits, sh, face_ids, head)
        object.__setattr__(self, "_head", head)  # not a submodule: its buffers stay out of state_dict
        self.means = nn.Parameter(means.detach().float().clone())
        self.quats = nn.Parameter(quats.detach().float().clone())
        self.log_scales = nn.Parameter(log_scales.detach().float().clone())
        self.opacity_logits = nn.Parameter(opacity_logits.detach().float().clone())
        self.sh = nn.Parameter(sh.detach().float().clone())
        self.register_buffer("face_ids", face_ids.detach().long().clone())
        if shape is None:
            shape = torch.zeros(1, int(head.num_shape))
        shape = torch.as_tensor(shape, dtype=torch.float32).reshape(1, -1)
        self.shape = nn.Parameter(shape.detach().clone().to(self.means.device))
        self.metadata: dict[str, Any] = dict(metadata or {})

    # ------------------------------------------------------------------------- construction

    @classmethod
    def initialize(
        cls,
        head: FlameModel,
        init_cfg: InitConfig | None = None,
        generator: torch.Generator | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Avatar:
        """A fresh avatar by uniform super-resolution on the neutral head (docs/METHOD.md,
        "Initialisation").

        Opacity ``init_cfg.opacity``, grey ``init_cfg.color``, identity rotations, the kNN scales;
        shape β zero. Parameters are created on the head's device.
        """
        cfg = init_cfg or InitConfig()
        device = head.faces.device
        with torch.no_grad():
            verts = head().vertices[0]
        g = uniform_superresolution_init(verts, head.faces, cfg.points_per_face, cfg.knn, generator)
        n = g["means"].shape[0]
        k = (cfg.sh_degree + 1) ** 2
        sh = torch.zeros(n, k, 3)
        sh[:, 0, :] = rgb_to_sh(cfg.color)
        logit = math.log(cfg.opacity / (1.0 - cfg.opacity))
        avatar = cls(
            head,
            g["means"],
            g["quats"],
            g["log_scales"],
            torch.full((n,), logit),
            sh,
            g["face_ids"],
            torch.zeros(1, int(head.num_shape)),
            metadata,
        )
        return avatar.to(device)

    # ----------------------------------------------------------------------------- properties

    @property
    def head(self) -> FlameModel:
        """The head model (moved with the avatar by ``.to``)."""
        return self._head

    @property
    def sh_degree(self) -> int:
        """Degree of the SH colours (0 for one RGB coefficient)."""
        return math.isqrt(int(self.sh.shape[1])) - 1

    @property
    def num_gaussians(self) -> int:
        """N."""
        return int(self.means.shape[0])

    def _apply(self, fn: Any, recurse: bool = True) -> Avatar:  # noqa: D401 - nn.Module hook
        super()._apply(fn, recurse)
        self._head._apply(fn)
        return self

    def gaussian_params(self) -> dict[str, nn.Parameter]:
        """The Gaussian parameters by name: ``means, quats, log_scales, opacity_logits, sh``."""
        return {name: getattr(self, name) for name in GAUSSIAN_PARAMS}

    def set_gaussians(self, params: dict[str, torch.Tensor], face_ids: torch.Tensor) -> None:
        """Replace the Gaussians (after densification); tensors become the new parameters.

        ``nn.Parameter`` values are used as they are (so an optimizer updated in place by
        ``rigged_gaussians.strategy`` keeps pointing at them).
        """
        missing = [k for k in GAUSSIAN_PARAMS if k not in params]
        if missing:
            raise HeadStudioError(
                f"Avatar.set_gaussians: missing parameters {missing}; need {list(GAUSSIAN_PARAMS)}."
            )
        check_gaussians(*(params[k] for k in GAUSSIAN_PARAMS), face_ids, self.head)
        for name in GAUSSIAN_PARAMS:
            t = params[name]
            setattr(self, name, t if isinstance(t, nn.Parameter) else nn.Parameter(t.detach()))
        self.face_ids = face_ids.detach().long().to(self.means.device)

    def optimizer_groups(self, train_cfg: TrainConfig | None = None) -> list[dict[str, Any]]:
        """Adam parameter groups with the paper's learning rates, one per named parameter.

        Names: ``means`` (lr_position), ``log_scales`` (lr_scale), ``quats`` (lr_rotation),
        ``sh`` (lr_color), ``opacity_logits`` (lr_opacity), ``shape`` (lr_shape).
        """
        t = train_cfg or TrainConfig()
        lrs = {
            "means": t.lr_position,
            "log_scales": t.lr_scale,
            "quats": t.lr_rotation,
            "sh": t.lr_color,
            "opacity_logits": t.lr_opacity,
            "shape": t.lr_shape,
        }
        return [{"name": k, "params": [getattr(self, k)], "lr": lr} for k, lr in lrs.items()]

    # --------------------------------------------------------------------------------- posing

    def pose(
        self, params: FlameParams | None = None, *, shape: torch.Tensor | None = None, **old_keywords: object
    ) -> torch.Tensor:
        """Posed vertices ``[B, V, 3]``.

        Args:
            params: the pose, a :class:`flame_core.FlameParams` of ``[B, ·]`` tensors (``expression
                [B, E]``, ``jaw_pose [B, 3]``, ``neck_pose``, ``eye_pose [B, 6]``, ``global_orient``,
                ``translation``); missing fields, or ``None``, are zeros.
            shape: ``[1|B, S]`` overrides the learned shape (default: the avatar's β).

        Raises:
            TypeError: FLAME keyword arguments (``jaw_pose=...``) instead of ``params``.
        """
        dev = self.means.device
        p = check_flame_params("pose", params, old_keywords)
        p = p.map(lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev))
        b = batch_size(p)
        beta = self.shape if shape is None else torch.as_tensor(shape, dtype=torch.float32, device=dev)
        if beta.shape[0] not in (1, b):
            raise HeadStudioError(f"shape has batch {beta.shape[0]}; expected 1 or {b}.")
        return self.head(shape=beta.expand(b, -1), **p.kwargs()).vertices

    def _backgrounds(self, background: Any, B: int, C: int) -> torch.Tensor:
        bg = torch.as_tensor(background, dtype=torch.float32, device=self.means.device)
        if bg.shape == (3,):
            return bg.expand(B, C, 3).contiguous()
        if bg.shape == (B, C, 3):
            return bg.contiguous()
        if bg.shape == (C, 3) and B == 1:
            return bg[None].contiguous()
        raise HeadStudioError(
            f"background must be (r, g, b) or [B, C, 3] = [{B}, {C}, 3], got {list(bg.shape)}."
        )

    def render(
        self,
        viewmats: torch.Tensor,
        Ks: torch.Tensor,
        width: int,
        height: int,
        params: FlameParams | None = None,
        background: Any = (1.0, 1.0, 1.0),
        backend: str = "auto",
        depth: bool = False,
        **old_keywords: object,
    ) -> AvatarRender:
        """Render B poses, each seen by C cameras.

        Args:
            viewmats: ``[B, C, 4, 4]`` world→camera (OpenCV), or ``[C, 4, 4]`` for ``B = 1``.
            Ks: ``[B, C, 3, 3]`` (or ``[C, 3, 3]``).
            width, height: image size.
            params: the pose (:meth:`pose`), ``[B, ·]`` tensors (or ``[1, ·]``/``None``: the same
                pose for all).
            background: ``(r, g, b)`` in 0..1 or a tensor ``[B, C, 3]``.
            backend: ``auto`` (compiled renderer when built, else the PyTorch reference),
                ``cpu``, ``cuda`` or ``torch`` (``rigged_gaussians.render_rigged``'s choices).
            depth: also render the expected depth (one more blended channel).

        Returns:
            :class:`AvatarRender` with ``rgb [B, C, H, W, 3]`` etc.
        """
        params = check_flame_params("render", params, old_keywords)
        if viewmats.dim() == 3:
            viewmats = viewmats[None]
        if Ks.dim() == 3:
            Ks = Ks[None]
        if viewmats.dim() != 4 or viewmats.shape[-2:] != (4, 4):
            raise HeadStudioError(f"viewmats must be [B, C, 4, 4] or [C, 4, 4], got {list(viewmats.shape)}.")
        if Ks.shape != (*viewmats.shape[:2], 3, 3):
            raise HeadStudioError(
                f"Ks must be [B, C, 3, 3] = {[*viewmats.shape[:2], 3, 3]}, got {list(Ks.shape)}."
            )
        B, C = int(viewmats.shape[0]), int(viewmats.shape[1])
        verts = self.pose(params)
        if verts.shape[0] == 1 and B > 1:
            verts = verts.expand(B, -1, -1)
        elif verts.shape[0] != B:
            raise HeadStudioError(
                f"the FLAME parameters have batch {verts.shape[0]} but the cameras have B = {B}; "
                "make them agree."
            )
        dev = self.means.device
        args = (
            verts,
            self.head.faces.to(dev),
            self.means,
            self.quats,
            self.log_scales,
            torch.sigmoid(self.opacity_logits),
            self.sh,
            self.face_ids,
            viewmats.to(dev, torch.float32).contiguous(),
            Ks.to(dev, torch.float32).contiguous(),
            int(width),
            int(height),
        )
        kw = {"sh_degree": self.sh_degree, "backgrounds": self._backgrounds(background, B, C), "depth": depth}
        # "auto" falls back to the PyTorch renderer when rigged_gaussians._C is not built
        rgb, alpha, meta = rg.render_rigged(*args, backend=backend, **kw)
        return AvatarRender(rgb=rgb, alpha=alpha, depth=meta.depth, meta=meta, vertices=verts)

    def world_gaussians(
        self, params: FlameParams | None = None, **old_keywords: object
    ) -> dict[str, torch.Tensor]:
        """World-space Gaussians of one pose (``params`` of ``[1, ·]`` tensors, or ``None``: neutral).

        Returns:
            ``dict(means [N, 3], quats [N, 4] (unit, wxyz), scales [N, 3] (linear),
            opacities [N] (0..1), sh [N, K, 3])``.
        """
        verts = self.pose(check_flame_params("world_gaussians", params, old_keywords))
        if verts.shape[0] != 1:
            raise HeadStudioError(f"world_gaussians takes one pose; got a batch of {verts.shape[0]}.")
        # the PyTorch backend: exact float32/float64 math, the same numbers the files always held
        frames = rg.triangle_frames(verts, self.head.faces.to(verts.device), backend="torch")
        d = rg.deform(self.means, self.quats, self.log_scales, self.face_ids, frames, backend="torch")
        quats = d.quats[0]
        quats = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return {
            "means": d.means[0],
            "quats": quats,
            "scales": d.scales[0],
            "opacities": torch.sigmoid(self.opacity_logits),
            "sh": self.sh,
        }

    # ------------------------------------------------------------------------------ file I/O

    def save(self, path: str | Path, config: dict[str, Any] | None = None, prompt: str | None = None) -> Path:
        """Write the avatar PLY (atomically): world space at the neutral pose + rigging + metadata.

        Args:
            path: the ``.ply`` to write.
            config: the resolved run configuration (``config_to_dict``), kept in the metadata.
            prompt: the text prompt.

        Returns:
            ``path`` as a ``Path``.
        """
        p = Path(path)
        if p.suffix.lower() != ".ply":
            raise HeadStudioError(f"avatar file '{p}' must end in .ply.")
        with torch.no_grad():
            g = self.world_gaussians()

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy()

        local = {k: getattr(self, k) for k in ("means", "quats", "log_scales", "opacity_logits")}
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "shape": [float(x) for x in self.shape.detach().cpu().reshape(-1).tolist()],
            "num_shape": int(self.shape.shape[1]),
            "num_expression": int(self.head.num_expression),
            "sh_degree": self.sh_degree,
            "num_gaussians": self.num_gaussians,
            "head": head_record(self.head),
            "config": config if config is not None else self.metadata.get("config"),
            "prompt": prompt if prompt is not None else self.metadata.get("prompt"),
            "metadata": {k: v for k, v in self.metadata.items() if k not in ("config", "prompt")},
        }
        with atomic_output(p) as tmp:
            save_ply(
                tmp, arr(g["means"]), arr(g["quats"]), arr(g["scales"]), arr(g["opacities"]), arr(g["sh"]),
                extra=rigging_extras(self.face_ids, local), metadata=metadata,
            )  # fmt: skip
        log.info("saved avatar (%d Gaussians) to %s", self.num_gaussians, p)
        return p

    @classmethod
    def load(cls, path: str | Path, head: FlameModel | None = None, verify: bool = True) -> Avatar:
        """Read an avatar PLY written by :meth:`save`.

        Args:
            path: the ``.ply``.
            head: the head model; ``None``: the procedural head if the file was made on it, else
                ``FlameModel.resolve()`` (``HEADSTUDIO_FLAME_PATH``).
            verify: check the file's integrity checksum (``False``: forensics on a damaged file).

        Raises:
            headstudio.avatar_io.AvatarFileError: a damaged file (the message names the field) or
                not a headstudio avatar.
            HeadStudioError: the head model's identity hash differs from the one the avatar was
                made on (``argument="head"`` when another head would do).
        """
        return cls.from_avatar_file(read_avatar_file(path, verify=verify), head)

    @classmethod
    def from_avatar_file(cls, f: AvatarFile, head: FlameModel | None = None) -> Avatar:
        """The avatar in a read file (:func:`headstudio.avatar_io.read_avatar_file`) on ``head``
        (``None``: the head the file names); errors as :meth:`load`."""
        head = resolve_head(f, head)
        check_face_ids(f, head)
        loc = f.local
        avatar = cls(
            head, loc["means"], loc["quats"], loc["log_scales"], loc["opacity_logits"], f.sh, f.face_ids,
            shape_for_head(f, head), f.user_metadata,
        )  # fmt: skip
        return avatar.to(head.faces.device)

    def extra_repr(self) -> str:
        return (
            f"num_gaussians={self.num_gaussians}, sh_degree={self.sh_degree}, num_shape={self.shape.shape[1]}"
        )
