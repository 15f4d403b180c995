"""Typed outputs of the rigged_gaussians operations.

Each dataclass unpacks like a tuple of its tensor fields (``cent, rot, sa = triangle_frames(...)``)
so code written against the ``*_cpu`` / ``*_cuda`` tuple conventions keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor

__all__ = ["Deformed", "RasterMeta", "TriangleFrames"]


class _Unpackable:
    """Mixin: iterate over (and index) the dataclass fields in declaration order."""

    def __iter__(self) -> Iterator[Any]:
        return iter(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(fields(self))  # type: ignore[arg-type]


@dataclass
class TriangleFrames(_Unpackable):
    """Per-triangle frames of ``B`` poses of a mesh.

    Attributes:
        centroids: ``[B,F,3]`` triangle centroids ``T = (v0+v1+v2)/3``.
        rotations: ``[B,F,3,3]`` rotations whose columns are the normalised first edge ``t``,
            the unit normal ``n`` and ``b = t x n``.
        sqrt_areas: ``[B,F]`` ``sqrt(max(area, 1e-12))``.
    """

    centroids: Tensor
    rotations: Tensor
    sqrt_areas: Tensor


@dataclass
class Deformed(_Unpackable):
    """World-space Gaussians of ``B`` poses.

    Attributes:
        means: ``[B,N,3]`` world means ``sqrt(S) R mu + T``.
        quats: ``[B,N,4]`` wxyz quaternions ``quat(R) (x) q`` (not renormalised).
        scales: ``[B,N,3]`` linear world scales ``sqrt(S) exp(log_scale)``.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor


@dataclass
class RasterMeta:
    """Side outputs of a render (gsplat's ``meta`` dictionary, typed).

    Attributes:
        depth: ``[C,H,W,1]`` expected depth ``sum(w z) / alpha`` (``[B,C,H,W,1]`` from
            ``render_rigged``).
        radii: ``[C,N,2]`` int32 per-axis screen radii in pixels; ``0`` for culled Gaussians.
        means2d: ``[C,N,2]`` projected means in pixels; a non-leaf tensor of the graph, so
            ``meta.means2d.retain_grad()`` before ``backward`` gives the 2D-mean gradient used by
            densification. Zero for culled Gaussians.
        depths: ``[C,N]`` camera-space z of each Gaussian mean.
        visible: ``[C,N]`` bool, ``(radii > 0).all(-1)``.
        width: image width in pixels.
        height: image height in pixels.

    ``render_rigged`` flattens the per-camera entries over ``B*C`` (camera ``b*C + c``).
    ``meta["name"]`` reads a field, as with gsplat's dictionary.
    """

    depth: Tensor
    radii: Tensor
    means2d: Tensor
    depths: Tensor
    visible: Tensor
    width: int
    height: int

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(f"RasterMeta has no field {key!r}")
        return getattr(self, key)

    @classmethod
    def from_dict(cls, meta: dict[str, Tensor], width: int, height: int) -> RasterMeta:
        """Wrap the ``meta`` dictionary returned by the ``*_cpu`` / ``*_cuda`` backends."""
        return cls(
            depth=meta["depth"],
            radii=meta["radii"],
            means2d=meta["means2d"],
            depths=meta["depths"],
            visible=meta["visible"],
            width=int(width),
            height=int(height),
        )
