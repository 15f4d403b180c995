"""The render settings, one typed record from the public API through the glue to the kernels.

:class:`RasterSettings` holds every scalar option of a render. ``rasterize`` and
``render_rigged`` build it from their keyword arguments (its fields are their options, written
only here), validate it once, and pass it unchanged to the pipeline stages of both the native
backends (``_glue.py``, which copies the fields into the C++ argument records of
``csrc/include/rg/ops.h``) and the pure-PyTorch reference (``reference.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from rigged_gaussians import _checks

__all__ = ["RasterSettings"]


@dataclass(frozen=True)
class RasterSettings:
    """Scalar options of a render (gsplat's ``rasterization`` options, plus ours).

    Attributes:
        width, height: image size in pixels.
        sh_degree: ``None`` (``colors`` are used as given, ``[.,N,D]`` with ``D <= 3``) or 0..3
            (``colors`` are SH coefficients ``[.,N,K,3]``, colour ``max(sum c Y + 0.5, 0)``).
        near_plane, far_plane: the camera-space depth range kept.
        eps2d: low-pass added to the diagonal of the 2D covariance.
        radius_clip: cull Gaussians whose ``3.33 sigma`` radii are both ``<= radius_clip`` px.
        tile_size: 8, 16, 24 or 32.
        depth: also render the expected depth ``sum(w z) / alpha`` (``meta.depth``); off by
            default (one channel less to blend).
        tight_tiles: opacity-aware radii ``min(3.33, sqrt(2 ln(255 o))) sigma`` (culling
            ``o < 1/255``, as gsplat's CUDA projection) and the exact ellipse/tile test, so a
            Gaussian is listed only in tiles where some pixel can reach ``alpha >= 1/255``.
            The images and gradients are the same bit for bit either way (the dropped pairs
            contribute exact zeros); ``False`` gives gsplat's plain ``3.33 sigma`` boxes and
            radii (more tile intersections, for comparisons).
    """

    width: int
    height: int
    sh_degree: int | None = None
    near_plane: float = 0.01
    far_plane: float = 1e10
    eps2d: float = 0.3
    radius_clip: float = 0.0
    tile_size: int = 16
    depth: bool = False
    tight_tiles: bool = True

    @property
    def tile_w(self) -> int:
        """Tiles per image row."""
        return math.ceil(self.width / self.tile_size)

    @property
    def tile_h(self) -> int:
        """Tiles per image column."""
        return math.ceil(self.height / self.tile_size)

    @classmethod
    def from_options(cls, width: object, height: object, options: dict[str, Any]) -> RasterSettings:
        """Settings from a public function's ``width``, ``height`` and keyword ``options``;
        an unknown option is a ``TypeError`` naming it and the known ones."""
        known = {f.name for f in fields(cls)} - {"width", "height"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"{unknown[0]}: not a render option; the options are {', '.join(sorted(known))}")
        return cls(width=width, height=height, **options)  # type: ignore[arg-type]

    def validated(self, cameras: int) -> RasterSettings:
        """Checked, normalised settings for ``cameras`` images per call (``ValueError`` /
        ``TypeError`` naming the option otherwise)."""
        ts = _checks.check_tile_size(self.tile_size)
        w, h = _checks.check_image(self.width, self.height, cameras, ts)
        deg = _checks.check_sh_degree(self.sh_degree)
        near = _checks.check_positive_float("near_plane", self.near_plane)
        far = _checks.check_positive_float("far_plane", self.far_plane)
        if far <= near:
            raise ValueError(f"far_plane: expected > near_plane={near}, got {far}")
        eps2d = _checks.check_positive_float("eps2d", self.eps2d, allow_zero=True)
        clip = _checks.check_positive_float("radius_clip", self.radius_clip, allow_zero=True)
        for name in ("depth", "tight_tiles"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        return replace(
            self, width=w, height=h, sh_degree=deg, near_plane=near, far_plane=far, eps2d=eps2d,
            radius_clip=clip, tile_size=ts,
        )  # fmt: skip
